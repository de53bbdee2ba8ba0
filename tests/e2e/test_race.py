"""Concurrent ResetDisk calls on one disk: exactly one wins."""

from __future__ import annotations

import threading

import pytest

from support import Api, make_rig, row


@pytest.mark.parametrize("v2", [False, True], ids=["acs3", "v2"])
def test_concurrent_resets_one_wins(server, v2):
    owner = server.tenant(v2=v2)
    rig = make_rig(owner)
    n = 6
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def worker(i: int):
        api = Api(server, owner.ak, owner.secret, v2=v2)  # a client per thread
        _ = api.client
        barrier.wait(timeout=10)
        try:
            results[i] = ("ok", api.reset(rig.disk, rig.snapshot))
        except AssertionError as e:  # pragma: no cover
            results[i] = ("assert", e)
        except Exception as e:  # noqa: BLE001
            results[i] = ("err", e)

    with server.timings(DiskMs=2000):
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads)
        status_now = owner.disk_status(rig.disk)

    oks = [r for r in results if r[0] == "ok"]
    errs = [r[1] for r in results if r[0] == "err"]
    assert len(oks) == 1, results
    assert len(errs) == n - 1, results
    for e in errs:
        got = (getattr(e, "status_code", None), getattr(e, "code", None), (getattr(e, "data", None) or {}).get("Message"))
        assert got == row("Operation.Conflict"), (got, getattr(e, "data", None))
    assert status_now == "ReIniting"
    owner.wait_disk(rig.disk, "In_use")
    # and the disk is usable afterwards
    owner.reset(rig.disk, rig.snapshot)
    owner.wait_disk(rig.disk, "In_use")


def test_concurrent_resets_on_different_disks_all_succeed(server):
    owner = server.tenant()
    rigs = [make_rig(owner) for _ in range(3)]
    results = [None] * len(rigs)
    barrier = threading.Barrier(len(rigs))

    def worker(i):
        api = Api(server, owner.ak, owner.secret)
        _ = api.client
        barrier.wait(timeout=10)
        try:
            results[i] = api.reset(rigs[i].disk, rigs[i].snapshot)
        except Exception as e:  # noqa: BLE001
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(rigs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert all(isinstance(r, dict) and r.get("RequestId") for r in results), results
    for rig in rigs:
        owner.wait_disk(rig.disk, "In_use")
