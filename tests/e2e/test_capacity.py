"""What a zone offers (#10 item 1): DescribeAvailableResource and
DescribeResourcesModification through the official SDK, and a server whose instance types come
from `serve --instance-types FILE`."""

from __future__ import annotations

import json

from alibabacloud_ecs20140526 import models as ecs_models

from support import REGION, ZONE, catch


def offered(body: dict) -> dict:
    """{zone: [values]} of a DescribeAvailableResource answer."""
    out = {}
    for z in body["AvailableZones"]["AvailableZone"]:
        assert z["RegionId"] == REGION and z["Status"] == "Available" and z["StatusCategory"] == "WithStock"
        res = z["AvailableResources"]["AvailableResource"]
        assert len(res) == 1
        out[z["ZoneId"]] = [r["Value"] for r in res[0]["SupportedResources"]["SupportedResource"]]
    return out


def test_describe_available_resource(tenant):
    c = tenant.client

    def ask(**kw):
        req = ecs_models.DescribeAvailableResourceRequest(region_id=REGION, **kw)
        return c.describe_available_resource(req).body.to_map()

    assert offered(ask(destination_resource="Zone")) == {"cn-hangzhou-h": ["cn-hangzhou-h"],
                                                         "cn-hangzhou-i": ["cn-hangzhou-i"]}
    # Terraform's alicloud_zones: the zones that offer one type.
    assert list(offered(ask(destination_resource="Zone", instance_type="ecs.g7.large"))) == [
        "cn-hangzhou-h", "cn-hangzhou-i"]
    assert offered(ask(destination_resource="Zone", instance_type="ecs.nope.large")) == {}
    assert offered(ask(destination_resource="Zone", cores=999)) == {}
    types = offered(ask(destination_resource="InstanceType", zone_id=ZONE))[ZONE]
    assert "ecs.g7.large" in types and len(types) == 16
    assert offered(ask(destination_resource="InstanceType", zone_id=ZONE, cores=4, memory=16.0))[ZONE] == [
        "ecs.g7.xlarge", "ecs.g8i.xlarge"]
    body = ask(destination_resource="SystemDisk", zone_id=ZONE, instance_type="ecs.g7.large")
    disks = body["AvailableZones"]["AvailableZone"][0]["AvailableResources"]["AvailableResource"][0]
    assert disks["Type"] == "SystemDisk"
    essd = [r for r in disks["SupportedResources"]["SupportedResource"] if r["Value"] == "cloud_essd"][0]
    assert (essd["Min"], essd["Max"], essd["Unit"]) == (20, 32768, "GiB")
    sys_values = offered(body)[ZONE]
    assert "ephemeral_ssd" not in sys_values
    assert "ephemeral_ssd" in offered(ask(destination_resource="DataDisk", zone_id=ZONE))[ZONE]
    assert "ephemeral_ssd" not in offered(ask(destination_resource="DataDisk", zone_id=ZONE, resource_type="disk"))[ZONE]
    assert offered(ask(destination_resource="DataDisk", zone_id=ZONE, data_disk_category="cloud_auto"))[ZONE] == [
        "cloud_auto"]
    assert offered(ask(destination_resource="Network", zone_id=ZONE)) == {ZONE: ["vpc"]}
    assert offered(ask(destination_resource="Network", network_category="classic")) == {}
    assert offered(ask(destination_resource="ddh")) == {}
    for bad in ({"destination_resource": "zone"}, {"destination_resource": "Zone", "resource_type": "vm"}):
        err = catch(c.describe_available_resource, ecs_models.DescribeAvailableResourceRequest(region_id=REGION, **bad))
        assert (err.status, err.code) == (400, "InvalidParameter"), bad
    err = catch(c.describe_available_resource, ecs_models.DescribeAvailableResourceRequest(region_id=REGION))
    assert (err.status, err.code) == (400, "MissingParameter")


def test_describe_resources_modification(server, tenant):
    c = tenant.client
    iid = tenant.run_instance(itype="ecs.g7.xlarge")

    def ask(**kw):
        req = ecs_models.DescribeResourcesModificationRequest(region_id=REGION, resource_id=iid, **kw)
        body = c.describe_resources_modification(req).body.to_map()
        zones = body["AvailableZones"]["AvailableZone"]
        if not zones:
            return []
        res = zones[0]["AvailableResources"]["AvailableResource"][0]
        assert zones[0]["ZoneId"] == ZONE and "ConditionSupportedResources" in res
        return [r["Value"] for r in res["SupportedResources"]["SupportedResource"]]

    up = ask(destination_resource="InstanceType")
    assert "ecs.g7.2xlarge" in up and "ecs.g7.large" not in up and "ecs.g7.xlarge" not in up
    down = ask(destination_resource="InstanceType", operation_type="Downgrade")
    assert "ecs.g7.large" in down and "ecs.g7.2xlarge" not in down
    assert ask(destination_resource="InstanceType", instance_type="ecs.r7.large", operation_type="RenewModify") == [
        "ecs.r7.large"]
    assert "cloud_essd" in ask(destination_resource="SystemDisk", instance_type="ecs.g7.large")
    err = catch(c.describe_resources_modification, ecs_models.DescribeResourcesModificationRequest(
        region_id=REGION, resource_id=iid, destination_resource="SystemDisk"))
    assert (err.status, err.code) == (400, "MissingParameter")
    err = catch(server.tenant().client.describe_resources_modification, ecs_models.DescribeResourcesModificationRequest(
        region_id=REGION, resource_id=iid, destination_resource="InstanceType"))
    assert (err.status, err.code) == (404, "InvalidResourceId.NotFound")


def test_instance_types_from_a_file(make_server, tmp_path):
    path = tmp_path / "types.json"
    path.write_text(json.dumps([{"id": "ecs.lab.small", "cpus": 1, "memory_mib": 1536},
                                {"id": "ecs.lab.big", "cpus": 6, "memory_mib": 12288}]))
    server = make_server("types", extra_args=["--instance-types", str(path)])
    api = server.tenant()
    got = api.client.describe_instance_types(ecs_models.DescribeInstanceTypesRequest()).body.to_map()
    assert [(t["InstanceTypeId"], t["CpuCoreCount"], t["MemorySize"]) for t in got["InstanceTypes"]["InstanceType"]] == [
        ("ecs.lab.small", 1, 1.5), ("ecs.lab.big", 6, 12.0)]
    iid = api.run_instance(itype="ecs.lab.big")
    inst = api.instance(iid)
    assert (inst["Cpu"], inst["Memory"], inst["InstanceTypeFamily"]) == (6, 12288, "ecs.lab")
    err = catch(api.run_instance, itype="ecs.g7.large")
    assert (err.status, err.code) == (400, "InvalidInstanceType.ValueNotSupported")
    # The instance keeps the size it was made with when the offer changes.
    path.write_text(json.dumps([{"id": "ecs.lab.small", "cpus": 1, "memory_mib": 1536}]))
    server.restart()
    inst = api.instance(iid)
    assert (inst["Cpu"], inst["Memory"]) == (6, 12288)
