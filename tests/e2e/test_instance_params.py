"""CreateInstance and RunInstances honour what they accept (#10 item 2): the system and data
disks' descriptions are kept (`SystemDisk.Description`, `DataDisk.N.Description`), and a bad
one is refused; PrivateIpAddress is checked where it can be (needs a vSwitch, one instance)."""

from __future__ import annotations

from alibabacloud_ecs20140526 import models as ecs_models

from support import IMAGE, ITYPE, REGION, ZONE, catch, raw_v1


def test_disk_descriptions_are_kept(tenant):
    for create in (True, False):
        if create:
            iid = tenant.create_instance(
                system_disk=ecs_models.CreateInstanceRequestSystemDisk(description="boot disk"),
                data_disk=[ecs_models.CreateInstanceRequestDataDisk(size=20, description="scratch space"),
                           ecs_models.CreateInstanceRequestDataDisk(size=20)])
        else:
            iid = tenant.run_instance(system_disk={"description": "boot disk"},
                                      data_disks=[{"size": 20, "description": "scratch space"}, {"size": 20}])
        system = tenant.system_disk(iid)
        data = sorted(tenant.instance_disks(iid, "data"), key=lambda d: d["Device"])
        assert system["Description"] == "boot disk"
        assert [d["Description"] for d in data] == ["scratch space", ""]


def test_bad_description_and_private_ip_rules(tenant):
    err = catch(tenant.run_instance, data_disks=[{"size": 20, "description": "http://x"}])
    assert (err.status, err.code) == (400, "InvalidDescription.Malformed"), err.data
    req = ecs_models.RunInstancesRequest(region_id=REGION, image_id=IMAGE, instance_type=ITYPE, zone_id=ZONE,
                                         private_ip_address="172.16.0.9")
    err = catch(tenant.client.run_instances, req)
    assert (err.status, err.code, err.message) == (
        400, "MissingParameter",
        'The input parameter "VSwitchId" that is mandatory for processing this request is not supplied.')
    req.v_switch_id, req.amount = "vsw-any", 2
    err = catch(tenant.client.run_instances, req)
    assert (err.status, err.code) == (400, "InvalidParameter") and "PrivateIpAddress" in err.message


def test_modify_instance_attribute(server, tenant):
    iid = tenant.run_instance()
    c = tenant.client
    c.modify_instance_attribute(ecs_models.ModifyInstanceAttributeRequest(
        instance_id=iid, instance_name="web-1", description="front end", host_name="web1.lab",
        password="Passw0rd!", deletion_protection=True))
    attr = c.describe_instance_attribute(ecs_models.DescribeInstanceAttributeRequest(instance_id=iid)).body.to_map()
    assert (attr["InstanceName"], attr["Description"], attr["HostName"]) == ("web-1", "front end", "web1.lab")
    assert tenant.instance(iid)["DeletionProtection"] is True

    def fails(**kw):
        err = catch(c.modify_instance_attribute, ecs_models.ModifyInstanceAttributeRequest(instance_id=iid, **kw))
        return err.status, err.code

    assert fails(host_name="-bad") == (400, "InvalidHostName.Malformed")
    assert fails(password="short1A") == (400, "InvalidPassword.Malformed")
    assert fails(password="alllowercase") == (400, "InvalidPassword.Malformed")
    assert fails(instance_name="http://x") == (400, "InvalidInstanceName.Malformed")
    assert fails(description="x") == (400, "InvalidDescription.Malformed")
    assert fails(user_data="bm90IGJhc2U2NA=!") == (400, "InvalidUserData.Base64FormatInvalid")
    # UserData changes only while Stopped; it is what the next start reads.
    assert fails(user_data="aGVsbG8=") == (403, "IncorrectInstanceStatus")
    tenant.stop(iid)
    c.modify_instance_attribute(ecs_models.ModifyInstanceAttributeRequest(instance_id=iid, user_data="aGVsbG8="))
    got = c.describe_user_data(ecs_models.DescribeUserDataRequest(region_id=REGION, instance_id=iid)).body.to_map()
    assert got["UserData"] == "aGVsbG8="
    other = server.tenant()
    err = catch(other.client.modify_instance_attribute,
                ecs_models.ModifyInstanceAttributeRequest(instance_id=iid, instance_name="x1"))
    assert (err.status, err.code) == (404, "InvalidInstanceId.NotFound")


