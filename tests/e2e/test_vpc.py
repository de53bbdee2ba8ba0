"""Networks (#10 item 4): the VPC API (2016-04-28) through the official VPC SDK
(alibabacloud_vpc20160428), with both signature versions; RunInstances placing instances in a
vSwitch or in the default VPC; the ECS-endpoint (2014-05-26) forms of DescribeVpcs and
DescribeVSwitches; and the XML list shapes."""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET

import pytest
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_vpc20160428 import models as vpc_models
from alibabacloud_vpc20160428.client import Client as VpcClient

from support import REGION, ZONE, catch, poll, raw_v1

NOT_FOUND_VPC = (404, "InvalidVpcId.NotFound", "Specified VPC does not exist.")
NOT_FOUND_VSW = (404, "InvalidVSwitchId.NotFound", "VSwitch not exist.")


def vpc_client(api) -> VpcClient:
    config = open_api_models.Config(
        access_key_id=api.ak, access_key_secret=api.secret, region_id=REGION,
        endpoint=f"127.0.0.1:{api.server.port}", protocol="http",
        signature_algorithm="v2" if api.v2 else None, read_timeout=30000, connect_timeout=5000)
    return VpcClient(config)


def m(resp) -> dict:
    return resp.body.to_map()


def code(err) -> tuple:
    return err.triple


def make_vpc(vpc: VpcClient, cidr: str | None = "192.168.0.0/16", wait: bool = True, **kw) -> dict:
    body = m(vpc.create_vpc(vpc_models.CreateVpcRequest(region_id=REGION, cidr_block=cidr, **kw)))
    if wait:
        poll(lambda: m(vpc.describe_vpc_attribute(
            vpc_models.DescribeVpcAttributeRequest(region_id=REGION, vpc_id=body["VpcId"])))["Status"],
            lambda s: s == "Available", what="VPC Available")
    return body


def make_vswitch(vpc: VpcClient, vpc_id: str, cidr: str, zone: str = ZONE, wait: bool = True, **kw) -> str:
    vsw = m(vpc.create_vswitch(vpc_models.CreateVSwitchRequest(
        region_id=REGION, vpc_id=vpc_id, zone_id=zone, cidr_block=cidr, **kw)))["VSwitchId"]
    if wait:
        poll(lambda: m(vpc.describe_vswitch_attributes(
            vpc_models.DescribeVSwitchAttributesRequest(region_id=REGION, v_switch_id=vsw)))["Status"],
            lambda s: s == "Available", what="vSwitch Available")
    return vsw


