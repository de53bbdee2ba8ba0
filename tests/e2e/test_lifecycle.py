"""The headline flow (roll a data disk back to a snapshot) and the companion operations' life cycles."""

from __future__ import annotations

import json

from support import (
    IMAGE,
    ITYPE,
    REGION,
    ZONE,
    catch,
    expect_error,
    make_rig,
    poll,
    row,
)


def test_headline_reset_disk_lifecycle(server, sig_tenant):
    api = sig_tenant
    # RunInstances -> Running
    iid = api.run_instance()
    inst = api.instance(iid)
    assert inst["Status"] == "Running"
    assert inst["InstanceType"] == ITYPE
    assert (inst["Cpu"], inst["Memory"]) == (2, 8192)
    assert inst["ZoneId"] == ZONE and inst["RegionId"] == REGION
    assert inst["ImageId"] == IMAGE

    sysd = api.system_disk(iid)
    assert sysd["Status"] == "In_use"
    assert sysd["Device"] == "/dev/xvda"
    assert sysd["InstanceId"] == iid
    assert sysd["Type"] == "system"

    # CreateDisk -> Available
    did = api.create_disk(size=40, name="data-1")
    d = api.disk(did)
    assert (d["Status"], d["Size"], d["Type"], d["Category"]) == ("Available", 40, "data", "cloud_essd")
    assert d["ZoneId"] == ZONE and d["DiskName"] == "data-1"
    assert not d.get("InstanceId")

    # AttachDisk -> In_use on /dev/xvdb
    api.attach(did, iid)
    d = api.disk(did)
    assert (d["Status"], d["InstanceId"], d["Device"]) == ("In_use", iid, "/dev/xvdb")

    # CreateSnapshot -> accomplished
    sid = api.create_snapshot(did, name="before-rollback")
    s = api.snapshot(sid)
    assert (s["Status"], s["Progress"], s["SourceDiskId"]) == ("accomplished", "100%", did)
    assert s["SnapshotName"] == "before-rollback"

    # StopInstance -> Stopped
    api.stop(iid)
    assert api.instance_status(iid) == "Stopped"

    # DryRun first
    expect_error(row("DryRunOperation"), api.reset, did, sid, dry_run=True)
    assert api.disk_status(did) == "In_use"

    # ResetDisk: ReIniting at once, then back to In_use
    with server.timings(DiskMs=800):
        body = api.reset(did, sid)
        assert body.get("RequestId")
        assert api.disk_status(did) == "ReIniting"
    d = api.wait_disk(did, "In_use")
    assert (d["InstanceId"], d["Device"]) == (iid, "/dev/xvdb")
    # the instance did not move during the reset
    assert api.instance_status(iid) == "Stopped"

    # StartInstance -> Running
    api.start(iid)
    assert api.instance_status(iid) == "Running"
    assert api.disk_status(did) == "In_use"


def test_reset_unattached_disk_returns_to_available(server, sig_tenant):
    api = sig_tenant
    rig = make_rig(api, running=False)
    api.detach(rig.disk, rig.instance)
    d = api.disk(rig.disk)
    assert d["Status"] == "Available" and not d.get("InstanceId")
    with server.timings(DiskMs=600):
        api.reset(rig.disk, rig.snapshot)
        assert api.disk_status(rig.disk) == "ReIniting"
    api.wait_disk(rig.disk, "Available")
    # and it can be used again
    api.attach(rig.disk, rig.instance)


def test_reset_twice_in_a_row(server, tenant):
    api = tenant
    rig = make_rig(api)
    for _ in range(2):
        api.reset(rig.disk, rig.snapshot)
        api.wait_disk(rig.disk, "In_use")


def test_reset_system_disk(server, tenant):
    api = tenant
    iid = api.run_instance()
    sysd = api.system_disk(iid)["DiskId"]
    sid = api.create_snapshot(sysd)
    assert api.snapshot(sid)["SourceDiskType"].lower() == "system"
    api.stop(iid)
    api.reset(sysd, sid)
    api.wait_disk(sysd, "In_use")
    api.start(iid)


