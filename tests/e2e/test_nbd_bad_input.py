"""Malformed and hostile NBD input over raw sockets. Each case checks the answer the protocol
requires (an error reply, or closing that one connection) and then that the server still
serves a normal client and the data is intact."""

from __future__ import annotations

import random
import socket
import struct

import pytest

from nbd_client import (
    CMD_BLOCK_STATUS,
    CMD_READ,
    CMD_TRIM,
    CMD_WRITE,
    CMD_WRITE_ZEROES,
    EINVAL,
    ENOSPC,
    EOVERFLOW,
    FLAG_C_FIXED_NEWSTYLE,
    IHAVEOPT,
    MAX_PAYLOAD,
    NBDMAGIC,
    OPT_ABORT,
    OPT_GO,
    OPT_LIST,
    OPT_STARTTLS,
    REP_ACK,
    REP_ERR_INVALID,
    REP_ERR_TOO_BIG,
    REP_ERR_UNKNOWN,
    REP_ERR_UNSUP,
    Nbd,
    NbdClosed,
    OptError,
)
from support import attached_disk

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
SIZE = 20 * GiB
SENTINEL_AT = 5 * MiB


class Target:
    def __init__(self, server, did: str):
        self.server = server
        self.port = server.nbd_port
        self.did = did
        self.sentinel = random.Random(5).randbytes(64 * KiB)
        with Nbd.open(self.port, did) as c:
            c.write(SENTINEL_AT, self.sentinel)
            c.flush()

    def handshake(self) -> Nbd:
        c = Nbd(self.port)
        c.handshake()
        return c

    def open(self, **kw) -> Nbd:
        return Nbd.open(self.port, self.did, **kw)

    def assert_ok(self):
        """The server is alive and a fresh, well-behaved client can write and read."""
        assert self.server.alive(), "the server process died"
        data = random.randbytes(4 * KiB + 7)
        with self.open(structured=True) as c:
            c.write(123 * KiB + 3, data)
            assert c.read(123 * KiB + 3, len(data)) == data
            assert c.read(SENTINEL_AT, len(self.sentinel)) == self.sentinel
        with self.open() as c:
            assert c.read(123 * KiB + 3, len(data)) == data


@pytest.fixture(scope="module")
def target(server) -> Target:
    api = server.tenant()
    _iid, did = attached_disk(api, size=20)
    return Target(server, did)


# --------------------------------------------------------------------------------------------
# handshake and option haggling


def test_garbage_client_flags_close_the_connection(target):
    c = Nbd(target.port)
    try:
        c.greeting()
        c.raw(b"\xde\xad\xbe\xef" + b"GET / HTTP/1.1\r\n\r\n")
        assert c.wait_closed(5), "server kept a connection whose client flags are garbage"
    finally:
        c.close()
    target.assert_ok()


def test_bad_option_magic_closes_the_connection(target):
    c = target.handshake()
    try:
        c.send_option(OPT_GO, Nbd.info_request(target.did), magic=NBDMAGIC)
        assert c.wait_closed(5), "server kept a connection after a bad option magic"
    finally:
        c.close()
    target.assert_ok()


def test_option_with_huge_length(target):
    # 4 GiB announced, nothing sent: the server must neither wait for it nor buffer it.
    c = target.handshake()
    try:
        c.send_option(OPT_GO, b"\0\0\0\0", length=0xFFFF_FFFF)
        try:
            opt, rtype, _ = c.read_option_reply()
        except NbdClosed:
            pass  # closing is allowed
        else:
            assert (opt, rtype) == (OPT_GO, REP_ERR_TOO_BIG), (opt, hex(rtype))
            assert c.wait_closed(5), "the server cannot resync after a 4 GiB option it did not read"
    finally:
        c.close()
    # an oversized option (32 KiB) that is really sent: an error reply and the session goes on,
    # or the connection is closed; never a crash
    c = target.handshake()
    try:
        try:
            c.send_option(OPT_GO, Nbd.info_request("x" * (32 * KiB)))
            opt, rtype, _ = c.read_option_reply()
        except (NbdClosed, BrokenPipeError, ConnectionResetError):
            pass
        else:
            assert opt == OPT_GO and rtype & 0x8000_0000, (opt, hex(rtype))
            c.go(target.did)
            assert c.read(SENTINEL_AT, 16) == target.sentinel[:16]
    finally:
        c.close()
    target.assert_ok()


def test_unknown_option_is_unsupported_and_the_session_continues(target):
    with target.handshake() as c:
        for opt in (0x42, 0x7FFF_FFFF, OPT_STARTTLS):
            c.send_option(opt, b"some data")
            with pytest.raises(OptError) as ei:
                c.option_replies(opt)
            assert ei.value.reply == REP_ERR_UNSUP, ei.value
        c.go(target.did)
        assert c.read(SENTINEL_AT, 16) == target.sentinel[:16]
    target.assert_ok()


def test_go_for_an_unknown_name_then_a_good_one(target):
    with target.handshake() as c:
        for name in ("nope", "", "d-" + "z" * 300, "\u00e9t\u00e9"):
            with pytest.raises(OptError) as ei:
                c.go(name)
            assert ei.value.reply == REP_ERR_UNKNOWN, (name, ei.value)
        c.go(target.did)
        assert c.size == SIZE
        assert c.read(SENTINEL_AT, 16) == target.sentinel[:16]
    target.assert_ok()