@pytest.mark.parametrize("v2", [False, True], ids=["acs3", "v2"])
def test_vpc_vswitch_and_instance_lifecycle(server, v2):
    api = server.tenant(v2=v2)
    vpc = vpc_client(api)
    created = m(vpc.create_vpc(vpc_models.CreateVpcRequest(
        region_id=REGION, cidr_block="192.168.0.0/16", vpc_name="lab", description="lab network")))
    vpc_id = created["VpcId"]
    assert created["VRouterId"].startswith("vrt-") and created["RouteTableId"].startswith("vtb-")
    attr = poll(lambda: m(vpc.describe_vpc_attribute(
        vpc_models.DescribeVpcAttributeRequest(region_id=REGION, vpc_id=vpc_id))),
        lambda a: a["Status"] == "Available", what="VPC Available")
    assert (attr["VpcName"], attr["Description"], attr["CidrBlock"], attr["IsDefault"]) == (
        "lab", "lab network", "192.168.0.0/16", False)
    assert attr["VRouterId"] == created["VRouterId"] and attr["RegionId"] == REGION
    assert attr["VSwitchIds"] == {"VSwitchId": []} and attr["CreationTime"].endswith("Z")
    for k in ("UserCidrs", "SecondaryCidrBlocks", "Tags", "CloudResources", "Ipv6CidrBlocks"):
        assert k in attr, k

    vsw = make_vswitch(vpc, vpc_id, "192.168.1.0/24", v_switch_name="web", description="web tier")
    sw = m(vpc.describe_vswitch_attributes(vpc_models.DescribeVSwitchAttributesRequest(v_switch_id=vsw)))
    assert (sw["VpcId"], sw["ZoneId"], sw["CidrBlock"], sw["VSwitchName"], sw["Description"]) == (
        vpc_id, ZONE, "192.168.1.0/24", "web", "web tier")
    assert sw["AvailableIpAddressCount"] == 252 and sw["RouteTable"]["RouteTableId"] == created["RouteTableId"]

    vpc.modify_vswitch_attribute(vpc_models.ModifyVSwitchAttributeRequest(
        v_switch_id=vsw, v_switch_name="web2", description="web tier 2"))
    sw = m(vpc.describe_vswitch_attributes(vpc_models.DescribeVSwitchAttributesRequest(v_switch_id=vsw)))
    assert (sw["VSwitchName"], sw["Description"]) == ("web2", "web tier 2")
    err = catch(vpc.modify_vswitch_attribute, vpc_models.ModifyVSwitchAttributeRequest(
        v_switch_id=vsw, v_switch_name="https://x"))
    assert (err.status, err.code) == (400, "InvalidVSwitchName.Malformed")
    listed = m(vpc.describe_vswitches(vpc_models.DescribeVSwitchesRequest(region_id=REGION, vpc_id=vpc_id)))
    assert listed["TotalCount"] == 1 and listed["VSwitches"]["VSwitch"][0]["VSwitchId"] == vsw
    # "At least one of RegionId and VpcId": VpcId alone lists that VPC's region (npm aliyun-sdk).
    alone = m(vpc.describe_vswitches(vpc_models.DescribeVSwitchesRequest(vpc_id=vpc_id)))
    assert [s["VSwitchId"] for s in alone["VSwitches"]["VSwitch"]] == [vsw]
    err = catch(vpc.describe_vswitches, vpc_models.DescribeVSwitchesRequest())
    assert (err.status, err.code) == (400, "MissingParameter")
    vpcs = m(vpc.describe_vpcs(vpc_models.DescribeVpcsRequest(region_id=REGION, vpc_id=vpc_id)))
    assert vpcs["TotalCount"] == 1
    row = vpcs["Vpcs"]["Vpc"][0]
    assert row["VSwitchIds"]["VSwitchId"] == [vsw] and row["Status"] == "Available"
    assert row["RouterTableIds"]["RouterTableIds"] == [created["RouteTableId"]]
    tables = m(vpc.describe_route_table_list(
        vpc_models.DescribeRouteTableListRequest(region_id=REGION, vpc_id=vpc_id)))
    t = tables["RouterTableList"]["RouterTableListType"]
    assert len(t) == 1 and t[0]["RouteTableId"] == created["RouteTableId"] and t[0]["RouteTableType"] == "System"
    assert t[0]["RouterId"] == created["VRouterId"] and t[0]["VSwitchIds"]["VSwitchId"] == [vsw]

    vpc.modify_vpc_attribute(vpc_models.ModifyVpcAttributeRequest(
        region_id=REGION, vpc_id=vpc_id, vpc_name="lab2", description="renamed"))
    attr = m(vpc.describe_vpc_attribute(vpc_models.DescribeVpcAttributeRequest(region_id=REGION, vpc_id=vpc_id)))
    assert (attr["VpcName"], attr["Description"]) == ("lab2", "renamed")

    # Instances take the vSwitch's lowest free address, or the one asked for.
    first = api.run_instance(v_switch_id=vsw)
    second = api.run_instance(v_switch_id=vsw, private_ip_address="192.168.1.50")
    for iid, ip in ((first, "192.168.1.1"), (second, "192.168.1.50")):
        inst = api.instance(iid)
        va = inst["VpcAttributes"]
        assert (va["VpcId"], va["VSwitchId"], va["PrivateIpAddress"]["IpAddress"]) == (vpc_id, vsw, [ip])
        assert inst["ZoneId"] == ZONE
    err = catch(api.run_instance, v_switch_id=vsw, private_ip_address="192.168.1.50")
    assert err.code == "InvalidPrivateIpAddress.Duplicated", err.data
    for outside in ("192.168.2.5", "192.168.1.255", "192.168.1.0"):
        err = catch(api.run_instance, v_switch_id=vsw, private_ip_address=outside)
        assert err.code == "InvalidPrivateIpAddress", (outside, err.data)
    err = catch(api.run_instance, v_switch_id=vsw, private_ip_address="192.168.1.x")
    assert err.code == "InvalidPrivateIpAddress.Malformed", err.data
    err = catch(api.run_instance, v_switch_id=vsw, zone="cn-hangzhou-i")
    assert err.code == "InvalidParameter.Mismatch", err.data
    assert m(vpc.describe_vswitch_attributes(
        vpc_models.DescribeVSwitchAttributesRequest(v_switch_id=vsw)))["AvailableIpAddressCount"] == 250
    cr = {r["ResourceType"]: r["ResourceCount"] for r in m(vpc.describe_vpc_attribute(
        vpc_models.DescribeVpcAttributeRequest(region_id=REGION, vpc_id=vpc_id)))["CloudResources"]["CloudResourceSetType"]}
    assert cr["ECS"] == 2 and cr["VSwitch"] == 1
    for filt in ({"vpc_id": vpc_id}, {"v_switch_id": vsw}, {"private_ip_addresses": '["192.168.1.50"]'}):
        got = [i["InstanceId"] for i in api.instances(**filt)["Instances"]["Instance"]]
        assert sorted(got) == sorted([first, second] if "private_ip_addresses" not in filt else [second]), filt

    # What is in use is not deleted.
    err = catch(vpc.delete_vswitch, vpc_models.DeleteVSwitchRequest(v_switch_id=vsw))
    assert (err.status, err.code) == (400, "DependencyViolation"), err.data
    err = catch(vpc.delete_vpc, vpc_models.DeleteVpcRequest(region_id=REGION, vpc_id=vpc_id))
    assert (err.status, err.code) == (400, "DependencyViolation.Instance"), err.data
    for iid in (first, second):
        api.stop(iid)
        api.delete_instance(iid)
    err = catch(vpc.delete_vpc, vpc_models.DeleteVpcRequest(region_id=REGION, vpc_id=vpc_id))
    assert (err.status, err.code) == (400, "DependencyViolation.VSwitch"), err.data
    vpc.delete_vswitch(vpc_models.DeleteVSwitchRequest(v_switch_id=vsw))
    assert code(catch(vpc.describe_vswitch_attributes,
                      vpc_models.DescribeVSwitchAttributesRequest(v_switch_id=vsw))) == NOT_FOUND_VSW
    vpc.delete_vpc(vpc_models.DeleteVpcRequest(region_id=REGION, vpc_id=vpc_id))
    assert code(catch(vpc.describe_vpc_attribute,
                      vpc_models.DescribeVpcAttributeRequest(region_id=REGION, vpc_id=vpc_id))) == NOT_FOUND_VPC