def test_instance_status_enis_ram_roles(tenant):
    a = tenant.run_instance()
    b = tenant.run_instance(wait=False)
    tenant.stop(a)
    c = tenant.client
    st = c.describe_instance_status(ecs_models.DescribeInstanceStatusRequest(
        region_id=REGION, instance_id=[a, b])).body.to_map()
    got = {s["InstanceId"]: s["Status"] for s in st["InstanceStatuses"]["InstanceStatus"]}
    assert got[a] == "Stopped" and got[b] in ("Pending", "Starting", "Running") and st["TotalCount"] == 2
    page = c.describe_instance_status(ecs_models.DescribeInstanceStatusRequest(
        region_id=REGION, page_size=1, page_number=2)).body.to_map()
    assert len(page["InstanceStatuses"]["InstanceStatus"]) == 1 and page["TotalCount"] == 2
    err = catch(c.describe_instance_status, ecs_models.DescribeInstanceStatusRequest(region_id=REGION, page_size=51))
    assert err.code == "InvalidParameter"

    inst = tenant.instance(a)
    eni = inst["NetworkInterfaces"]["NetworkInterface"][0]
    sets = c.describe_network_interfaces(ecs_models.DescribeNetworkInterfacesRequest(
        region_id=REGION, network_interface_id=[eni["NetworkInterfaceId"]])).body.to_map()
    rows = sets["NetworkInterfaceSets"]["NetworkInterfaceSet"]
    assert len(rows) == 1 and sets["TotalCount"] == 1
    row = rows[0]
    assert (row["NetworkInterfaceId"], row["InstanceId"], row["Type"], row["Status"]) == (
        eni["NetworkInterfaceId"], a, "Primary", "InUse")
    assert row["PrivateIpAddress"] == eni["PrimaryIpAddress"] and row["MacAddress"] == eni["MacAddress"]
    assert row["VpcId"] == inst["VpcAttributes"]["VpcId"] and row["Attachment"]["InstanceId"] == a
    by_instance = c.describe_network_interfaces(ecs_models.DescribeNetworkInterfacesRequest(
        region_id=REGION, instance_id=b)).body.to_map()
    assert [r["InstanceId"] for r in by_instance["NetworkInterfaceSets"]["NetworkInterfaceSet"]] == [b]
    none = c.describe_network_interfaces(ecs_models.DescribeNetworkInterfacesRequest(
        region_id=REGION, type="Secondary")).body.to_map()
    assert none["TotalCount"] == 0
    roles = c.describe_instance_ram_role(ecs_models.DescribeInstanceRamRoleRequest(
        region_id=REGION, instance_ids=f'["{a}"]')).body.to_map()
    assert roles["TotalCount"] == 0 and roles["InstanceRamRoleSets"]["InstanceRamRoleSet"] == []
    err = catch(c.describe_instance_ram_role, ecs_models.DescribeInstanceRamRoleRequest(
        region_id=REGION, instance_ids='["i-nope"]'))
    assert err.code == "InvalidInstanceId.NotFound"


