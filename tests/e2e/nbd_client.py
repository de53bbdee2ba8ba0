"""A minimal NBD client over a raw socket, for the data-plane tests.

Written from the protocol specification (NetworkBlockDevice/nbd, doc/proto.md), independent of the
server's code: fixed newstyle handshake, option haggling (GO, INFO, LIST, EXPORT_NAME, ABORT,
STRUCTURED_REPLY, SET/LIST_META_CONTEXT), and the transmission phase with simple and structured
replies. Every low-level piece (``send_option``, ``send_request``, ``raw``) is exposed so the
bad-input tests can send malformed bytes, and ``wait_closed`` tells whether the server hung up.

Also: ``qemu_io`` / ``run_tool`` wrappers for qemu-io, qemu-img, nbdinfo and nbdcopy.
"""

from __future__ import annotations

import errno as _errno
import itertools
import os
import shutil
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field

NBDMAGIC = 0x4E42444D41474943  # "NBDMAGIC"
IHAVEOPT = 0x49484156454F5054  # "IHAVEOPT"
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2
FLAG_C_FIXED_NEWSTYLE = 1
FLAG_C_NO_ZEROES = 2

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10

REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_META_CONTEXT = 4
REP_ERR_UNSUP = 0x80000001
REP_ERR_POLICY = 0x80000002
REP_ERR_INVALID = 0x80000003
REP_ERR_UNKNOWN = 0x80000006
REP_ERR_TOO_BIG = 0x80000009

INFO_EXPORT = 0
INFO_NAME = 1
INFO_DESCRIPTION = 2
INFO_BLOCK_SIZE = 3

TF_HAS_FLAGS = 1 << 0
TF_READ_ONLY = 1 << 1
TF_SEND_FLUSH = 1 << 2
TF_SEND_FUA = 1 << 3
TF_SEND_TRIM = 1 << 5
TF_SEND_WRITE_ZEROES = 1 << 6
TF_CAN_MULTI_CONN = 1 << 8

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_CACHE = 5
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7

CMD_FLAG_FUA = 1 << 0
CMD_FLAG_NO_HOLE = 1 << 1
CMD_FLAG_REQ_ONE = 1 << 3

REPLY_FLAG_DONE = 1
REPLY_TYPE_NONE = 0
REPLY_TYPE_OFFSET_DATA = 1
REPLY_TYPE_OFFSET_HOLE = 2
REPLY_TYPE_BLOCK_STATUS = 5
REPLY_TYPE_ERROR = 0x8001
REPLY_TYPE_ERROR_OFFSET = 0x8002

STATE_HOLE = 1
STATE_ZERO = 2

EPERM = 1
EINVAL = 22
ENOSPC = 28
EOVERFLOW = 75

MAX_PAYLOAD = 32 << 20


class NbdClosed(Exception):
    """The server closed the connection (EOF or reset) while a reply was expected."""


@dataclass
class OptError(Exception):
    """An option was answered with an NBD_REP_ERR_* reply."""

    option: int
    reply: int
    message: str

    def __str__(self) -> str:
        return f"option {self.option} refused with {self.reply:#x}: {self.message!r}"


@dataclass
class CmdError(Exception):
    """A command was answered with a non-zero error."""

    error: int
    message: str = ""

    def __str__(self) -> str:
        return f"NBD error {self.error} ({_errno.errorcode.get(self.error, '?')}) {self.message!r}"


@dataclass
class Reply:
    cookie: int
    error: int = 0
    data: bytes = b""
    message: str = ""
    structured: bool = False
    chunks: list = field(default_factory=list)  # (type, payload) of structured chunks
    extents: list = field(default_factory=list)  # (length, flags) from a block-status chunk