def test_cidr_rules(server, tenant):
    vpc = vpc_client(tenant)

    def fails(fn, req):
        err = catch(fn, req)
        return err.status, err.code

    for bad in ("192.168.0.0/33", "192.168.1.0/16", "127.0.0.0/8", "100.64.0.0/16", "10.0.0.0/29", "nonsense"):
        assert fails(vpc.create_vpc, vpc_models.CreateVpcRequest(region_id=REGION, cidr_block=bad)) == (
            400, "InvalidCidrBlock.Malformed"), bad
    assert fails(vpc.create_vpc, vpc_models.CreateVpcRequest(region_id=REGION, vpc_name="http://x")) == (
        400, "InvalidVpcName.Malformed")
    default = make_vpc(vpc, cidr=None)
    assert m(vpc.describe_vpc_attribute(vpc_models.DescribeVpcAttributeRequest(
        region_id=REGION, vpc_id=default["VpcId"])))["CidrBlock"] == "172.16.0.0/12"

    vpc_id = make_vpc(vpc, cidr="10.0.0.0/16")["VpcId"]
    req = lambda cidr, zone=ZONE: vpc_models.CreateVSwitchRequest(  # noqa: E731
        region_id=REGION, vpc_id=vpc_id, zone_id=zone, cidr_block=cidr)
    make_vswitch(vpc, vpc_id, "10.0.1.0/24")
    assert fails(vpc.create_vswitch, req("10.0.1.128/25")) == (400, "InvalidCidrBlock.Overlapped")
    assert fails(vpc.create_vswitch, req("10.0.0.0/16")) == (400, "InvalidCidrBlock.Overlapped")
    assert fails(vpc.create_vswitch, req("10.1.0.0/24")) == (400, "InvalidParameter")
    assert fails(vpc.create_vswitch, req("10.0.2.0/30")) == (400, "InvalidCirdrBlock.MaskLength")
    assert fails(vpc.create_vswitch, req("10.0.2.0/24", zone="cn-shanghai-e")) == (404, "InvalidZoneId.NotFound")
    assert fails(vpc.create_vswitch, vpc_models.CreateVSwitchRequest(
        region_id=REGION, vpc_id="vpc-nope", zone_id=ZONE, cidr_block="10.0.2.0/24")) == (404, "InvalidVpcId.NotFound")
    make_vswitch(vpc, vpc_id, "10.0.2.0/29")

    # A VPC may grow, never shrink away from its vSwitches.
    assert fails(vpc.modify_vpc_attribute, vpc_models.ModifyVpcAttributeRequest(
        region_id=REGION, vpc_id=vpc_id, cidr_block="10.0.1.0/24")) == (400, "InvalidCidrBlock.Malformed")
    vpc.modify_vpc_attribute(vpc_models.ModifyVpcAttributeRequest(region_id=REGION, vpc_id=vpc_id,
                                                                  cidr_block="10.0.0.0/8"))
    make_vswitch(vpc, vpc_id, "10.200.0.0/24")

    # Pending is a real state: no vSwitch until the VPC is Available.
    with server.timings(DiskMs=3000):
        slow = make_vpc(vpc, cidr="192.168.0.0/24", wait=False)["VpcId"]
        assert fails(vpc.create_vswitch, vpc_models.CreateVSwitchRequest(
            region_id=REGION, vpc_id=slow, zone_id=ZONE, cidr_block="192.168.0.0/25")) == (400, "IncorrectVpcStatus")
        assert fails(vpc.delete_vpc, vpc_models.DeleteVpcRequest(region_id=REGION, vpc_id=slow)) == (
            400, "IncorrectVpcStatus")
    # ForceDelete takes empty vSwitches with it.
    vpc.delete_vpc(vpc_models.DeleteVpcRequest(region_id=REGION, vpc_id=vpc_id, force_delete=True))
    assert m(vpc.describe_vswitches(vpc_models.DescribeVSwitchesRequest(
        region_id=REGION, vpc_id=vpc_id)))["TotalCount"] == 0


