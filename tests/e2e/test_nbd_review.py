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
