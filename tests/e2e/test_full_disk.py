"""A full file system under the data directory (#14, defect 7): NBD writes are answered
ENOSPC (not EIO) once the store's reserve is reached, the API keeps answering, and writes
resume by themselves when space is freed, with no restart. Runs on a small tmpfs (root
mounts it; skipped where mounting is not allowed). tmpfs has no O_DIRECT, so the server uses
`--cache writeback`."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest
from alibabacloud_ecs20140526 import models as ecs_models

from nbd_client import CmdError, Nbd
from darabonba.exceptions import ResponseException

from support import BOOT_AK, BOOT_SECRET, Api, Server, attached_disk

MIB = 1 << 20


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _free(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _fill(path, leave: int):
    """A filler file that leaves about `leave` bytes free."""
    filler = path / "filler"
    size = max(0, _free(path) - leave)
    with open(filler, "wb") as f:
        chunk = b"\xaa" * MIB
        for _ in range(size // MIB):
            f.write(chunk)
    return filler


def test_full_file_system(snapdisk_bin, small_fs, tmp_path):
    srv = Server(snapdisk_bin, small_fs / "data", tmp_path / "logs", name="full",
                 extra_args=["--cache", "writeback"])
    srv.start()
    try:
        api = Api(srv, BOOT_AK, BOOT_SECRET)
        _, did = attached_disk(api, size=20)
        c = Nbd.open(srv.nbd_port, did)
        c.write(0, b"\x11" * MIB)
        c.flush()
        # 100 MiB free: below one 64 MiB growth of the data file plus the 64 MiB reserve.
        filler = _fill(small_fs, 100 * MIB)
        failed = None
        for i in range(1, 200):
            try:
                c.write(i * MIB, bytes([i % 251]) * MIB)
            except CmdError as e:
                failed = (i, e)
                break
        assert failed is not None, "writes never ran out of space"
        i, e = failed
        assert e.error == errno.ENOSPC, f"write {i} MiB in: {e}"
        assert _free(small_fs) > 32 * MIB, "the reserve is kept"
        # What was written before is intact, and reads go on.
        assert c.read(0, MIB) == b"\x11" * MIB
        assert c.read(MIB, MIB) == bytes([1]) * MIB
        # The API keeps answering, reads and writes (the catalog lives in the reserve).
        disks = api.client.describe_disks(ecs_models.DescribeDisksRequest(region_id="cn-hangzhou")).body.to_map()
        assert disks["TotalCount"] >= 2
        sid = api.create_snapshot(did)
        assert api.snapshot(sid)["Status"] == "accomplished"
        # Space comes back: the same connection writes again, no restart.
        filler.unlink()
        c.write(i * MIB, b"\x22" * MIB)
        c.flush()
        assert c.read(i * MIB, MIB) == b"\x22" * MIB
        c.close()
        # Completely full, even the reserve: reads still answer; a change either succeeds (in
        # what the catalog's pages still hold) or is refused with a clean ECS error, never a
        # hang or a dead server; once space is back, changes work.
        filler = _fill(small_fs, 0)
        disks = api.client.describe_disks(ecs_models.DescribeDisksRequest(region_id="cn-hangzhou")).body.to_map()
        assert disks["TotalCount"] >= 2
        for _ in range(20):
            try:
                api.call("CreateDisk", {"RegionId": "cn-hangzhou", "ZoneId": "cn-hangzhou-h", "Size": "20"})
            except ResponseException as e:
                assert (e.status_code, e.code) in ((500, "InternalError"), (503, "ServiceUnavailable")), e
        assert srv.alive()
        filler.unlink()
        assert api.create_disk(size=20)
        assert srv.alive()
    finally:
        srv.stop()