def test_isolation_paging_quota_and_client_token(server):
    a, b = server.tenant(), server.tenant()
    va, vb = vpc_client(a), vpc_client(b)
    ids = [make_vpc(va, cidr=f"10.{i}.0.0/16", wait=i == 0, vpc_name=f"n{i}")["VpcId"] for i in range(3)]
    vsw = make_vswitch(va, ids[0], "10.0.0.0/24")
    # Another account sees none of it.
    assert m(vb.describe_vpcs(vpc_models.DescribeVpcsRequest(region_id=REGION)))["TotalCount"] == 0
    assert code(catch(vb.describe_vpc_attribute, vpc_models.DescribeVpcAttributeRequest(
        region_id=REGION, vpc_id=ids[0]))) == NOT_FOUND_VPC
    assert code(catch(vb.delete_vpc, vpc_models.DeleteVpcRequest(region_id=REGION, vpc_id=ids[1]))) == NOT_FOUND_VPC
    assert code(catch(vb.describe_vswitch_attributes,
                      vpc_models.DescribeVSwitchAttributesRequest(v_switch_id=vsw))) == NOT_FOUND_VSW
    err = catch(b.run_instance, v_switch_id=vsw)
    assert err.code == "InvalidVSwitchId.NotFound", err.data
    # Paging: oldest first, every page its size, the last one short.
    pages = [m(va.describe_vpcs(vpc_models.DescribeVpcsRequest(region_id=REGION, page_size=2, page_number=n)))
             for n in (1, 2, 3)]
    assert [p["TotalCount"] for p in pages] == [3, 3, 3]
    assert [[v["VpcId"] for v in p["Vpcs"]["Vpc"]] for p in pages] == [ids[:2], ids[2:], []]
    assert (pages[1]["PageNumber"], pages[1]["PageSize"]) == (2, 2)
    assert catch(va.describe_vpcs, vpc_models.DescribeVpcsRequest(region_id=REGION, page_size=51)).code == (
        "InvalidParameter")
    assert m(va.describe_vpcs(vpc_models.DescribeVpcsRequest(
        region_id=REGION, vpc_id=f"{ids[0]},{ids[2]}")))["TotalCount"] == 2
    assert m(va.describe_vpcs(vpc_models.DescribeVpcsRequest(region_id=REGION, vpc_name="n1")))["TotalCount"] == 1
    # Quota: ten per region.
    for i in range(3, 10):
        make_vpc(va, cidr=f"10.{i}.0.0/16", wait=False)
    err = catch(va.create_vpc, vpc_models.CreateVpcRequest(region_id=REGION))
    assert (err.status, err.code) == (400, "QuotaExceeded.Vpc"), err.data
    # ClientToken: a retry returns the first answer and makes nothing.
    vpc_b = vpc_client(b)
    req = vpc_models.CreateVSwitchRequest(region_id=REGION, vpc_id=make_vpc(vpc_b)["VpcId"], zone_id=ZONE,
                                          cidr_block="192.168.7.0/24", client_token="tok-1")
    first = m(vpc_b.create_vswitch(req))["VSwitchId"]
    assert m(vpc_b.create_vswitch(req))["VSwitchId"] == first
    req.cidr_block = "192.168.8.0/24"
    assert catch(vpc_b.create_vswitch, req).code == "IdempotentParameterMismatch"


