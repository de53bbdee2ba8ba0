"""Terraform's alicloud provider, replayed (#10): the call sequence its resources alicloud_vpc,
alicloud_vswitch, alicloud_security_group, alicloud_ecs_disk and alicloud_instance make for
create, read after create, update, read and delete, sent the way the provider sends them
(tea-rpc: HMAC-SHA1, the signature's parameters in the query, the action's parameters as a form
body, Format=JSON, a fresh ClientToken per create), checking that every response field each
Read sets into state is present.

Source: github.com/aliyun/terraform-provider-alicloud (master, 2026-08): resource_alicloud_vpc.go,
resource_alicloud_vswitch.go, resource_alicloud_security_group.go, resource_alicloud_ecs_disk.go,
resource_alicloud_instance.go and their service_alicloud_*_v2.go readers; errors.go for what
counts as "not found" (HTTP 404, or "NotFound" in the message)."""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid

from support import REGION, ZONE, http, pct, poll, sign_v1, v1_params

VPC, ECS = "2016-04-28", "2014-05-26"


class Provider:
    """The provider's RpcPost: common parameters signed in the query, the rest as a form body."""

    def __init__(self, api):
        self.api = api
        self.calls: list[str] = []

    def rpc(self, action: str, version: str, body: dict, query: dict | None = None) -> tuple[int, dict]:
        self.calls.append(action)
        q = v1_params(action, dict(query or {}), self.api.ak, fmt="JSON", version=version)
        form = {k: str(v) for k, v in body.items()}
        q["Signature"] = sign_v1("POST", {**q, **form}, self.api.secret)
        url = f"{self.api.server.endpoint}/?" + "&".join(f"{pct(k)}={pct(v)}" for k, v in q.items())
        status, _headers, data = http("POST", url, urllib.parse.urlencode(form).encode(),
                                      {"Content-Type": "application/x-www-form-urlencoded"})
        return status, json.loads(data)

    def ok(self, action: str, version: str, body: dict, query: dict | None = None) -> dict:
        status, out = self.rpc(action, version, body, query)
        assert status == 200, (action, out)
        return out

    @staticmethod
    def not_found(status: int, out: dict) -> bool:
        """errors.go NotFoundError for a tea.SDKError: HTTP 404, or "NotFound" in the message."""
        return status == 404 or bool(re.search("NotFound", out.get("Message", "")))


def has(obj: dict, *paths: str):
    """Every JSONPath-like `a.b.c` is present (lists: its first element)."""
    for path in paths:
        cur = obj
        for part in path.split("."):
            if isinstance(cur, list):
                assert cur, f"{path}: empty list before {part}"
                cur = cur[0]
            assert isinstance(cur, dict) and part in cur, f"the provider reads {path}; missing in {obj!r}"
            cur = cur[part]


def token() -> str:
    return str(uuid.uuid4())


