"""XML answers of the list shapes added this round (#9, #10): element names as the API
reference's XML examples show them (a list repeats its element, no wrapper per item)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from support import REGION, raw_v1


def _xml(server, tenant, action, params):
    r = raw_v1(server, action, params, ak=tenant.ak, secret=tenant.secret, fmt="XML")
    assert r.status == 200, r.text
    assert r.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(r.body)
    assert root.tag == f"{action}Response" and root.findtext("RequestId")
    return root


def test_xml_list_shapes(server, tenant):
    did = tenant.create_disk()
    tenant.call("TagResources", {"RegionId": REGION, "ResourceType": "disk", "ResourceId.1": did,
                                 "Tag.1.Key": "env", "Tag.1.Value": "prod", "Tag.2.Key": "team", "Tag.2.Value": "x"})
    root = _xml(server, tenant, "ListTagResources", {"RegionId": REGION, "ResourceType": "disk"})
    rows = root.findall("./TagResources/TagResource")
    assert [(r.findtext("ResourceId"), r.findtext("TagKey"), r.findtext("TagValue")) for r in rows] == [
        (did, "env", "prod"), (did, "team", "x")]
    assert root.find("NextToken") is not None

    root = _xml(server, tenant, "DescribeTags", {"RegionId": REGION, "ResourceType": "disk"})
    tags = root.findall("./Tags/Tag")
    assert {t.findtext("TagKey") for t in tags} == {"env", "team"}
    assert tags[0].findtext("./ResourceTypeCount/Disk") == "1"

    root = _xml(server, tenant, "DescribeInstanceTypes", {"InstanceTypes.1": "ecs.g7.large"})
    types = root.findall("./InstanceTypes/InstanceType")
    assert len(types) == 1 and types[0].findtext("InstanceTypeId") == "ecs.g7.large"
    assert types[0].findtext("CpuCoreCount") == "2" and types[0].findtext("MemorySize") == "8.0"
    assert [b.text for b in types[0].findall("./SupportedBootModes/SupportedBootMode")] == ["BIOS"]

    root = _xml(server, tenant, "DescribeDisks", {"RegionId": REGION, "DiskIds": f'["{did}"]'})
    disk = root.find("./Disks/Disk")
    assert [(t.findtext("TagKey"), t.findtext("TagValue")) for t in disk.findall("./Tags/Tag")] == [
        ("env", "prod"), ("team", "x")]
    assert disk.find("./Attachments") is not None and disk.findall("./Attachments/Attachment") == []

    iid = tenant.run_instance()
    root = _xml(server, tenant, "DescribeInstanceAttribute", {"InstanceId": iid})
    assert root.findtext("InstanceId") == iid
    assert root.find("./EipAddress/AllocationId") is not None
    assert root.findtext("./VpcAttributes/PrivateIpAddress/IpAddress")
    root = _xml(server, tenant, "DescribeInstances", {"RegionId": REGION, "InstanceIds": f'["{iid}"]'})
    nic = root.find("./Instances/Instance/NetworkInterfaces/NetworkInterface")
    assert nic.findtext("Type") == "Primary"
    assert nic.findtext("./PrivateIpSets/PrivateIpSet/Primary") == "true"


def test_xml_instance_settings_and_capacity_shapes(server, tenant):
    iid = tenant.run_instance()
    root = _xml(server, tenant, "DescribeInstanceStatus", {"RegionId": REGION, "InstanceId.1": iid})
    st = root.findall("./InstanceStatuses/InstanceStatus")
    assert [(s.findtext("InstanceId"), s.findtext("Status")) for s in st] == [(iid, "Running")]
    assert root.findtext("TotalCount") == "1"

    root = _xml(server, tenant, "DescribeNetworkInterfaces", {"RegionId": REGION, "InstanceId": iid})
    eni = root.find("./NetworkInterfaceSets/NetworkInterfaceSet")
    assert eni.findtext("InstanceId") == iid and eni.findtext("Type") == "Primary"
    assert eni.findtext("./PrivateIpSets/PrivateIpSet/Primary") == "true"
    assert eni.findtext("./Attachment/InstanceId") == iid

    root = _xml(server, tenant, "DescribeInstanceRamRole", {"RegionId": REGION, "InstanceIds": f'["{iid}"]'})
    assert root.find("./InstanceRamRoleSets") is not None and root.findall("./InstanceRamRoleSets/InstanceRamRoleSet") == []

    root = _xml(server, tenant, "DescribeAvailableResource",
                {"RegionId": REGION, "DestinationResource": "SystemDisk", "ZoneId": "cn-hangzhou-h"})
    zone = root.find("./AvailableZones/AvailableZone")
    assert zone.findtext("ZoneId") == "cn-hangzhou-h"
    res = zone.find("./AvailableResources/AvailableResource")
    assert res.findtext("Type") == "SystemDisk"
    values = [s.findtext("Value") for s in res.findall("./SupportedResources/SupportedResource")]
    assert "cloud_essd" in values

    root = _xml(server, tenant, "DescribeResourcesModification",
                {"RegionId": REGION, "ResourceId": iid, "DestinationResource": "InstanceType"})
    res = root.find("./AvailableZones/AvailableZone/AvailableResources/AvailableResource")
    assert res.findtext("Type") == "InstanceType" and res.findall("./SupportedResources/SupportedResource")
