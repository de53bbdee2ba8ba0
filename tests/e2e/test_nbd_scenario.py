"""The whole story through the official SDK and real NBD clients: write, snapshot, write again,
stop (live connections are drained, flushed and closed), roll back with ResetDisk, start, and
read the snapshot's bytes back."""

from __future__ import annotations

import pytest

from nbd_client import REP_ERR_POLICY, Nbd, OptError, nbd_url, qemu_io
from support import attached_disk

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

PATTERN_A = ("write -P 0xa1 0 4M", "write -P 0xa2 1G 1M", "write -P 0xa3 39G 64k", "write -P 0xa4 5000 300")
CHECK_A = ("read -P 0xa1 0 5000", "read -P 0xa4 5000 300", "read -P 0xa1 5300 4189004",
           "read -P 0xa2 1G 1M", "read -P 0xa3 39G 64k",
           "read -P 0 2G 1M", "read -P 0 3G 1M", "read -P 0 4M 4M")
PATTERN_B = ("write -P 0xb1 0 2M", "write -P 0xb2 3G 1M", "write -z 1G 1M")
CHECK_B = ("read -P 0xb1 0 2M", "read -P 0xa1 2M 2M", "read -P 0 1G 1M", "read -P 0xb2 3G 1M",
           "read -P 0xa3 39G 64k")


def test_nbd_reset_disk_scenario(server, sig_tenant):
    api = sig_tenant
    port = server.nbd_port

    # RunInstances, CreateDisk + AttachDisk (In_use)
    iid, did = attached_disk(api, size=40)
    assert api.disk(did)["Status"] == "In_use"
    url = nbd_url(port, did)

    # pattern A, snapshot A
    qemu_io(url, *PATTERN_A)
    qemu_io(url, *CHECK_A, read_only=True)
    snap_a = api.create_snapshot(did, name="pattern-a")
    assert api.snapshot(snap_a)["Status"] == "accomplished"

    # pattern B over it
    qemu_io(url, *PATTERN_B)
    qemu_io(url, *CHECK_B, read_only=True)

    # A long-lived client (like qemu-nbd / a VM) is connected when StopInstance comes; its last
    # write was answered but never flushed.
    live = Nbd.open(port, did, structured=True)
    try:
        live.write(2 * GiB, b"\xc3" * MiB)
        assert live.read(2 * GiB, 16) == b"\xc3" * 16
        api.stop(iid, wait=False)
        # StopInstance has returned: the server has already closed the connection.
        assert live.wait_closed(1.0), "NBD connection still open after StopInstance returned"
    finally:
        live.close()
    with Nbd(port) as c:
        c.handshake()
        with pytest.raises(OptError) as ei:
            c.go(did)
        assert ei.value.reply == REP_ERR_POLICY, ei.value
    api.wait_instance(iid, "Stopped")

    # The write made just before the stop is durable: a snapshot taken now holds it.
    snap_b = api.create_snapshot(did, name="pattern-b")
    qemu_io(nbd_url(port, snap_b), *CHECK_B, "read -P 0xc3 2G 1M", read_only=True)

    # ResetDisk to A; DescribeDisks until In_use; StartInstance
    api.reset(did, snap_a)
    api.wait_disk(did, "In_use")
    api.start(iid)
    assert api.instance_status(iid) == "Running"

    # pattern A is back, B and the late write are gone
    qemu_io(url, *CHECK_A, read_only=True)
    with Nbd.open(port, did) as c:
        assert c.read(0, 4 * KiB) == b"\xa1" * 4 * KiB
        assert c.read(3 * GiB, 4 * KiB) == bytes(4 * KiB)
    # both snapshots are intact: A still holds A, B (newer than A) survived the reset
    qemu_io(nbd_url(port, snap_a), *CHECK_A, read_only=True)
    qemu_io(nbd_url(port, snap_b), *CHECK_B, "read -P 0xc3 2G 1M", read_only=True)