def test_terraform_lifecycle(server):
    api = server.tenant()
    tf = Provider(api)

    # ---- alicloud_vpc: create, wait Available, DescribeRouteTableList, read ----------------------
    vpc_id = tf.ok("CreateVpc", VPC, {"RegionId": REGION, "ClientToken": token(), "CidrBlock": "10.4.0.0/16",
                                      "VpcName": "tf-vpc", "Description": "made by terraform"})["VpcId"]
    poll(lambda: tf.ok("DescribeVpcAttribute", VPC, {"VpcId": vpc_id, "RegionId": REGION})["Status"],
         lambda s: s == "Available", what="vpc Available")

    def read_vpc() -> dict:
        attr = tf.ok("DescribeVpcAttribute", VPC, {"VpcId": vpc_id, "RegionId": REGION})
        assert attr["VpcId"] == vpc_id
        has(attr, "CidrBlock", "ClassicLinkEnabled", "CreationTime", "Description", "DnsHostnameStatus",
            "EnabledIpv6", "Ipv6CidrBlock", "RegionId", "IsDefault", "ResourceGroupId", "VRouterId", "Status",
            "VpcName", "Ipv6CidrBlocks.Ipv6CidrBlock", "SecondaryCidrBlocks.SecondaryCidrBlock", "Tags.Tag",
            "UserCidrs.UserCidr")
        tables = tf.ok("DescribeRouteTableList", VPC, {"VpcId": vpc_id, "RegionId": REGION})
        system = [t for t in tables["RouterTableList"]["RouterTableListType"]
                  if t["RouteTableType"] == "System" and t["VpcId"] == vpc_id]
        assert len(system) == 1
        has(system[0], "ResourceGroupId", "RouteTableId", "RouterId", "Description", "RouteTableName",
            "RoutePropagationEnable")
        assert system[0]["RouterId"] == attr["VRouterId"]
        return attr

    assert read_vpc()["VpcName"] == "tf-vpc"

    # ---- alicloud_vswitch --------------------------------------------------------------------------
    vsw_id = tf.ok("CreateVSwitch", VPC, {"RegionId": REGION, "ClientToken": token(), "CidrBlock": "10.4.1.0/24",
                                         "VpcId": vpc_id, "VSwitchName": "tf-vsw", "Description": "subnet",
                                         "ZoneId": ZONE})["VSwitchId"]

    def read_vswitch() -> dict:
        # VSwitchId goes in the URL query, RegionId in the body (VpcServiceV2.DescribeVpcVswitch).
        sw = tf.ok("DescribeVSwitchAttributes", VPC, {"RegionId": REGION}, query={"VSwitchId": vsw_id})
        assert sw["VSwitchId"] == vsw_id
        has(sw, "CidrBlock", "CreationTime", "Description", "Ipv6CidrBlock", "IsDefault", "Status", "VSwitchName",
            "VpcId", "ZoneId", "Tags.Tag")
        return sw

    poll(lambda: read_vswitch()["Status"], lambda s: s == "Available", what="vswitch Available")
    assert read_vswitch()["VSwitchName"] == "tf-vsw"

    # ---- alicloud_security_group ---------------------------------------------------------------
    sg_id = tf.ok("CreateSecurityGroup", ECS, {"RegionId": REGION, "ClientToken": token(), "SecurityGroupType": "normal",
                                               "Description": "tf group", "VpcId": vpc_id,
                                               "SecurityGroupName": "tf-sg"})["SecurityGroupId"]

    def read_sg() -> dict:
        found = tf.ok("DescribeSecurityGroups", ECS, {"SecurityGroupId": sg_id, "RegionId": REGION})
        groups = found["SecurityGroups"]["SecurityGroup"]
        assert len(groups) == 1 and groups[0]["SecurityGroupId"] == sg_id
        has(groups[0], "CreationTime", "Description", "ResourceGroupId", "SecurityGroupName", "SecurityGroupType",
            "VpcId", "Tags.Tag")
        attr = tf.ok("DescribeSecurityGroupAttribute", ECS, {"SecurityGroupId": sg_id, "RegionId": REGION})
        has(attr, "InnerAccessPolicy")
        return groups[0]

    tf.ok("DescribeSecurityGroupAttribute", ECS, {"SecurityGroupId": sg_id, "RegionId": REGION})
    assert read_sg()["VpcId"] == vpc_id

    # ---- alicloud_ecs_disk -------------------------------------------------------------------------
    disk_id = tf.ok("CreateDisk", ECS, {"RegionId": REGION, "ClientToken": token(), "ZoneId": ZONE,
                                        "DiskCategory": "cloud_essd", "Size": 20, "DiskName": "tf-disk",
                                        "Description": "data", "Encrypted": "false"})["DiskId"]

    def read_disk() -> dict | None:
        found = tf.ok("DescribeDisks", ECS, {"DiskIds": json.dumps([disk_id]), "RegionId": REGION})
        disks = found["Disks"]["Disk"]
        if not disks:
            return None
        has(disks[0], "BurstingEnabled", "Category", "CreationTime", "DeleteAutoSnapshot", "DeleteWithInstance",
            "Description", "DiskName", "EnableAutoSnapshot", "Encrypted", "InstanceId", "KMSKeyId", "MultiAttach",
            "DiskChargeType", "PerformanceLevel", "ProvisionedIops", "RegionId", "ResourceGroupId", "Size",
            "SourceSnapshotId", "Status", "StorageSetId", "StorageSetPartitionNumber", "ZoneId", "Tags.Tag")
        return disks[0]

    # The post-create update compares DeleteWithInstance with the configuration (false).
    assert read_disk()["DeleteWithInstance"] is False
    poll(lambda: read_disk()["Status"], lambda s: s == "Available", what="disk Available")

    # ---- alicloud_instance ---------------------------------------------------------------------------
    out = tf.ok("RunInstances", ECS, {
        "RegionId": REGION, "ClientToken": token(), "InstanceType": "ecs.g7.large", "ImageId": "blank_x64_20G.vhd",
        "SystemDisk.Category": "cloud_essd", "SystemDisk.Size": 40, "VSwitchId": vsw_id,
        "SecurityGroupIds.1": sg_id, "InstanceName": "tf-vm", "Description": "vm", "HostName": "tf-vm",
        "InstanceChargeType": "PostPaid", "InternetMaxBandwidthOut": 0})
    iid = out["InstanceIdSets"]["InstanceIdSet"][0]

    def describe_instance() -> dict | None:
        found = tf.ok("DescribeInstances", ECS, {"InstanceIds": json.dumps([iid]), "RegionId": REGION,
                                                  "AdditionalAttributes.1": "META_OPTIONS",
                                                  "AdditionalAttributes.2": "NETWORK_PRIMARY_ENI_IP"})
        items = found["Instances"]["Instance"]
        return items[0] if items else None

    status = poll(lambda: describe_instance()["Status"], lambda s: s not in ("Pending", "Starting", "Stopped"),
                  what="instance Running")
    assert status == "Running"

    def read_instance() -> dict:
        inst = describe_instance()
        has(inst, "InstanceName", "ResourceGroupId", "Description", "Status", "ZoneId", "HostName", "ImageId",
            "InstanceType", "InternetMaxBandwidthOut", "InternetMaxBandwidthIn", "InstanceChargeType",
            "KeyPairName", "SpotStrategy", "SpotPriceLimit", "InternetChargeType", "DeletionProtection",
            "CreditSpecification", "AutoReleaseTime", "Tags", "HpcClusterId", "DeploymentSetId",
            "DeploymentSetGroupNo", "StoppedMode", "PublicIpAddress.IpAddress", "VpcAttributes.VSwitchId",
            "VpcAttributes.VpcId", "VpcAttributes.PrivateIpAddress.IpAddress", "SpotDuration",
            "MetadataOptions.HttpTokens", "MetadataOptions.HttpEndpoint", "MetadataOptions.HttpPutResponseHopLimit",
            "Cpu", "Memory", "OSName", "OSType", "DedicatedHostAttribute.DedicatedHostId", "CreationTime",
            "StartTime", "ExpiredTime", "AdditionalInfo.EnableHighDensityMode", "ImageOptions.LoginAsNonRoot",
            "SecurityGroupIds.SecurityGroupId", "NetworkInterfaces.NetworkInterface")
        assert inst["VpcAttributes"]["VpcId"] == vpc_id and inst["VpcAttributes"]["VSwitchId"] == vsw_id
        assert inst["SecurityGroupIds"]["SecurityGroupId"] == [sg_id]
        system = tf.ok("DescribeDisks", ECS, {"InstanceId": iid, "DiskType": "system", "RegionId": REGION})
        sd = system["Disks"]["Disk"][0]
        assert sd["InstanceId"] == iid
        has(sd, "Category", "DiskName", "Description", "Size", "AutoSnapshotPolicyId", "StorageClusterId",
            "Encrypted", "KMSKeyId", "ProvisionedIops", "DiskId", "PerformanceLevel", "BurstingEnabled", "Tags.Tag")
        has(tf.ok("DescribeUserData", ECS, {"InstanceId": iid, "RegionId": REGION}), "UserData")
        if inst["VpcAttributes"]["VSwitchId"]:
            roles = tf.ok("DescribeInstanceRamRole", ECS, {"InstanceIds": json.dumps([iid]), "RegionId": REGION})
            has(roles, "InstanceRamRoleSets.InstanceRamRoleSet")
        for eni in inst["NetworkInterfaces"]["NetworkInterface"]:
            sets = tf.ok("DescribeNetworkInterfaces", ECS, {"NetworkInterfaceId.1": eni["NetworkInterfaceId"],
                                                            "RegionId": REGION})
            rows = sets["NetworkInterfaceSets"]["NetworkInterfaceSet"]
            assert rows and rows[0]["NetworkInterfaceId"] == eni["NetworkInterfaceId"]
        maint = tf.ok("DescribeInstanceMaintenanceAttributes", ECS, {"InstanceId.1": iid, "RegionId": REGION})
        assert maint["MaintenanceAttributes"]["MaintenanceAttribute"][0]["InstanceId"] == iid
        attr = tf.ok("DescribeInstanceAttribute", ECS, {"InstanceId": iid})
        assert attr["InstanceId"] == iid
        has(attr, "EnableJumboFrame")
        attach = tf.ok("DescribeInstanceAttachmentAttributes", ECS, {"InstanceIds": json.dumps([iid]),
                                                                     "RegionId": REGION})
        assert attach["Instances"]["Instance"]
        return inst

    assert read_instance()["InstanceName"] == "tf-vm"

    # ---- updates: a new name and description on each, then read again -----------------------------
    tf.ok("ModifyVpcAttribute", VPC, {"VpcId": vpc_id, "RegionId": REGION, "VpcName": "tf-vpc-2",
                                      "Description": "renamed"})
    poll(lambda: tf.ok("DescribeVpcAttribute", VPC, {"VpcId": vpc_id, "RegionId": REGION})["Status"],
         lambda s: s == "Available", what="vpc Available")
    assert read_vpc()["VpcName"] == "tf-vpc-2"
    tf.ok("ModifyVSwitchAttribute", VPC, {"VSwitchId": vsw_id, "RegionId": REGION, "VSwitchName": "tf-vsw-2",
                                         "Description": "subnet 2"})
    assert read_vswitch()["VSwitchName"] == "tf-vsw-2"
    tf.ok("ModifySecurityGroupAttribute", ECS, {"SecurityGroupId": sg_id, "RegionId": REGION,
                                                "SecurityGroupName": "tf-sg-2", "Description": "group 2"})
    assert read_sg()["SecurityGroupName"] == "tf-sg-2"
    tf.ok("ModifyDiskAttribute", ECS, {"DiskId": disk_id, "RegionId": REGION, "DiskName": "tf-disk-2",
                                       "Description": "data 2", "DeleteWithInstance": "false"})
    assert read_disk()["DiskName"] == "tf-disk-2"
    tf.ok("ModifyInstanceAttribute", ECS, {"RegionId": REGION, "ClientToken": token(), "InstanceId": iid,
                                           "InstanceName": "tf-vm-2", "Description": "vm 2"})
    assert read_instance()["InstanceName"] == "tf-vm-2"

    # ---- deletes, in the order terraform destroys dependents first ------------------------------
    tf.ok("DeleteInstance", ECS, {"InstanceId": iid, "Force": "true"})
    poll(describe_instance, lambda i: i is None or i["Status"] not in ("Pending", "Running", "Stopped", "Stopping"),
         what="instance gone")
    assert describe_instance() is None
    assert read_disk() is not None
    tf.ok("DeleteDisk", ECS, {"DiskId": disk_id})
    assert read_disk() is None
    tf.ok("DeleteSecurityGroup", ECS, {"SecurityGroupId": sg_id, "RegionId": REGION})
    found = tf.ok("DescribeSecurityGroups", ECS, {"SecurityGroupId": sg_id, "RegionId": REGION})
    assert found["SecurityGroups"]["SecurityGroup"] == []
    tf.ok("DeleteVSwitch", VPC, {"VSwitchId": vsw_id, "RegionId": REGION})
    status, out = tf.rpc("DescribeVSwitchAttributes", VPC, {"RegionId": REGION}, query={"VSwitchId": vsw_id})
    assert Provider.not_found(status, out), out
    tf.ok("DeleteVpc", VPC, {"VpcId": vpc_id, "RegionId": REGION, "ClientToken": token()})
    status, out = tf.rpc("DescribeVpcAttribute", VPC, {"VpcId": vpc_id, "RegionId": REGION})
    assert Provider.not_found(status, out), out