def test_default_vpc_and_vswitch(server, tenant):
    vpc = vpc_client(tenant)
    one, two = tenant.run_instances(amount=2)
    other_zone = tenant.run_instance(zone="cn-hangzhou-i")
    a, b, c = (tenant.instance(i)["VpcAttributes"] for i in (one, two, other_zone))
    assert a["VpcId"] and a["VpcId"] == b["VpcId"] == c["VpcId"] and a["VSwitchId"] == b["VSwitchId"] != c["VSwitchId"]
    defaults = m(vpc.describe_vpcs(vpc_models.DescribeVpcsRequest(region_id=REGION, is_default=True)))
    assert defaults["TotalCount"] == 1 and defaults["Vpcs"]["Vpc"][0]["CidrBlock"] == "172.16.0.0/12"
    sws = m(vpc.describe_vswitches(vpc_models.DescribeVSwitchesRequest(region_id=REGION, vpc_id=a["VpcId"])))
    blocks = {s["VSwitchId"]: (s["ZoneId"], s["CidrBlock"], s["IsDefault"]) for s in sws["VSwitches"]["VSwitch"]}
    assert blocks == {a["VSwitchId"]: (ZONE, "172.16.0.0/20", True),
                      c["VSwitchId"]: ("cn-hangzhou-i", "172.16.16.0/20", True)}
    ips = {ipaddress.ip_address(x["PrivateIpAddress"]["IpAddress"][0]) for x in (a, b)}
    assert ips == {ipaddress.ip_address("172.16.0.1"), ipaddress.ip_address("172.16.0.2")}