class Nbd:
    """One NBD connection. ``Nbd.open(port, name)`` does the whole handshake."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0, unix: str | None = None):
        if unix is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(unix)
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server_flags: int | None = None
        self.no_zeroes = False
        self.size: int | None = None
        self.tflags: int | None = None
        self.infos: dict[int, bytes] = {}
        self.structured = False
        self.meta_contexts: dict[int, str] = {}
        self._cookies = itertools.count(1)

    # ---- convenience --------------------------------------------------------------------
    @classmethod
    def open(cls, port: int, name: str, structured: bool = False, meta: bool = False,
             timeout: float = 10.0, unix: str | None = None) -> "Nbd":
        c = cls(port, timeout=timeout, unix=unix)
        try:
            c.handshake()
            if structured or meta:
                c.structured_reply()
            if meta:
                ids = c.set_meta_context(name, ["base:allocation"])
                assert list(ids.values()) == ["base:allocation"], ids
            c.go(name)
        except BaseException:
            c.close()
            raise
        return c

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Nbd":
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- raw bytes ----------------------------------------------------------------------
    def raw(self, data: bytes):
        self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            except (ConnectionResetError, BrokenPipeError) as e:
                raise NbdClosed(f"connection reset after {len(buf)}/{n} bytes") from e
            if not chunk:
                raise NbdClosed(f"EOF after {len(buf)}/{n} bytes")
            buf += chunk
        return bytes(buf)

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within `timeout` (EOF or reset), ignoring
        any bytes still arriving; False when it is still open after `timeout`."""
        deadline = time.monotonic() + timeout
        old = self.sock.gettimeout()
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    return False
                except (ConnectionResetError, BrokenPipeError):
                    return True
                if not chunk:
                    return True
        finally:
            self.sock.settimeout(old)

    # ---- handshake ----------------------------------------------------------------------
    def greeting(self) -> int:
        magic, opt, flags = struct.unpack(">QQH", self.recv_exact(18))
        assert magic == NBDMAGIC, hex(magic)
        assert opt == IHAVEOPT, f"not a newstyle server: {opt:#x}"
        self.server_flags = flags
        return flags

    def handshake(self, client_flags: int | None = None) -> int:
        flags = self.greeting()
        assert flags & FLAG_FIXED_NEWSTYLE, f"server lacks fixed newstyle: {flags:#x}"
        if client_flags is None:
            client_flags = FLAG_C_FIXED_NEWSTYLE | (flags & FLAG_NO_ZEROES and FLAG_C_NO_ZEROES)
        self.no_zeroes = bool(client_flags & FLAG_C_NO_ZEROES)
        self.raw(struct.pack(">I", client_flags))
        return flags

    def send_option(self, option: int, data: bytes = b"", length: int | None = None,
                    magic: int = IHAVEOPT):
        n = len(data) if length is None else length
        self.raw(struct.pack(">QII", magic, option, n) + data)

    def read_option_reply(self) -> tuple[int, int, bytes]:
        magic, option, rtype, n = struct.unpack(">QIII", self.recv_exact(20))
        assert magic == OPT_REPLY_MAGIC, f"bad option reply magic {magic:#x}"
        return option, rtype, self.recv_exact(n) if n else b""

    def option_replies(self, option: int) -> list[tuple[int, bytes]]:
        """Read replies to `option` up to the final one (ACK or an error); raise OptError on error."""
        out = []
        while True:
            opt, rtype, data = self.read_option_reply()
            assert opt == option, f"reply for option {opt}, expected {option}"
            if rtype & 0x80000000:
                raise OptError(option, rtype, data.decode(errors="replace"))
            out.append((rtype, data))
            if rtype == REP_ACK:
                return out

    def option(self, option: int, data: bytes = b"") -> list[tuple[int, bytes]]:
        self.send_option(option, data)
        return self.option_replies(option)

    def list_exports(self) -> list[str]:
        names = []
        for rtype, data in self.option(OPT_LIST):
            if rtype == REP_SERVER:
                (n,) = struct.unpack(">I", data[:4])
                names.append(data[4:4 + n].decode())
        return names

    def structured_reply(self):
        self.option(OPT_STRUCTURED_REPLY)
        self.structured = True

    @staticmethod
    def meta_request(name: str, queries: list[str]) -> bytes:
        d = struct.pack(">I", len(name.encode())) + name.encode() + struct.pack(">I", len(queries))
        for q in queries:
            d += struct.pack(">I", len(q.encode())) + q.encode()
        return d

    def set_meta_context(self, name: str, queries: list[str], list_only: bool = False) -> dict[int, str]:
        opt = OPT_LIST_META_CONTEXT if list_only else OPT_SET_META_CONTEXT
        ids = {}
        for rtype, data in self.option(opt, self.meta_request(name, queries)):
            if rtype == REP_META_CONTEXT:
                (cid,) = struct.unpack(">I", data[:4])
                ids[cid] = data[4:].decode()
        if not list_only:
            self.meta_contexts = ids
        return ids

    @staticmethod
    def info_request(name: str, infos: tuple[int, ...] = ()) -> bytes:
        d = struct.pack(">I", len(name.encode())) + name.encode() + struct.pack(">H", len(infos))
        for i in infos:
            d += struct.pack(">H", i)
        return d

    def _info_replies(self, option: int, name: str, infos: tuple[int, ...]) -> dict[int, bytes]:
        got = {}
        for rtype, data in self.option(option, self.info_request(name, infos)):
            if rtype == REP_INFO:
                (itype,) = struct.unpack(">H", data[:2])
                got[itype] = data[2:]
        assert INFO_EXPORT in got, f"no NBD_INFO_EXPORT among {sorted(got)}"
        return got

    def info(self, name: str, infos: tuple[int, ...] = (INFO_BLOCK_SIZE,)) -> dict[int, bytes]:
        return self._info_replies(OPT_INFO, name, infos)

    def go(self, name: str, infos: tuple[int, ...] = (INFO_BLOCK_SIZE,)) -> dict[int, bytes]:
        got = self._info_replies(OPT_GO, name, infos)
        self.infos = got
        self.size, self.tflags = struct.unpack(">QH", got[INFO_EXPORT])
        return got

    def export_name(self, name: str):
        """NBD_OPT_EXPORT_NAME: no reply on refusal, the server just closes."""
        self.send_option(OPT_EXPORT_NAME, name.encode())
        self.size, self.tflags = struct.unpack(">QH", self.recv_exact(10))
        if not self.no_zeroes:
            self.recv_exact(124)

    @property
    def block_size(self) -> tuple[int, int, int] | None:
        b = self.infos.get(INFO_BLOCK_SIZE)
        return struct.unpack(">III", b) if b else None

    @property
    def read_only(self) -> bool:
        return bool(self.tflags & TF_READ_ONLY)

    # ---- transmission -------------------------------------------------------------------
    def send_request(self, kind: int, offset: int = 0, length: int = 0, flags: int = 0,
                     payload: bytes = b"", cookie: int | None = None,
                     magic: int = REQUEST_MAGIC) -> int:
        cookie = next(self._cookies) if cookie is None else cookie
        self.raw(struct.pack(">IHHQQI", magic, flags, kind, cookie, offset, length) + payload)
        return cookie

    def read_reply(self, read_len: int = 0, read_offset: int = 0) -> Reply:
        """Read one reply. For a simple reply to a successful read, `read_len` bytes of data
        follow; a structured reply is read chunk by chunk up to its DONE flag."""
        (magic,) = struct.unpack(">I", self.recv_exact(4))
        if magic == SIMPLE_REPLY_MAGIC:
            err, cookie = struct.unpack(">IQ", self.recv_exact(12))
            data = self.recv_exact(read_len) if (read_len and err == 0) else b""
            return Reply(cookie, err, data)
        assert magic == STRUCTURED_REPLY_MAGIC, f"bad reply magic {magic:#x}"
        assert self.structured, "structured reply without negotiation"
        rep = None
        buf = bytearray(read_len)
        while True:
            if rep is not None:
                (magic,) = struct.unpack(">I", self.recv_exact(4))
                assert magic == STRUCTURED_REPLY_MAGIC, f"bad chunk magic {magic:#x}"
            flags, ctype, cookie, n = struct.unpack(">HHQI", self.recv_exact(16))
            payload = self.recv_exact(n) if n else b""
            if rep is None:
                rep = Reply(cookie, structured=True)
            assert cookie == rep.cookie, "chunks of different requests interleaved"
            rep.chunks.append((ctype, payload))
            if ctype == REPLY_TYPE_OFFSET_DATA:
                (off,) = struct.unpack(">Q", payload[:8])
                rel = off - read_offset
                buf[rel:rel + n - 8] = payload[8:]
            elif ctype == REPLY_TYPE_OFFSET_HOLE:
                off, hl = struct.unpack(">QI", payload[:12])
                rel = off - read_offset
                buf[rel:rel + hl] = bytes(hl)
            elif ctype == REPLY_TYPE_BLOCK_STATUS:
                (cid,) = struct.unpack(">I", payload[:4])
                rep.extents = [struct.unpack(">II", payload[i:i + 8]) for i in range(4, len(payload), 8)]
            elif ctype & 0x8000:
                err, mlen = struct.unpack(">IH", payload[:6])
                rep.error = rep.error or err
                rep.message = payload[6:6 + mlen].decode(errors="replace")
            if flags & REPLY_FLAG_DONE:
                break
        if rep.error == 0:
            rep.data = bytes(buf)
        return rep

    def _call(self, kind, offset=0, length=0, flags=0, payload=b"", read_len=0) -> Reply:
        cookie = self.send_request(kind, offset, length, flags, payload)
        rep = self.read_reply(read_len, offset)
        assert rep.cookie == cookie, (rep.cookie, cookie)
        if rep.error:
            raise CmdError(rep.error, rep.message)
        return rep

    def read(self, offset: int, length: int) -> bytes:
        return self._call(CMD_READ, offset, length, read_len=length).data

    def write(self, offset: int, data: bytes, fua: bool = False):
        self._call(CMD_WRITE, offset, len(data), CMD_FLAG_FUA if fua else 0, data)

    def trim(self, offset: int, length: int):
        self._call(CMD_TRIM, offset, length)

    def write_zeroes(self, offset: int, length: int, no_hole: bool = False):
        self._call(CMD_WRITE_ZEROES, offset, length, CMD_FLAG_NO_HOLE if no_hole else 0)

    def flush(self):
        self._call(CMD_FLUSH)

    def block_status(self, offset: int, length: int, req_one: bool = False) -> list[tuple[int, int]]:
        return self._call(CMD_BLOCK_STATUS, offset, length,
                          CMD_FLAG_REQ_ONE if req_one else 0).extents

    def command_error(self, kind: int, offset: int = 0, length: int = 0, flags: int = 0,
                      payload: bytes = b"") -> int:
        """Send a command that must fail; return its error number."""
        try:
            self._call(kind, offset, length, flags, payload)
        except CmdError as e:
            return e.error
        raise AssertionError(f"command {kind} at {offset}+{length} succeeded")

    def disconnect(self):
        self.send_request(CMD_DISC)
        self.close()


# --------------------------------------------------------------------------------------------
# External tools


def nbd_url(port: int, name: str) -> str:
    return f"nbd://127.0.0.1:{port}/{name}"


@dataclass
class ToolResult:
    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def run_tool(*argv: str, timeout: float = 60.0, check: bool = True) -> ToolResult:
    exe = shutil.which(argv[0])
    assert exe, f"{argv[0]} is not installed (qemu-utils / libnbd-bin)"
    env = dict(os.environ, LIBNBD_DEBUG="0")
    p = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=timeout,
                       env=env, stdin=subprocess.DEVNULL)
    r = ToolResult(p.returncode, p.stdout, p.stderr)
    if check:
        assert p.returncode == 0, f"{' '.join(argv)} -> rc {p.returncode}\n{r.text}"
    return r


def qemu_io(url: str, *cmds: str, read_only: bool = False, check: bool = True) -> ToolResult:
    """qemu-io on an NBD URL; qemu-io exits non-zero when a command (or a -P check) fails."""
    argv = ["qemu-io", "-f", "raw"] + (["-r"] if read_only else [])
    for c in cmds:
        argv += ["-c", c]
    r = run_tool(*argv, url, check=check)
    if check:
        assert "fail" not in r.text.lower(), r.text
    return r