def test_run_instances_states_and_devices(server, tenant):
    api = tenant
    with server.timings(InstanceMs=700):
        ids = api.run_instances(amount=2, wait=False, data_disks=[{"size": 30}, {"size": 50, "category": "cloud_essd"}])
        assert len(ids) == 2 and len(set(ids)) == 2
        first = api.instance_status(ids[0])
        assert first == "Pending", first
    seen = {first}

    def st():
        s = api.instance_status(ids[0])
        seen.add(s)
        return s

    poll(st, lambda s: s == "Running", what="Running")
    assert seen == {"Pending", "Starting", "Running"}, seen
    api.wait_instance(ids[1], "Running")
    for iid in ids:
        disks = sorted(api.instance_disks(iid), key=lambda d: d["Device"])
        assert [d["Device"] for d in disks] == ["/dev/xvda", "/dev/xvdb", "/dev/xvdc"]
        assert [d["Type"] for d in disks] == ["system", "data", "data"]
        assert [d["Size"] for d in disks][1:] == [30, 50]
        assert all(d["Status"] == "In_use" and d["InstanceId"] == iid for d in disks)


def test_create_instance_is_stopped_then_starts(server, tenant):
    api = tenant
    iid = api.create_instance()
    inst = api.wait_instance(iid, "Stopped")
    assert inst["Status"] == "Stopped"
    api.start(iid)
    assert api.instance_status(iid) == "Running"


def test_stop_states(server, tenant):
    api = tenant
    iid = api.run_instance()
    with server.timings(InstanceMs=600):
        api.stop(iid, wait=False)
        assert api.instance_status(iid) == "Stopping"
        api.wait_instance(iid, "Stopped")
        api.start(iid, wait=False)
        assert api.instance_status(iid) == "Starting"
    api.wait_instance(iid, "Running")


def test_plural_start_stop(server, sig_tenant):
    api = sig_tenant
    from alibabacloud_ecs20140526 import models as m

    ids = api.run_instances(amount=2)
    body = api.client.stop_instances(m.StopInstancesRequest(region_id=REGION, instance_id=ids)).body.to_map()
    resps = body["InstanceResponses"]["InstanceResponse"]
    assert sorted(r["InstanceId"] for r in resps) == sorted(ids)
    for r in resps:
        assert (r["Code"], r["Message"], r["PreviousStatus"], r["CurrentStatus"]) == ("200", "success", "Running", "Stopping")
    for iid in ids:
        api.wait_instance(iid, "Stopped")

    body = api.client.start_instances(m.StartInstancesRequest(region_id=REGION, instance_id=ids)).body.to_map()
    resps = body["InstanceResponses"]["InstanceResponse"]
    assert sorted(r["InstanceId"] for r in resps) == sorted(ids)
    for r in resps:
        assert (r["Code"], r["Message"], r["PreviousStatus"], r["CurrentStatus"]) == ("200", "success", "Stopped", "Starting")
    for iid in ids:
        api.wait_instance(iid, "Running")


def test_start_stop_dry_run(server, tenant):
    api = tenant
    iid = api.run_instance()
    expect_error(row("DryRunOperation"), api.stop, iid, wait=False, dry_run=True)
    assert api.instance_status(iid) == "Running"
    api.stop(iid)
    expect_error(row("DryRunOperation"), api.start, iid, wait=False, dry_run=True)
    assert api.instance_status(iid) == "Stopped"


def test_delete_instance_rules(server, tenant):
    api = tenant
    iid = api.run_instance(data_disks=[{"size": 20, "delete_with_instance": True},
                                       {"size": 20, "delete_with_instance": False}])
    d_del, d_keep = api.data_disk_ids(iid)
    sysd = api.system_disk(iid)["DiskId"]
    err = catch(api.delete_instance, iid)
    assert (err.status, err.code) == (403, "IncorrectInstanceStatus"), err.data
    assert api.instance_status(iid) == "Running"

    api.delete_instance(iid, force=True)
    api.wait_instance(iid, None)
    api.wait_disk(d_del, None)
    api.wait_disk(sysd, None)
    d = api.wait_disk(d_keep, "Available")
    assert not d.get("InstanceId")
    # gone instance
    expect_error(row("InvalidInstanceId.NotFound"), api.start, iid, wait=False)


def test_delete_stopped_instance(server, tenant):
    api = tenant
    iid = api.run_instance()
    api.stop(iid)
    api.delete_instance(iid)
    api.wait_instance(iid, None)
    assert api.instances(instance_ids=json.dumps([iid]))["Instances"]["Instance"] == []


