"""ResizeDisk and ReInitDisk (issue #9 items 2 and 3) through the official Tea SDK, and their
byte-level claims over NBD: after ResizeDisk the new end is readable and writable on
reconnect with the old bytes intact; after ReInitDisk a disk made from a snapshot (or a
system disk made from an account image) holds the snapshot's bytes again, and a disk made
empty reads zeros. Error rows are those of docs/api-compat.md §2.2, with exact messages."""

from __future__ import annotations

from alibabacloud_ecs20140526 import models as ecs_models

from nbd_client import Nbd, nbd_url, qemu_io
from support import _m, attached_disk, expect_error

GiB = 1 << 30

UNKNOWN_DISK = "d-doesnotexist0000000"

E = {
    "TooSmall": (403, "InvalidDiskSize.TooSmall", "Specified new disk size is less than the original disk size."),
    "TooLarge": (403, "InvalidDiskSize.TooLarge", "Specified new disk size is beyond the permitted range."),
    "Type": (400, "InvalidParam.Type", "The specified type is not supported."),
    "NotFound": (404, "InvalidDiskId.NotFound", "The specified disk does not exist."),
    "DeniedType": (403, "OperationDenied", "The type of the disk does not support the operation."),
    "DeniedStatus": (403, "OperationDenied",
                     "The status of the disk or the instance that the disk is attaching with does not support the operation."),
    "OnlineInstance": (403, "IncorrectInstanceStatus", "The current status of the resource does not support resize online."),
    "OnlineDisk": (403, "IncorrectDiskStatus", "The current status of the resource does not support resize online"),
    "CreatingSnapshot": (403, "DiskCreatingSnapshot",
                         "The operation is denied due to a snapshot of the specified disk is not completed yet."),
    "DiskInArrears": (403, "DiskInArrears", "The specified operation is denied as your disk owing fee."),
    "Internal": (500, "InternalError", "The request processing has failed due to some unknown error."),
    "MissingNewSize": (400, "MissingParameter",
                       'The input parameter "NewSize" that is mandatory for processing this request is not supplied.'),
    # ReInitDisk
    "IncorrectDiskStatus": (403, "IncorrectDiskStatus", "The current disk status does not support this operation."),
    "IncorrectInstanceStatus": (403, "IncorrectInstanceStatus",
                                "The current status of the resource does not support this operation."),
    "Password": (400, "InvalidPassword.Malformed", 'The specified parameter "Password" is not valid.'),
    "SourceSnapshot": (403, "InvalidSourceSnapshot",
                       "The snapshot which is used to create the specified disk has been deleted."),
    "ImageGone": (404, "InvalidDiskId.OperationNotSupported", "The operation is not supported due to image not exist."),
    "Category": (400, "DiskCategory.OperationNotSupported",
                 "The operation is not supported to the specified disk due to its disk category"),
    "TooOld": (403, "InvalidSnapshot.TooOld",
               "The disk is created from a snapshotId made before 2013-07-15, it cannot be re-initiated the specified "
               "disk any more since the detached first time."),
}


def resize(api, did, new_size, type_=None, token=None) -> dict:
    return _m(api.client.resize_disk(ecs_models.ResizeDiskRequest(
        disk_id=did, new_size=new_size, type=type_, client_token=token)))


def reinit(api, did, **kw) -> dict:
    return _m(api.client.re_init_disk(ecs_models.ReInitDiskRequest(disk_id=did, **kw)))


def export_size(port: int, did: str) -> int:
    with Nbd.open(port, did) as c:
        return c.size


