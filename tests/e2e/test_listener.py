"""The API listener under abuse: slow and idle connections are closed after the header time
limit, a slow body after the body limit, connections past the caps are refused at once while
the API keeps answering, and SIGTERM finishes within the grace period even while a client holds
a half-sent request, still saving the nonces."""

from __future__ import annotations

import signal
import socket
import time

import pytest
from alibabacloud_ecs20140526 import models as ecs_models

from support import BOOT_AK, BOOT_SECRET, Api, Server

LIMITS = ["--http-header-timeout-ms", "600", "--http-body-timeout-ms", "600",
          "--max-connections", "40", "--max-connections-per-peer", "30", "--shutdown-grace-ms", "800"]


@pytest.fixture
def limited(snapdisk_bin, tmp_path):
    srv = Server(snapdisk_bin, tmp_path / "data", tmp_path / "logs", name="limited", extra_args=LIMITS)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def patient(snapdisk_bin, tmp_path):
    """Long time limits, a short shutdown grace: only the grace can end a held request."""
    args = ["--http-header-timeout-ms", "60000", "--http-body-timeout-ms", "60000", "--shutdown-grace-ms", "800"]
    srv = Server(snapdisk_bin, tmp_path / "pdata", tmp_path / "plogs", name="patient", extra_args=args)
    srv.start()
    yield srv
    srv.stop()


def _connect(srv, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=5, source_address=(source, 0))


def _closed_by_server(s: socket.socket, within: float) -> bool:
    """True when the server closes `s` (EOF or reset) within `within` seconds."""
    s.settimeout(within)
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def _alive(srv) -> bool:
    api = Api(srv, BOOT_AK, BOOT_SECRET)
    return "Regions" in api.client.describe_regions(ecs_models.DescribeRegionsRequest()).body.to_map()


def test_slow_headers_and_idle_connections_are_closed(limited):
    slow = [_connect(limited) for _ in range(10)]
    for s in slow:
        s.sendall(b"GET /?Action=DescribeRegions HTTP/1.1\r\nHost: x\r\n")  # never finishes
    idle = [_connect(limited) for _ in range(10)]
    assert _alive(limited)
    t0 = time.monotonic()
    assert all(_closed_by_server(s, 5) for s in slow + idle)
    assert time.monotonic() - t0 < 4, "closed after about the 0.6 s header limit"
    # A kept-alive connection that goes quiet after a request is closed too.
    s = _connect(limited)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    assert s.recv(4096).startswith(b"HTTP/1.1 ")
    assert _closed_by_server(s, 5)
    assert _alive(limited)


def test_a_slow_body_is_cut_off(limited):
    s = _connect(limited)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
              b"Content-Length: 1000\r\n\r\nAction=")
    s.settimeout(5)
    head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 408"), head
    assert _closed_by_server(s, 5)


def test_connections_past_the_cap_are_refused_and_the_api_still_answers(limited):
    held = []
    for _ in range(30):  # the per-peer cap
        s = _connect(limited)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # holds its slot until the header limit
        held.append(s)
    extra = [_connect(limited) for _ in range(5)]
    assert all(_closed_by_server(s, 0.4) for s in extra), "refused at once, before any limit ran out"
    # Another address may still connect, up to the overall cap of 40.
    for _ in range(10):
        s = _connect(limited, "127.0.0.2")
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        held.append(s)
    assert not _closed_by_server(held[-1], 0.2)
    assert _closed_by_server(_connect(limited, "127.0.0.3"), 0.4), "past the overall cap"
    for s in held:
        s.close()
    time.sleep(0.2)
    assert _alive(limited)


def test_sigterm_finishes_while_a_request_is_half_sent(patient):
    assert _alive(patient)  # spends a nonce, which must be saved
    half_body = _connect(patient)
    half_body.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nAct")
    half_head = _connect(patient)
    half_head.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
    time.sleep(0.2)
    patient.proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    rc = patient.proc.wait(timeout=20)
    assert rc == 0
    assert time.monotonic() - t0 < 5, "bounded by the 0.8 s grace, not the 60 s limits"
    assert (patient.data_dir / "nonces.bin").stat().st_size >= 24
    patient.proc = None


def test_silent_nbd_connections_cannot_use_up_the_server(snapdisk_bin, tmp_path):
    """A flood of silent NBD connections from one address is capped per peer (and overall):
    the API keeps answering and another address is still served."""
    args = ["--nbd-max-connections", "30", "--nbd-max-connections-per-peer", "10",
            "--nbd-negotiation-timeout-ms", "60000"]
    srv = Server(snapdisk_bin, tmp_path / "ndata", tmp_path / "nlogs", name="nbdcap", extra_args=args)
    srv.start()
    held = []
    try:
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", srv.nbd_port), timeout=5, source_address=("127.0.0.1", 0))
            held.append(s)
        greeted = 0
        for s in held:
            s.settimeout(2)
            try:
                greeted += len(s.recv(18)) > 0
            except (socket.timeout, ConnectionResetError):
                pass
        assert greeted == 10, f"{greeted} of 40 silent connections from one address were served"
        assert _alive(srv)
        other = socket.socket()
        other.bind(("127.0.0.2", 0))
        other.connect(("127.0.0.1", srv.nbd_port))
        other.settimeout(5)
        assert len(other.recv(18)) == 18, "another address is still greeted"
        other.close()
    finally:
        for s in held:
            s.close()
        srv.stop()