def test_ecs_endpoint_forms_and_versions(server, tenant):
    vpc = vpc_client(tenant)
    vpc_id = make_vpc(vpc)["VpcId"]
    vsw = make_vswitch(vpc, vpc_id, "192.168.3.0/24")
    # Packer and older scripts call these on the ECS endpoint, version 2014-05-26.
    got = tenant.call("DescribeVpcs", {"RegionId": REGION, "VpcId": vpc_id})
    assert got["Vpcs"]["Vpc"][0]["VSwitchIds"]["VSwitchId"] == [vsw]
    got = tenant.call("DescribeVSwitches", {"RegionId": REGION, "VpcId": vpc_id})
    assert got["VSwitches"]["VSwitch"][0]["CidrBlock"] == "192.168.3.0/24"
    # Each product answers its own actions only.
    err = catch(tenant.call, "DescribeVpcAttribute", {"RegionId": REGION, "VpcId": vpc_id})
    assert (err.status, err.code) == (404, "InvalidAction.NotFound")
    err = catch(tenant.call, "DescribeDisks", {"RegionId": REGION}, version="2016-04-28")
    assert (err.status, err.code) == (404, "InvalidAction.NotFound")
    err = catch(tenant.call, "DescribeVpcs", {"RegionId": REGION}, version="2099-01-01")
    assert (err.status, err.code) == (400, "InvalidVersion")
    # The ECS-endpoint router and route-table views footmark and the npm SDK look up.
    attr = m(vpc.describe_vpc_attribute(vpc_models.DescribeVpcAttributeRequest(region_id=REGION, vpc_id=vpc_id)))
    routers = tenant.call("DescribeVRouters", {"RegionId": REGION, "VRouterId": attr["VRouterId"]})
    r = routers["VRouters"]["VRouter"]
    assert len(r) == 1 and r[0]["VpcId"] == vpc_id and routers["TotalCount"] == 1
    table_id = r[0]["RouteTableIds"]["RouteTableId"][0]
    tables = tenant.call("DescribeRouteTables", {"RegionId": REGION, "VRouterId": attr["VRouterId"]})
    t = tables["RouteTables"]["RouteTable"]
    assert len(t) == 1 and t[0]["RouteTableId"] == table_id and t[0]["RouteTableType"] == "System"
    entries = {(e["DestinationCidrBlock"], e["NextHopType"]) for e in t[0]["RouteEntrys"]["RouteEntry"]}
    assert entries == {("192.168.3.0/24", "local"), ("100.64.0.0/10", "service")}
    err = catch(tenant.call, "DescribeVRouters", {"RegionId": REGION}, version="2016-04-28")
    assert (err.status, err.code) == (404, "InvalidAction.NotFound")


def test_xml_list_shapes(server, tenant):
    vpc = vpc_client(tenant)
    vpc_id = make_vpc(vpc)["VpcId"]
    vsw = make_vswitch(vpc, vpc_id, "192.168.4.0/24")

    def xml(action, params):
        r = raw_v1(server, action, params, ak=tenant.ak, secret=tenant.secret, fmt="XML", version="2016-04-28")
        assert r.status == 200, r.text
        root = ET.fromstring(r.body)
        assert root.tag == f"{action}Response" and root.findtext("RequestId")
        return root

    root = xml("DescribeVpcs", {"RegionId": REGION})
    v = root.find("./Vpcs/Vpc")
    assert v.findtext("VpcId") == vpc_id and [x.text for x in v.findall("./VSwitchIds/VSwitchId")] == [vsw]
    assert root.findtext("TotalCount") == "1"
    root = xml("DescribeVSwitches", {"RegionId": REGION, "VpcId": vpc_id})
    s = root.find("./VSwitches/VSwitch")
    assert s.findtext("VSwitchId") == vsw and s.findtext("./RouteTable/RouteTableType") == "System"
    root = xml("DescribeRouteTableList", {"RegionId": REGION, "VpcId": vpc_id})
    t = root.find("./RouterTableList/RouterTableListType")
    assert t.findtext("VpcId") == vpc_id and [x.text for x in t.findall("./VSwitchIds/VSwitchId")] == [vsw]
    root = xml("DescribeVpcAttribute", {"RegionId": REGION, "VpcId": vpc_id})
    assert root.findtext("VpcId") == vpc_id
    assert {r.findtext("ResourceType") for r in root.findall("./CloudResources/CloudResourceSetType")} >= {"VSwitch"}


