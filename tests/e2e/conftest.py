"""Fixtures for the Snapdisk end-to-end suite.

The server binary is `$SNAPDISK_BIN`, default `<repo>/target/debug/snapdisk`. Each server runs
`snapdisk serve --data-dir <tmp> --listen 127.0.0.1:0` with a known bootstrap key pair and admin
token, and is stopped with SIGTERM (SIGKILL after 10 s).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import (  # noqa: E402
    BOOT_AK,
    BOOT_SECRET,
    DEFAULT_BIN,
    Api,
    Server,
)

# Small transition times keep the suite fast; tests that need long transitions change them
# with `server.timings(...)` (restored afterwards) or use a dedicated server.
FAST_TIMINGS = {"DiskMs": 50, "InstanceMs": 50, "SnapshotMs": 50}

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost")


def _binary() -> Path:
    b = Path(os.environ.get("SNAPDISK_BIN") or DEFAULT_BIN)
    if not b.is_absolute():
        b = (Path(__file__).resolve().parents[2] / b).resolve()
    return b


@pytest.fixture(scope="session")
def snapdisk_bin() -> Path:
    b = _binary()
    if not (b.is_file() and os.access(b, os.X_OK)):
        pytest.fail(f"snapdisk binary not found or not executable: {b} (build it or set SNAPDISK_BIN)")
    return b


@pytest.fixture(scope="session")
def make_server(snapdisk_bin, tmp_path_factory):
    """Factory for extra, isolated servers (each on its own data dir); all stopped at session end."""
    started: list[Server] = []

    def make(name: str = "isolated", timings: dict | None = FAST_TIMINGS, nbd_args: list[str] | None = None,
             prepare=None, extra_args: list[str] | None = None) -> Server:
        base = tmp_path_factory.mktemp(name)
        if prepare is not None:
            nbd_args = prepare(base / "data")
        srv = Server(snapdisk_bin, base / "data", base / "logs", name=name, nbd_args=nbd_args,
                     extra_args=extra_args)
        started.append(srv)
        srv.start()
        if timings:
            srv.admin("timings", **timings)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def server(make_server) -> Server:
    """The shared server used by most tests."""
    return make_server("shared")


@pytest.fixture
def fresh_server(make_server) -> Server:
    """A server of its own for a test that needs isolation (restart, global fault state...)."""
    srv = make_server("fresh")
    yield srv
    srv.stop()


@pytest.fixture
def boot(server) -> Api:
    """The bootstrap account (key pair from the environment), ACS3 signatures."""
    return Api(server, BOOT_AK, BOOT_SECRET)


@pytest.fixture
def tenant(server) -> Api:
    """A brand-new account (admin account-create), ACS3 signatures."""
    return server.tenant()


@pytest.fixture(params=[False, True], ids=["acs3", "v2"])
def sig_tenant(request, server) -> Api:
    """A brand-new account, once with ACS3-HMAC-SHA256 and once with HMAC-SHA1 (`v2`)."""
    return server.tenant(v2=request.param)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the tail of every server's stderr log to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for name in ("server", "fresh_server"):
            srv = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if isinstance(srv, Server):
                rep.sections.append((f"{srv.name} stderr (tail)", srv.stderr_tail(3000)))
