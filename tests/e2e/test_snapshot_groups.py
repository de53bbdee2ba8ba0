"""Snapshot groups and ResetDisks through the official SDK, on real bytes (issue 9): write two
disks of one instance, take a group, write again, and roll both back together with ResetDisks."""

from __future__ import annotations

from alibabacloud_ecs20140526 import models as ecs_models

from nbd_client import Nbd
from support import REGION, _m, catch, poll


def test_reset_disks_rolls_a_group_back_on_real_bytes(server, sig_tenant):
    api = sig_tenant
    iid = api.run_instance(data_disks=[{"size": 20}, {"size": 20}])
    disks = api.data_disk_ids(iid)
    for d in disks:
        api.wait_disk(d, "In_use")
    for n, d in enumerate(disks):
        with Nbd.open(server.nbd_port, d) as c:
            c.write(0, bytes([0xA0 + n]) * 4096)
            c.flush()

    body = _m(api.client.create_snapshot_group(ecs_models.CreateSnapshotGroupRequest(
        region_id=REGION, instance_id=iid, disk_id=disks, name="golden")))
    gid = body["SnapshotGroupId"]

    def group():
        r = _m(api.client.describe_snapshot_groups(ecs_models.DescribeSnapshotGroupsRequest(
            region_id=REGION, snapshot_group_id=[gid])))
        return r["SnapshotGroups"]["SnapshotGroup"][0]

    g = poll(group, lambda g: g["Status"] == "accomplished", what="group accomplished")
    pairs = {m["SourceDiskId"]: m["SnapshotId"] for m in g["Snapshots"]["Snapshot"]}
    assert set(pairs) == set(disks)

    for d in disks:
        with Nbd.open(server.nbd_port, d) as c:
            c.write(0, b"\xbb" * 4096)
            c.flush()
    api.stop(iid)
    req = ecs_models.ResetDisksRequest(region_id=REGION, disk=[
        ecs_models.ResetDisksRequestDisk(disk_id=d, snapshot_id=s) for d, s in pairs.items()])
    out = _m(api.client.reset_disks(req))
    assert [o["OperationStatus"] for o in out["OperationProgressSet"]["OperationProgress"]] == ["Success"] * 2
    for d in disks:
        api.wait_disk(d, "In_use")
    api.start(iid)
    for n, d in enumerate(disks):
        with Nbd.open(server.nbd_port, d) as c:
            assert c.read(0, 4096) == bytes([0xA0 + n]) * 4096, d

    # All or nothing: a pair naming another disk's snapshot refuses the whole request.
    api.stop(iid)
    d0, d1 = disks
    bad = ecs_models.ResetDisksRequest(region_id=REGION, disk=[
        ecs_models.ResetDisksRequestDisk(disk_id=d0, snapshot_id=pairs[d0]),
        ecs_models.ResetDisksRequestDisk(disk_id=d1, snapshot_id=pairs[d0])])
    err = catch(api.client.reset_disks, bad)
    assert (err.status, err.code) == (403, "InvalidParameter.Mismatch"), err.data
    assert api.disk(d0)["Status"] == "In_use"

    _m(api.client.delete_snapshot_group(ecs_models.DeleteSnapshotGroupRequest(
        region_id=REGION, snapshot_group_id=gid)))
    assert api.snapshot(pairs[d0]) is None