def test_disk_attach_detach_delete(server, tenant):
    api = tenant
    iid = api.run_instance()
    with server.timings(DiskMs=500):
        did = api.create_disk(size=20, wait=False)
        assert api.disk_status(did) == "Creating"
        api.wait_disk(did, "Available")
        api.attach(did, iid, wait=False)
        assert api.disk_status(did) == "Attaching"
        api.wait_disk(did, "In_use")
        api.detach(did, iid, wait=False)
        assert api.disk_status(did) == "Detaching"
        api.wait_disk(did, "Available")
    api.delete_disk(did)
    api.wait_disk(did, None)


def test_delete_attached_disk_refused(server, tenant):
    api = tenant
    rig = make_rig(api)
    err = catch(api.delete_disk, rig.disk)
    assert err.status == 403, err.data
    assert api.disk_status(rig.disk) == "In_use"


def test_create_disk_from_snapshot(server, tenant):
    api = tenant
    rig = make_rig(api)
    did = api.create_disk(size=None, snapshot_id=rig.snapshot)
    d = api.disk(did)
    assert d["SourceSnapshotId"] == rig.snapshot
    assert d["Size"] == 20


def test_unknown_instance_type(server, sig_tenant):
    err = catch(sig_tenant.run_instances, itype="ecs.nope.large", wait=False)
    assert (err.status, err.code) == (400, "InvalidInstanceType.ValueNotSupported"), err.data


def test_snapshot_progress_states(server, tenant):
    api = tenant
    rig = make_rig(api)
    with server.timings(SnapshotMs=1500):
        sid = api.create_snapshot(rig.disk, wait=False)
        s = api.snapshot(sid)
        assert s["Status"] == "progressing"
        assert s["Progress"].endswith("%") and s["Progress"] != "100%", s["Progress"]
    s = api.wait_snapshot(sid, "accomplished")
    assert s["Progress"] == "100%"
    api.delete_snapshot(sid)
    assert api.snapshot(sid) is None


