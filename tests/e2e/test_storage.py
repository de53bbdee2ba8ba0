"""The storage engine behind the API: snapshots freeze bytes, ResetDisk restores them (and keeps
newer snapshots), disks from snapshots and instances from images are independent copy-on-write
clones, and deleting snapshots and disks gives the space back (holes punched in
<data-dir>/store/data)."""

from __future__ import annotations

import random

from alibabacloud_ecs20140526 import models as ecs_models

from nbd_client import Nbd
from support import allocated_bytes, attached_disk, poll

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


class Model:
    """What a disk should hold: a sparse byte image, zero where never written."""

    def __init__(self, base: "Model | None" = None):
        self.chunks: dict[int, bytes] = dict(base.chunks) if base else {}

    def write(self, offset: int, data: bytes):
        # split into 4 KiB-aligned pieces so later writes can replace parts of earlier ones
        end = offset + len(data)
        pos = offset
        while pos < end:
            blk = pos // (4 * KiB) * (4 * KiB)
            old = bytearray(self.chunks.get(blk, bytes(4 * KiB)))
            n = min(end, blk + 4 * KiB) - pos
            old[pos - blk:pos - blk + n] = data[pos - offset:pos - offset + n]
            self.chunks[blk] = bytes(old)
            pos += n

    def zero(self, offset: int, length: int):
        self.write(offset, bytes(length))

    def ranges(self) -> list[tuple[int, int]]:
        """Touched areas, merged, as (offset, length)."""
        out: list[list[int]] = []
        for blk in sorted(self.chunks):
            if out and out[-1][0] + out[-1][1] == blk:
                out[-1][1] += 4 * KiB
            else:
                out.append([blk, 4 * KiB])
        return [tuple(r) for r in out]

    def read(self, offset: int, length: int) -> bytes:
        return b"".join(self.chunks.get(b, bytes(4 * KiB)) for b in range(offset, offset + length, 4 * KiB))


def check(port: int, export: str, model: Model, *extra: Model):
    """The export holds `model` over every area `model` or `extra` models touched."""
    areas = set(model.ranges())
    for m in extra:
        areas |= set(m.ranges())
    with Nbd.open(port, export) as c:
        for off, n in sorted(areas):
            for o in range(off, off + n, 8 * MiB):
                k = min(8 * MiB, off + n - o)
                got, want = c.read(o, k), model.read(o, k)
                if got != want:
                    bad = next(i for i in range(k) if got[i] != want[i])
                    raise AssertionError(f"{export}: bytes differ at offset {o + bad}")


def scribble(port: int, export: str, model: Model, r: random.Random, writes: list[tuple[int, int]],
             zeroes: list[tuple[int, int]] = ()):
    with Nbd.open(port, export) as c:
        for off, n in writes:
            data = r.randbytes(n)
            c.write(off, data)
            model.write(off, data)
        for off, n in zeroes:
            c.write_zeroes(off, n)
            model.zero(off, n)
        c.flush()