def test_resize_grows_the_volume_visible_on_reconnect(server, sig_tenant):
    api = sig_tenant
    port = server.nbd_port
    iid, did = attached_disk(api, size=20)
    url = nbd_url(port, did)
    qemu_io(url, "write -P 0xa1 0 1M", "write -P 0xa2 21474770944 64k")
    assert export_size(port, did) == 20 * GiB

    # offline (the default) on a Running instance
    body = resize(api, did, 24)
    assert body.get("RequestId") and "OrderId" not in body, body
    d = api.disk(did)
    assert (d["Size"], d["Status"]) == (24, "In_use"), d
    assert export_size(port, did) == 24 * GiB, "a new connection sees the new size"
    qemu_io(url, "read -P 0xa1 0 1M", "read -P 0xa2 21474770944 64k", "read -P 0 20G 1M", "read -P 0 25768755200 1M",
            read_only=True)
    qemu_io(url, "write -P 0xa3 25769738240 64k")
    qemu_io(url, "read -P 0xa3 25769738240 64k", "read -P 0xa2 21474770944 64k", read_only=True)
    with Nbd.open(port, did) as c:
        c.write(24 * GiB - 4096, b"\xa4" * 4096)
        assert c.read(24 * GiB - 4096, 4096) == b"\xa4" * 4096

    # online, still Running
    resize(api, did, 30, type_="online")
    assert api.disk(did)["Size"] == 30
    qemu_io(url, "write -P 0xa5 32212250624 4k")
    qemu_io(url, "read -P 0xa5 32212250624 4k", "read -P 0xa1 0 1M", "read -P 0xa4 25769799680 4k", read_only=True)

    # ClientToken: the retry answers the first call's result instead of TooSmall
    first = resize(api, did, 32, token="grow-32-" + did)
    again = resize(api, did, 32, token="grow-32-" + did)
    assert api.disk(did)["Size"] == 32 and again.get("RequestId"), (first, again)

    # error rows
    expect_error(E["TooSmall"], resize, api, did, 32)
    expect_error(E["TooSmall"], resize, api, did, 31)
    expect_error(E["TooLarge"], resize, api, did, 32769)
    expect_error(E["Type"], resize, api, did, 40, "hot")
    expect_error(E["NotFound"], resize, api, UNKNOWN_DISK, 40)
    expect_error(E["MissingNewSize"], resize, api, did, None)
    with server.timings(SnapshotMs=1500):
        pending = api.create_snapshot(did, wait=False)
        expect_error(E["CreatingSnapshot"], resize, api, did, 40)
    api.wait_snapshot(pending, "accomplished")
    api.stop(iid)
    expect_error(E["OnlineInstance"], resize, api, did, 40, "online")
    server.admin("fault-inject", Operation="resize")
    expect_error(E["Internal"], resize, api, did, 40)
    assert api.disk(did)["Size"] == 32, "a store failure leaves the old size"
    resize(api, did, 40)  # offline on a Stopped instance
    api.start(iid)
    assert export_size(port, did) == 40 * GiB
    qemu_io(url, "read -P 0xa5 32212250624 4k", "read -P 0 42949668864 4k", read_only=True)


def test_resize_error_rows_of_unattached_and_local_disks(server, tenant):
    api = tenant
    with server.timings(DiskMs=3000):
        did = api.create_disk(size=20, wait=False)
        expect_error(E["DeniedStatus"], resize, api, did, 30)
        expect_error(E["OnlineDisk"], resize, api, did, 30, "online")
    api.wait_disk(did, "Available")
    expect_error(E["OnlineDisk"], resize, api, did, 30, "online")
    server.admin("account-billing", AccountId=api.account_id, InArrears=True)
    try:
        expect_error(E["DiskInArrears"], resize, api, did, 30)
    finally:
        server.admin("account-billing", AccountId=api.account_id, InArrears=False)
    resize(api, did, 30)
    d = api.disk(did)
    assert (d["Size"], d["Status"]) == (30, "Available"), d
    iid = api.run_instance(data_disks=[{"size": 20, "category": "ephemeral_ssd"}])
    local = api.data_disk_ids(iid)[0]
    expect_error(E["DeniedType"], resize, api, local, 30)
    expect_error(E["Category"], reinit, api, local)