def test_describe_instances_has_every_field_the_sdk_models(server, tenant):
    """#10: EipAddress and the other documented fields are present on every instance, shaped
    empty as ECS shapes them (footmark reads EipAddress on every instance read). The list is
    the official Python SDK's own model of an instance."""
    import inspect
    from alibabacloud_ecs20140526.models import _describe_instances_response_body as body
    iid = tenant.run_instance()
    inst = tenant.instance(iid)
    src = inspect.getsource(body.DescribeInstancesResponseBodyInstancesInstance.to_map)
    import re
    wanted = set(re.findall(r"result\['(\w+)'\]", src))
    assert wanted - set(inst) == set(), sorted(wanted - set(inst))
    assert inst["EipAddress"] == {"AllocationId": "", "Bandwidth": 0, "InternetChargeType": "", "IpAddress": "",
                                  "IsSupportUnassociate": False}
    nic = inst["NetworkInterfaces"]["NetworkInterface"][0]
    assert nic["PrimaryIpAddress"] == inst["VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0]


def test_describe_instance_attribute(server, tenant):
    """#10: Terraform reads DescribeInstanceAttribute after every RunInstances; every field
    the SDK models is there, agreeing with DescribeInstances."""
    import inspect
    import re
    from alibabacloud_ecs20140526 import models as m
    from alibabacloud_ecs20140526.models import _describe_instance_attribute_response_body as body
    iid = tenant.run_instance()
    got = tenant.client.describe_instance_attribute(m.DescribeInstanceAttributeRequest(instance_id=iid)).body.to_map()
    wanted = set(re.findall(r"result\['(\w+)'\]", inspect.getsource(body.DescribeInstanceAttributeResponseBody.to_map)))
    assert wanted - set(got) == set(), sorted(wanted - set(got))
    listed = tenant.instance(iid)
    for k in ("InstanceId", "Status", "InstanceType", "Cpu", "Memory", "HostName", "CreationTime", "VpcAttributes"):
        assert got[k] == listed[k], k
    other = server.tenant()
    err = catch(other.client.describe_instance_attribute, m.DescribeInstanceAttributeRequest(instance_id=iid))
    assert (err.status, err.code) == (404, "InvalidInstanceId.NotFound")


def test_reboot_instance_goes_stopping_starting_running(snapdisk_bin, tmp_path):
    """#10: RebootInstance: Stopping, then Starting, then Running; only a Running instance;
    DryRun; another account's instance does not exist for the caller."""
    import time

    from alibabacloud_ecs20140526 import models as m
    from support import BOOT_AK, BOOT_SECRET, Api, Server
    srv = Server(snapdisk_bin, tmp_path / "data", tmp_path / "logs", name="reboot", extra_args=["--transition-ms", "400"])
    srv.start()
    try:
        api = Api(srv, BOOT_AK, BOOT_SECRET)
        iid = api.run_instance()
        err = catch(api.client.reboot_instance, m.RebootInstanceRequest(instance_id=iid, dry_run=True))
        assert (err.status, err.code) == (400, "DryRunOperation")
        assert api.instance_status(iid) == "Running"
        api.client.reboot_instance(m.RebootInstanceRequest(instance_id=iid))
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            s = api.instance_status(iid)
            if not seen or seen[-1] != s:
                seen.append(s)
            if s == "Running" and len(seen) > 1:
                break
            time.sleep(0.05)
        assert seen == ["Stopping", "Starting", "Running"], seen
        api.stop(iid)
        err = catch(api.client.reboot_instance, m.RebootInstanceRequest(instance_id=iid))
        assert (err.status, err.code) == (403, "IncorrectInstanceStatus")
        other = srv.tenant()
        err = catch(other.client.reboot_instance, m.RebootInstanceRequest(instance_id=iid))
        assert (err.status, err.code) == (404, "InvalidInstanceId.NotFound")
    finally:
        srv.stop()


def test_what_terraform_reads_after_run_instances(server, tenant):
    """#10: DescribeUserData, DescribeInstanceMaintenanceAttributes and
    DescribeInstanceAttachmentAttributes, as alicloud_instance reads them after RunInstances;
    UserData is kept as given and checked as documented."""
    import base64

    from alibabacloud_ecs20140526 import models as m
    script = base64.b64encode(b"#!/bin/sh\necho hello\n").decode()
    iid = tenant.run_instance(user_data=script)
    plain = tenant.run_instance()
    ud = tenant.client.describe_user_data(m.DescribeUserDataRequest(region_id=REGION, instance_id=iid)).body.to_map()
    assert (ud["InstanceId"], ud["RegionId"], ud["UserData"]) == (iid, REGION, script)
    ud = tenant.client.describe_user_data(m.DescribeUserDataRequest(region_id=REGION, instance_id=plain)).body.to_map()
    assert ud["UserData"] == ""
    ma = tenant.client.describe_instance_maintenance_attributes(
        m.DescribeInstanceMaintenanceAttributesRequest(region_id=REGION, instance_id=[iid, plain, "i-nosuch"])).body.to_map()
    assert ma["TotalCount"] == 2
    attr = ma["MaintenanceAttributes"]["MaintenanceAttribute"][0]
    assert attr["InstanceId"] == iid and attr["ActionOnMaintenance"]["Value"] == "AutoRecover"
    assert attr["NotifyOnMaintenance"] is False and attr["MaintenanceWindows"]["MaintenanceWindow"] == []
    aa = tenant.client.describe_instance_attachment_attributes(
        m.DescribeInstanceAttachmentAttributesRequest(region_id=REGION, instance_ids=f'["{iid}"]')).body.to_map()
    assert aa["Instances"]["Instance"] == [{"InstanceId": iid, "PrivatePoolOptionsId": "",
                                            "PrivatePoolOptionsMatchCriteria": "None"}]
    for data, code, msg in [("not base64!", "InvalidUserData.Base64FormatInvalid",
                             "The specified parameter UserData must be base64 encoded."),
                            (base64.b64encode(b"x" * (32 * 1024 + 1)).decode(), "InvalidUserData.SizeExceeded",
                             'The specified parameter "UserData" exceeds the size.')]:
        err = catch(tenant.run_instances, 1, user_data=data)
        assert (err.status, err.code, err.message) == (400, code, msg)
    # None named: all of the caller's instances; a far page is empty, not an error or a crash.
    every = tenant.call("DescribeInstanceMaintenanceAttributes", {"RegionId": REGION})
    assert {iid, plain} <= {a["InstanceId"] for a in every["MaintenanceAttributes"]["MaintenanceAttribute"]}
    far = tenant.call("DescribeInstanceAttachmentAttributes", {"RegionId": REGION, "PageNumber": "4294967295",
                                                               "PageSize": "100"})
    assert far["Instances"]["Instance"] == [] and far["TotalCount"] >= 2
    err = catch(server.tenant().client.describe_user_data, m.DescribeUserDataRequest(region_id=REGION, instance_id=iid))
    assert (err.status, err.code) == (404, "InvalidInstanceId.NotFound")