def test_truncated_handshakes_do_not_hurt(target):
    for junk in (b"", struct.pack(">I", FLAG_C_FIXED_NEWSTYLE), struct.pack(">IQ", 1, IHAVEOPT),
                 struct.pack(">IQII", 1, IHAVEOPT, OPT_GO, 100) + b"\0\0\0\x05d-"):
        c = Nbd(target.port)
        c.greeting()
        c.raw(junk)
        c.sock.shutdown(socket.SHUT_WR)
        assert c.wait_closed(5)
        c.close()
    target.assert_ok()


# --------------------------------------------------------------------------------------------
# transmission


def test_unknown_command_is_einval(target):
    with target.open() as c:
        for kind in (0x7F, 0xFFFF):
            assert c.command_error(kind, 0, 4096) == EINVAL
        assert c.read(SENTINEL_AT, 16) == target.sentinel[:16]
    with target.open(structured=True) as c:
        assert c.command_error(0x7F, 0, 4096) == EINVAL
        assert c.read(SENTINEL_AT, 16) == target.sentinel[:16]
    target.assert_ok()


@pytest.mark.parametrize("structured", [False, True], ids=["simple", "structured"])
def test_reads_past_the_end_are_einval(target, structured):
    with target.open(structured=structured) as c:
        assert c.size == SIZE
        for off, n in ((SIZE, 1), (SIZE - 512, 1024), (SIZE + GiB, 4096), ((1 << 64) - 512, 1024)):
            assert c.command_error(CMD_READ, off, n) == EINVAL, (off, n)
        assert c.read(SIZE - 4096, 4096) == bytes(4096)
        assert c.read(SENTINEL_AT, 16) == target.sentinel[:16]
    target.assert_ok()


def test_writes_past_the_end_are_enospc_and_trims_einval(target):
    # The spec: ENOSPC for writes beyond the end, EINVAL for a trim that includes sectors beyond it.
    with target.open() as c:
        for off, n in ((SIZE, 4096), (SIZE - 512, 1024), ((1 << 64) - 512, 1024)):
            assert c.command_error(CMD_WRITE, off, n, payload=b"\x66" * n) == ENOSPC, (off, n)
            assert c.command_error(CMD_TRIM, off, n) == EINVAL, (off, n)
            assert c.command_error(CMD_WRITE_ZEROES, off, n) == ENOSPC, (off, n)
        # the part inside the disk was not written either
        assert c.read(SIZE - 512, 512) == bytes(512)
        c.write(SIZE - 512, b"\x67" * 512)
        assert c.read(SIZE - 512, 512) == b"\x67" * 512
    target.assert_ok()


def test_write_header_announcing_64_mib_closes_the_connection(target):
    c = target.open()
    try:
        c.send_request(CMD_WRITE, 0, 64 * MiB)
        assert c.wait_closed(5), "server kept a connection after a 64 MiB write header"
    finally:
        c.close()
    target.assert_ok()


def test_client_vanishing_mid_write(target):
    for structured in (False, True):
        c = target.open(structured=structured)
        c.send_request(CMD_WRITE, SENTINEL_AT, 2 * MiB)
        c.raw(b"\x13" * MiB)            # half the payload, then gone
        c.sock.close()
    # and one that leaves with requests still in flight
    c = target.open()
    for i in range(8):
        c.send_request(CMD_READ, i * MiB, MiB)
    c.sock.close()
    target.assert_ok()


def test_bad_request_magic_closes_the_connection(target):
    c = target.open()
    try:
        c.send_request(CMD_READ, 0, 4096, magic=0x12345678)
        assert c.wait_closed(5), "server kept a connection after a bad request magic"
    finally:
        c.close()
    target.assert_ok()


def test_block_status_without_meta_context_is_einval(target):
    with target.open(structured=True) as c:
        assert c.command_error(CMD_BLOCK_STATUS, 0, MiB) == EINVAL
        assert c.read(SENTINEL_AT, 16) == target.sentinel[:16]
    with target.open(meta=True) as c:
        ext = c.block_status(SENTINEL_AT, 64 * KiB)
        assert ext and ext[0][1] == 0 and sum(n for n, _ in ext) >= 64 * KiB, ext
    target.assert_ok()


def test_option_rules_list_data_meta_before_structured_abort(target):
    with target.handshake() as c:
        c.send_option(OPT_LIST, b"junk")
        with pytest.raises(OptError) as ei:
            c.option_replies(OPT_LIST)
        assert ei.value.reply == REP_ERR_INVALID, ei.value
        # SET_META_CONTEXT needs structured replies first
        with pytest.raises(OptError) as ei:
            c.set_meta_context(target.did, ["base:allocation"])
        assert ei.value.reply == REP_ERR_INVALID, ei.value
        assert target.did in c.list_exports()
        c.send_option(OPT_ABORT)
        opt, rtype, _ = c.read_option_reply()
        assert (opt, rtype) == (OPT_ABORT, REP_ACK)
        assert c.wait_closed(5)
    target.assert_ok()


def test_read_larger_than_the_advertised_maximum_is_an_error(target):
    with target.open(structured=True) as c:
        assert c.block_size == (1, 4096, MAX_PAYLOAD)
        assert c.command_error(CMD_READ, 0, MAX_PAYLOAD + 4096) in (EINVAL, EOVERFLOW)
        assert len(c.read(0, MAX_PAYLOAD)) == MAX_PAYLOAD
        assert c.read(SENTINEL_AT, 16) == target.sentinel[:16]
    target.assert_ok()