def test_reinit_returns_snapshot_bytes_or_zeros(server, sig_tenant):
    api = sig_tenant
    port = server.nbd_port
    iid, src = attached_disk(api, size=20)
    qemu_io(nbd_url(port, src), "write -P 0xa1 0 1M", "write -P 0xa2 19G 64k")
    snap = api.create_snapshot(src)
    clone = api.create_disk(size=20, snapshot_id=snap)
    api.attach(clone, iid)
    empty = api.create_disk(size=20)
    api.attach(empty, iid)
    # write over both, and grow the clone past its snapshot
    qemu_io(nbd_url(port, clone), "write -P 0xb1 0 2M", "write -P 0xb2 19G 64k")
    qemu_io(nbd_url(port, empty), "write -P 0xc1 0 1M", "write -P 0xc2 10G 1M")
    resize(api, clone, 24)
    qemu_io(nbd_url(port, clone), "write -P 0xb3 25769738240 64k")

    expect_error(E["IncorrectInstanceStatus"], reinit, api, clone)
    api.stop(iid)
    expect_error(E["Password"], reinit, api, clone, password="weak")
    expect_error(E["NotFound"], reinit, api, UNKNOWN_DISK)
    with server.timings(DiskMs=2000):
        body = reinit(api, clone, password="EcsV587!", auto_start_instance=False,
                      key_pair_name="ignored", security_enhancement_strategy="Deactive")
        assert list(body) == ["RequestId"], body
        assert api.disk(clone)["Status"] == "ReIniting"
        expect_error(E["IncorrectDiskStatus"], reinit, api, clone)
    api.wait_disk(clone, "In_use")
    reinit(api, empty)
    api.wait_disk(empty, "In_use")
    assert api.instance_status(iid) == "Stopped", "AutoStartInstance is not honoured"
    api.start(iid)

    d = api.disk(clone)
    assert (d["Size"], d["Status"], d["InstanceId"]) == (24, "In_use", iid), d
    qemu_io(nbd_url(port, clone), "read -P 0xa1 0 1M", "read -P 0 1M 1M", "read -P 0xa2 19G 64k",
            "read -P 0 25769738240 64k", read_only=True)
    qemu_io(nbd_url(port, empty), "read -P 0 0 1M", "read -P 0 10G 1M", read_only=True)
    with Nbd.open(port, clone) as c:
        assert c.size == 24 * GiB
    # the snapshot itself is untouched, and the disks are writable again
    qemu_io(nbd_url(port, snap), "read -P 0xa1 0 1M", "read -P 0xa2 19G 64k", read_only=True)
    qemu_io(nbd_url(port, empty), "write -P 0xc3 0 4k")
    qemu_io(nbd_url(port, empty), "read -P 0xc3 0 4k", read_only=True)

    # the source snapshot deleted: InvalidSourceSnapshot
    api.stop(iid)
    api.client.delete_snapshot(ecs_models.DeleteSnapshotRequest(snapshot_id=snap, force=True))
    expect_error(E["SourceSnapshot"], reinit, api, clone)
    with server.timings(SnapshotMs=1500):
        pending = api.create_snapshot(empty, wait=False)
        expect_error(E["CreatingSnapshot"], reinit, api, empty)
    api.wait_snapshot(pending, "accomplished")
    # unattached: IncorrectDiskStatus
    api.detach(empty, iid)
    expect_error(E["IncorrectDiskStatus"], reinit, api, empty)


def test_reinit_system_disk_returns_to_its_image(server, tenant):
    api = tenant
    port = server.nbd_port
    iid, src = attached_disk(api, size=20)
    qemu_io(nbd_url(port, src), "write -P 0xd1 0 1M", "write -P 0xd2 15G 64k")
    image = api.create_image(api.create_snapshot(src), "reinit-image")
    vm = api.run_instance(image=image)
    sys_disk = api.system_disk(vm)["DiskId"]
    api.wait_disk(sys_disk, "In_use")
    qemu_io(nbd_url(port, sys_disk), "read -P 0xd1 0 1M", read_only=True)
    qemu_io(nbd_url(port, sys_disk), "write -P 0xe1 0 2M", "write -P 0xe2 15G 64k")
    api.stop(vm)
    reinit(api, sys_disk)
    api.wait_disk(sys_disk, "In_use")
    api.start(vm)
    qemu_io(nbd_url(port, sys_disk), "read -P 0xd1 0 1M", "read -P 0 1M 1M", "read -P 0xd2 15G 64k",
            read_only=True)

    # the image deleted: InvalidDiskId.OperationNotSupported
    api.stop(vm)
    api.delete_image(image, force=True)
    expect_error(E["ImageGone"], reinit, api, sys_disk)

    # a public (blank) image: the system disk returns to zeros
    api.start(vm)
    blank = api.run_instance()
    bsys = api.system_disk(blank)["DiskId"]
    api.wait_disk(bsys, "In_use")
    qemu_io(nbd_url(port, bsys), "write -P 0xf1 0 1M")
    api.stop(blank)
    reinit(api, bsys)
    api.wait_disk(bsys, "In_use")
    api.start(blank)
    qemu_io(nbd_url(port, bsys), "read -P 0 0 1M", read_only=True)

    # never started since it was created (CreateInstance): IncorrectInstanceStatus
    fresh = api.create_instance()
    api.wait_instance(fresh, "Stopped")
    fsys = api.system_disk(fresh)["DiskId"]
    api.wait_disk(fsys, "In_use")
    expect_error(E["IncorrectInstanceStatus"], reinit, api, fsys)


def test_reinit_of_a_disk_from_a_pre_2013_snapshot_is_refused(server, tenant):
    api = tenant
    iid, src = attached_disk(api, size=20)
    old = server.admin("snapshot-import", AccountId=api.account_id, DiskId=src,
                       CreationTime="2013-07-14T00:00:00Z")["SnapshotId"]
    did = api.create_disk(size=20, snapshot_id=old)
    api.attach(did, iid)
    api.stop(iid)
    expect_error(E["TooOld"], reinit, api, did)