def test_resource_groups(server, tenant):
    c = tenant.client
    iid = tenant.run_instance(resource_group_id="rg-lab1")
    inst = tenant.instance(iid)
    assert inst["ResourceGroupId"] == "rg-lab1"
    assert tenant.system_disk(iid)["ResourceGroupId"] == "rg-lab1"
    did = c.create_disk(ecs_models.CreateDiskRequest(
        region_id=REGION, zone_id=ZONE, size=20, resource_group_id="rg-data")).body.to_map()["DiskId"]
    assert tenant.wait_disk(did, "Available")["ResourceGroupId"] == "rg-data"
    sid = tenant.create_snapshot(did)
    for kind, rid in (("instance", iid), ("disk", did), ("snapshot", sid)):
        c.join_resource_group(ecs_models.JoinResourceGroupRequest(
            region_id=REGION, resource_group_id="rg-moved", resource_type=kind, resource_id=rid))
    assert tenant.instance(iid)["ResourceGroupId"] == "rg-moved"
    assert tenant.disk(did)["ResourceGroupId"] == "rg-moved"
    assert tenant.snapshot(sid)["ResourceGroupId"] == "rg-moved"

    def fails(**kw):
        err = catch(c.join_resource_group, ecs_models.JoinResourceGroupRequest(region_id=REGION, **kw))
        return err.status, err.code

    assert fails(resource_group_id="rg-x", resource_type="Disk", resource_id=did) == (
        400, "InvalidResourceType.NotFound")
    assert fails(resource_group_id="group1", resource_type="disk", resource_id=did) == (
        404, "InvalidResourceGroupId.NotFound")
    assert fails(resource_group_id="rg-x", resource_type="disk", resource_id="d-nope") == (
        404, "InvalidResourceId.NotFound")
    assert fails(resource_group_id="rg-x", resource_type="ddh", resource_id="dh-1") == (
        404, "InvalidResourceId.NotFound")
    # Security groups, key pairs (by name) and the caller's own images carry a group too, from
    # their creates or from JoinResourceGroup.
    sg = c.create_security_group(ecs_models.CreateSecurityGroupRequest(
        region_id=REGION, resource_group_id="rg-net")).body.to_map()["SecurityGroupId"]
    c.create_key_pair(ecs_models.CreateKeyPairRequest(region_id=REGION, key_pair_name="lab-key",
                                                      resource_group_id="rg-keys"))
    image = tenant.create_image(sid, "rg-image")

    def sg_group():
        got = c.describe_security_groups(ecs_models.DescribeSecurityGroupsRequest(
            region_id=REGION, security_group_ids=f'["{sg}"]')).body.to_map()
        return got["SecurityGroups"]["SecurityGroup"][0]["ResourceGroupId"]

    def key_group():
        got = c.describe_key_pairs(ecs_models.DescribeKeyPairsRequest(
            region_id=REGION, key_pair_name="lab-key")).body.to_map()
        return got["KeyPairs"]["KeyPair"][0]["ResourceGroupId"]

    def image_group():
        got = c.describe_images(ecs_models.DescribeImagesRequest(region_id=REGION, image_id=image)).body.to_map()
        return got["Images"]["Image"][0]["ResourceGroupId"]

    assert (sg_group(), key_group(), image_group()) == ("rg-net", "rg-keys", "")
    for kind, rid in (("securitygroup", sg), ("keypair", "lab-key"), ("image", image)):
        c.join_resource_group(ecs_models.JoinResourceGroupRequest(
            region_id=REGION, resource_group_id="rg-all", resource_type=kind, resource_id=rid))
    assert (sg_group(), key_group(), image_group()) == ("rg-all", "rg-all", "rg-all")
    got = c.describe_security_groups(ecs_models.DescribeSecurityGroupsRequest(
        region_id=REGION, resource_group_id="rg-all")).body.to_map()
    assert [g["SecurityGroupId"] for g in got["SecurityGroups"]["SecurityGroup"]] == [sg]
    got = c.describe_key_pairs(ecs_models.DescribeKeyPairsRequest(
        region_id=REGION, resource_group_id="rg-none")).body.to_map()
    assert got["TotalCount"] == 0
    err = catch(tenant.call, "JoinResourceGroup", {"ResourceGroupId": "rg-x", "ResourceType": "keypair",
                                                   "ResourceId": "lab-key"})
    assert (err.status, err.code) == (400, "MissingParameter")
    assert fails(resource_group_id="rg-x", resource_type="image", resource_id="blank_x64_20G.vhd") == (
        404, "InvalidResourceId.NotFound")
    assert fails(resource_group_id="rg-x", resource_type="keypair", resource_id="no-such-key") == (
        404, "InvalidResourceId.NotFound")
    other = server.tenant()
    err = catch(other.client.join_resource_group, ecs_models.JoinResourceGroupRequest(
        region_id=REGION, resource_group_id="rg-x", resource_type="instance", resource_id=iid))
    assert (err.status, err.code) == (404, "InvalidResourceId.NotFound")
    err = catch(tenant.run_instance, resource_group_id="RG-1")
    assert err.code == "InvalidResourceGroupId.NotFound"


def test_run_instances_refuses_what_it_cannot_honour(tenant):
    for kw, want in (({"host_name": "-x"}, (400, "InvalidHostName.Malformed")),
                     ({"password": "weak"}, (400, "InvalidPassword.Malformed")),
                     ({"launch_template_id": "lt-1"}, (404, "InvalidLaunchTemplate.NotFound"))):
        err = catch(tenant.run_instance, **kw)
        assert (err.status, err.code) == want, kw
    iid = tenant.run_instance(host_name="node-1.lab", password="Passw0rd!")
    assert tenant.instance(iid)["HostName"] == "node-1.lab"


def test_internet_settings_are_kept_and_eip_comes_before_public_ip(server, tenant):
    iid = tenant.run_instance(internet_charge_type="PayByBandwidth", internet_max_bandwidth_out=5,
                              internet_max_bandwidth_in=10)
    inst = tenant.instance(iid)
    assert (inst["InternetChargeType"], inst["InternetMaxBandwidthOut"], inst["InternetMaxBandwidthIn"]) == (
        "PayByBandwidth", 5, 10)
    err = catch(tenant.run_instance, internet_charge_type="PayByHour")
    assert (err.status, err.code) == (400, "InvalidInternetChargeType.ValueNotSupported")
    err = catch(tenant.run_instance, internet_max_bandwidth_out=101)
    assert (err.status, err.code) == (400, "InvalidParameter")
    # footmark's instance model reads the fields in order and needs EipAddress first.
    r = raw_v1(server, "DescribeInstances", {"RegionId": REGION, "InstanceIds": f'["{iid}"]'},
               ak=tenant.ak, secret=tenant.secret)
    keys = list(r.json()["Instances"]["Instance"][0])
    assert keys.index("EipAddress") < keys.index("PublicIpAddress")
