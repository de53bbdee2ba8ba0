"""CreateInstance and RunInstances honour what they accept (#10 item 2): the system and data
disks' descriptions are kept (`SystemDisk.Description`, `DataDisk.N.Description`), and a bad
one is refused; PrivateIpAddress is checked where it can be (needs a vSwitch, one instance)."""

from __future__ import annotations

from alibabacloud_ecs20140526 import models as ecs_models

from support import IMAGE, ITYPE, REGION, ZONE, catch


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
