"""Protocol corners and revocation races found in review."""

from __future__ import annotations

import struct
import time

from nbd_client import CMD_READ, CMD_WRITE, REPLY_TYPE_NONE, REPLY_TYPE_OFFSET_DATA, Nbd
from support import attached_disk


def test_stop_does_not_wait_for_a_held_back_write_payload(server):
    """A client that sends a WRITE header and holds back its payload must neither delay
    StopInstance nor get that write in later (it would land on a stopped, maybe reset disk)."""
    api = server.tenant()
    iid, did = attached_disk(api)
    c = Nbd.open(server.nbd_port, did)
    c.write(0, b"\x11" * 4096)
    c.send_request(CMD_WRITE, 0, 4096)  # header only
    c.raw(b"\x22" * 1000)  # and part of the payload
    t = time.monotonic()
    api.stop(iid, wait=False)
    assert time.monotonic() - t < 5, "StopInstance waited for the client"
    assert c.wait_closed(), "the held-back writer is still connected"
    try:
        c.raw(b"\x22" * 3096)  # the rest arrives too late
    except OSError:
        pass
    api.wait_instance(iid, "Stopped")
    sid = api.create_snapshot(did)
    with Nbd.open(server.nbd_port, sid) as r:
        assert r.read(0, 4096) == b"\x11" * 4096, "the late payload reached the disk"


def test_structured_replies_after_export_name_and_empty_reads(server):
    api = server.tenant()
    _, did = attached_disk(api)
    c = Nbd(server.nbd_port)
    try:
        c.handshake()
        c.structured_reply()
        c.export_name(did)
        c.write(8192, b"\x33" * 512)
        cookie = c.send_request(CMD_READ, 8192, 512)
        rep = c.read_reply(512, 8192)
        assert rep.cookie == cookie and rep.structured, "READ after EXPORT_NAME must use structured replies"
        assert rep.chunks[0][0] == REPLY_TYPE_OFFSET_DATA and rep.data == b"\x33" * 512
        cookie = c.send_request(CMD_READ, 0, 0)
        rep = c.read_reply(0, 0)
        assert rep.cookie == cookie and rep.error == 0
        assert [t for t, _ in rep.chunks] == [REPLY_TYPE_NONE], "an empty read answers one NONE chunk"
        assert struct.pack(">Q", 0) not in [p for _, p in rep.chunks]
    finally:
        c.close()


def test_shutdown_with_open_connections_flushes_and_exits_promptly(fresh_server):
    """SIGTERM while one client is idle, one holds back a payload and one has reads in flight
    it never collects: the server flushes, closes them all and exits within the drain time;
    the idle client's completed write survives the restart."""
    server = fresh_server
    api = server.tenant()
    iid, did = attached_disk(api)
    idle = Nbd.open(server.nbd_port, did)
    idle.write(8192, b"\x5a" * 4096)  # completed, never flushed by the client
    held = Nbd.open(server.nbd_port, did)
    held.send_request(CMD_WRITE, 0, 4096)
    held.raw(b"\x22" * 100)
    greedy = Nbd.open(server.nbd_port, did)
    for i in range(64):
        greedy.send_request(CMD_READ, 0, 8 << 20, cookie=1000 + i)
    time.sleep(0.3)
    t = time.monotonic()
    assert server.stop(timeout=20) == 0
    assert time.monotonic() - t < 10, "shutdown waited on its clients"
    for c in (idle, held, greedy):
        assert c.wait_closed()
    server.restart()
    api.stop(iid)
    sid = api.create_snapshot(did)
    with Nbd.open(server.nbd_port, sid) as r:
        assert r.read(8192, 4096) == b"\x5a" * 4096, "the completed write was lost"
        assert r.read(0, 4096) == b"\x00" * 4096, "the held-back payload reached the disk"