def test_snapshots_resets_and_clones_hold_the_right_bytes(server, sig_tenant):
    api = sig_tenant
    port = server.nbd_port
    r = random.Random(2024)
    iid, did = attached_disk(api, size=20)
    sys_disk = api.system_disk(iid)["DiskId"]

    live = Model()
    scribble(port, did, live, r, [(0, 8 * MiB), (7 * GiB, MiB), (19 * GiB + 12345, 100_000)])
    s1_model = Model(live)
    s1 = api.create_snapshot(did, name="s1")

    scribble(port, did, live, r, [(4 * MiB, 8 * MiB), (7 * GiB + 512 * KiB, MiB), (11 * GiB + 1, 4 * KiB)],
             zeroes=[(19 * GiB, MiB)])
    s2_model = Model(live)
    s2 = api.create_snapshot(did, name="s2")

    scribble(port, did, live, r, [(2 * MiB, 4 * MiB), (3 * GiB, 2 * MiB)], zeroes=[(7 * GiB, 2 * MiB)])
    check(port, did, live, s1_model, s2_model)
    check(port, s1, s1_model, live, s2_model)
    check(port, s2, s2_model, live, s1_model)

    # ResetDisk to S1 (older): S1's bytes
    api.stop(iid)
    api.reset(did, s1)
    api.wait_disk(did, "In_use")
    api.start(iid)
    check(port, did, s1_model, live, s2_model)

    # ResetDisk to S2 (newer than S1): it survived the reset to S1
    api.stop(iid)
    api.reset(did, s2)
    api.wait_disk(did, "In_use")
    api.start(iid)
    check(port, did, s2_model, live, s1_model)
    check(port, s1, s1_model, s2_model)

    # the disk moves on after the reset
    after = Model(s2_model)
    scribble(port, did, after, r, [(MiB, MiB)])

    # CreateDisk from S1 on a running instance: S1's bytes; writes stay in the clone
    clone = api.create_disk(size=20, snapshot_id=s1)
    api.attach(clone, iid)
    check(port, clone, s1_model, s2_model, live)
    clone_model = Model(s1_model)
    scribble(port, clone, clone_model, r, [(0, 2 * MiB), (7 * GiB, 4 * KiB), (15 * GiB, MiB)])
    check(port, clone, clone_model, s1_model, s2_model)
    check(port, s1, s1_model, clone_model)
    check(port, did, after, clone_model, s1_model)

    # CreateImage from S2, RunInstances from it: the system disk holds S2's bytes
    image = api.create_image(s2, "from-s2")
    iid2 = api.run_instance(image=image)
    sys2 = api.system_disk(iid2)
    assert sys2["Size"] >= 20, sys2
    check(port, sys2["DiskId"], s2_model, s1_model, live)
    sys2_model = Model(s2_model)
    scribble(port, sys2["DiskId"], sys2_model, r, [(4 * MiB, 4 * MiB)])
    check(port, s2, s2_model, sys2_model)
    check(port, did, after, sys2_model)

    # the clone does not depend on its origin: delete S1 (Force: a disk was made from it) and the
    # source disk; the clone keeps its bytes
    api.client.delete_snapshot(ecs_models.DeleteSnapshotRequest(snapshot_id=s1, force=True))
    api.detach(did, iid)
    api.delete_disk(did)
    api.wait_disk(did, None)
    check(port, clone, clone_model, s1_model, s2_model)
    check(port, sys2["DiskId"], sys2_model, s1_model)
    # the original system disk was never touched
    with Nbd.open(port, sys_disk) as c:
        assert c.read(0, MiB) == bytes(MiB)


def _wait_freed(path, before: int, at_least: int, what: str) -> int:
    return poll(lambda: allocated_bytes(path), lambda now: before - now >= at_least, timeout=5.0,
                interval=0.1, what=f"{what}: {at_least >> 20} MiB freed from {path} (before {before})")


def test_delete_snapshot_and_disk_free_space(fresh_server):
    srv = fresh_server
    api = srv.tenant()
    port = srv.nbd_port
    data = srv.data_dir / "store" / "data"
    r = random.Random(99)
    iid, did = attached_disk(api, size=20)

    start = allocated_bytes(data)
    with Nbd.open(port, did) as c:
        for i in range(4):
            c.write(i * 8 * MiB, r.randbytes(8 * MiB))
        c.flush()
    assert allocated_bytes(data) - start >= 30 * MiB, "32 MiB written but the data file did not grow"
    sid = api.create_snapshot(did)

    # overwrite the 32 MiB: the snapshot keeps the old blocks, the disk gets new ones
    with Nbd.open(port, did) as c:
        c.write(0, r.randbytes(32 * MiB))
        c.flush()
    both = allocated_bytes(data)
    assert both - start >= 62 * MiB, f"snapshot + overwrite should hold ~64 MiB, hold {(both - start) >> 20} MiB"

    api.delete_snapshot(sid)
    after_snap = _wait_freed(data, both, 28 * MiB, "DeleteSnapshot")

    api.detach(did, iid)
    api.delete_disk(did)
    _wait_freed(data, after_snap, 28 * MiB, "DeleteDisk")
