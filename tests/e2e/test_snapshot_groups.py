"""Snapshot groups and ResetDisks through the official SDK, on real bytes (issue 9): write two
disks of one instance, take a group, write again, and roll both back together with ResetDisks."""

from __future__ import annotations

from alibabacloud_ecs20140526 import models as ecs_models

from nbd_client import Nbd, nbd_url, qemu_io
from support import REGION, _m, catch, poll


def test_reset_disks_rolls_a_group_back_on_real_bytes(server, sig_tenant):
    api = sig_tenant
    iid = api.run_instance(data_disks=[{"size": 20}, {"size": 20}])
    disks = api.data_disk_ids(iid)
    for d in disks:
        api.wait_disk(d, "In_use")
    for n, d in enumerate(disks):
        qemu_io(nbd_url(server.nbd_port, d), f"write -P {0xA0 + n} 0 64k", "write -P 0x5a 10M 1M")

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
        qemu_io(nbd_url(server.nbd_port, d), "write -P 0xbb 0 64k", "write -z 10M 1M")
    api.stop(iid)
    req = ecs_models.ResetDisksRequest(region_id=REGION, disk=[
        ecs_models.ResetDisksRequestDisk(disk_id=d, snapshot_id=s) for d, s in pairs.items()])
    out = _m(api.client.reset_disks(req))
    assert [o["OperationStatus"] for o in out["OperationProgressSet"]["OperationProgress"]] == ["Success"] * 2
    for d in disks:
        api.wait_disk(d, "In_use")
    api.start(iid)
    for n, d in enumerate(disks):
        qemu_io(nbd_url(server.nbd_port, d), f"read -P {0xA0 + n} 0 64k", "read -P 0x5a 10M 1M", read_only=True)

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


def test_a_group_is_consistent_across_two_disks_written_concurrently(server, sig_tenant):
    """Over NBD, a writer counts up on disk A then disk B (each write answered before the next):
    in every group, B's count is A's or one less, never ahead and never further behind."""
    import struct
    import threading

    api = sig_tenant
    iid = api.run_instance(data_disks=[{"size": 20}, {"size": 20}])
    a, b = api.data_disk_ids(iid)
    for d in (a, b):
        api.wait_disk(d, "In_use")
    stop = threading.Event()
    counts = {"k": 0}

    def writer():
        with Nbd.open(server.nbd_port, a) as ca, Nbd.open(server.nbd_port, b) as cb:
            k = 0
            while not stop.is_set():
                k += 1
                block = struct.pack("<Q", k) + bytes(4088)
                ca.write(0, block)
                cb.write(0, block)
            counts["k"] = k

    t = threading.Thread(target=writer)
    t.start()
    groups = []
    try:
        for _ in range(8):
            body = _m(api.client.create_snapshot_group(ecs_models.CreateSnapshotGroupRequest(
                region_id=REGION, instance_id=iid, disk_id=[a, b])))
            gid = body["SnapshotGroupId"]
            g = poll(lambda: _m(api.client.describe_snapshot_groups(ecs_models.DescribeSnapshotGroupsRequest(
                region_id=REGION, snapshot_group_id=[gid])))["SnapshotGroups"]["SnapshotGroup"][0],
                lambda g: g["Status"] == "accomplished", what="group")
            groups.append({m["SourceDiskId"]: m["SnapshotId"] for m in g["Snapshots"]["Snapshot"]})
    finally:
        stop.set()
        t.join()
    assert counts["k"] > 0
    seen = []
    for members in groups:
        with Nbd.open(server.nbd_port, members[a]) as ca, Nbd.open(server.nbd_port, members[b]) as cb:
            ka = struct.unpack("<Q", ca.read(0, 8))[0]
            kb = struct.unpack("<Q", cb.read(0, 8))[0]
        assert kb <= ka <= kb + 1, (ka, kb)
        seen.append(ka)
    assert seen == sorted(seen) and seen[-1] > seen[0], seen


def test_copy_snapshot_across_regions_keeps_the_bytes(server, sig_tenant):
    api = sig_tenant
    iid = api.run_instance(data_disks=[{"size": 20}])
    (did,) = api.data_disk_ids(iid)
    api.wait_disk(did, "In_use")
    qemu_io(nbd_url(server.nbd_port, did), "write -P 0xc7 4096 4096")
    sid = api.create_snapshot(did)
    copy = _m(api.client.copy_snapshot(ecs_models.CopySnapshotRequest(
        region_id=REGION, snapshot_id=sid, destination_region_id="cn-shanghai",
        destination_snapshot_name="dr-copy")))["SnapshotId"]

    def copied():
        r = _m(api.client.describe_snapshots(ecs_models.DescribeSnapshotsRequest(
            region_id="cn-shanghai", snapshot_ids=f'["{copy}"]')))
        return r["Snapshots"]["Snapshot"][0]

    c = poll(copied, lambda s: s["Status"] == "accomplished", what="copy")
    assert (c["SourceSnapshotId"], c["SourceRegionId"], c["SnapshotName"]) == (sid, REGION, "dr-copy")
    api.delete_snapshot(sid)
    qemu_io(nbd_url(server.nbd_port, copy), "read -P 0xc7 4096 4096", "read -P 0 0 4096", read_only=True)