def test_security_groups_belong_to_a_vpc(server, tenant):
    from alibabacloud_ecs20140526 import models as ecs_models
    vpc = vpc_client(tenant)
    a = make_vpc(vpc, cidr="10.10.0.0/16")["VpcId"]
    b = make_vpc(vpc, cidr="10.20.0.0/16")["VpcId"]
    vsw_a = make_vswitch(vpc, a, "10.10.1.0/24")
    c = tenant.client

    def group(vpc_id):
        return c.create_security_group(ecs_models.CreateSecurityGroupRequest(
            region_id=REGION, vpc_id=vpc_id)).body.to_map()["SecurityGroupId"]

    sg_a, sg_b = group(a), group(b)
    err = catch(tenant.run_instance, v_switch_id=vsw_a, security_group_ids=[sg_b])
    assert (err.status, err.code) == (400, "InvalidSecurityGroupId.VPCMismatch"), err.data
    iid = tenant.run_instance(v_switch_id=vsw_a, security_group_ids=[sg_a])
    err = catch(c.join_security_group, ecs_models.JoinSecurityGroupRequest(instance_id=iid, security_group_id=sg_b))
    assert (err.status, err.code) == (400, "InvalidInstanceId.Mismatch"), err.data
    # Without a group, an instance joins its VPC's default group.
    plain = tenant.run_instance(v_switch_id=vsw_a)
    default = tenant.instance(plain)["SecurityGroupIds"]["SecurityGroupId"]
    assert len(default) == 1 and default[0] not in (sg_a, sg_b)
    # A rule of another group naming the default group keeps the VPC (and so that group) alive.
    loose = c.create_security_group(ecs_models.CreateSecurityGroupRequest(region_id=REGION)).body.to_map()[
        "SecurityGroupId"]
    c.authorize_security_group(ecs_models.AuthorizeSecurityGroupRequest(
        region_id=REGION, security_group_id=loose, ip_protocol="tcp", port_range="22/22",
        source_group_id=default[0]))
    for i in (iid, plain):
        tenant.stop(i)
        tenant.delete_instance(i)
    vpc.delete_vswitch(vpc_models.DeleteVSwitchRequest(v_switch_id=vsw_a))
    err = catch(vpc.delete_vpc, vpc_models.DeleteVpcRequest(region_id=REGION, vpc_id=a))
    assert (err.status, err.code) == (400, "DependencyViolation.SecurityGroup"), err.data
    c.delete_security_group(ecs_models.DeleteSecurityGroupRequest(region_id=REGION, security_group_id=sg_a))
    err = catch(vpc.delete_vpc, vpc_models.DeleteVpcRequest(region_id=REGION, vpc_id=a))
    assert (err.status, err.code) == (403, "DependencyViolation"), err.data
    c.delete_security_group(ecs_models.DeleteSecurityGroupRequest(region_id=REGION, security_group_id=loose))
    vpc.delete_vpc(vpc_models.DeleteVpcRequest(region_id=REGION, vpc_id=a))
    listed = c.describe_security_groups(ecs_models.DescribeSecurityGroupsRequest(
        region_id=REGION, vpc_id=a)).body.to_map()
    assert listed["TotalCount"] == 0, "the VPC's default group went with it"
    err = catch(c.create_security_group, ecs_models.CreateSecurityGroupRequest(region_id=REGION, vpc_id=a))
    assert (err.status, err.code) == (404, "InvalidVpcId.NotFound")
