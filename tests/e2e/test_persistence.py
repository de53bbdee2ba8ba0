"""State survives a restart on the same data directory."""

from __future__ import annotations

from support import BOOT_AK, BOOT_SECRET, IMAGE, REGION, ZONE, Api, make_rig, raw_v1


def _strip(body: dict) -> dict:
    body = dict(body)
    body.pop("RequestId", None)
    return body


def _world(api: Api) -> dict:
    return {
        "instances": _strip(api.instances(page_size=100)),
        "disks": _strip(api.disks(page_size=100)),
        "snapshots": _strip(api.snapshots(page_size=100)),
        "images": _strip(api.images(page_size=100)),
    }


def test_restart_keeps_everything(fresh_server):
    srv = fresh_server
    api = srv.tenant(name="persist")
    boot = Api(srv, BOOT_AK, BOOT_SECRET)

    rig = make_rig(api, data_disks=2)
    running = api.run_instance(itype="ecs.g7.xlarge")
    free = api.create_disk(size=33, name="free-disk")
    snap2 = api.create_snapshot(rig.extra_disks[0], name="second")
    image = api.create_image(api.create_snapshot(api.system_disk(running)["DiskId"]), "persisted-image")
    key = srv.admin("kms-create", AccountId=api.account_id)["KeyId"]
    enc = api.create_disk(size=21, encrypted=True, kms_key_id=key)
    boot_disk = boot.create_disk(size=22)
    srv.admin("instance-lock", InstanceId=running, LockReason="security")

    before = _world(api)
    before_boot = _world(boot)
    assert {d["DiskId"] for d in before["disks"]["Disks"]["Disk"]} >= {rig.disk, free, enc, *rig.extra_disks}
    assert any(i["ImageId"] == image for i in before["images"]["Images"]["Image"])

    srv.restart()
    assert srv.port  # may differ from before

    after = _world(api)
    assert after == before
    assert _world(boot) == before_boot
    assert boot.disk(boot_disk)["Size"] == 22

    # locks, accounts and keys survived too
    locks = api.instance(running)["OperationLocks"]["LockReason"]
    assert [l["LockReason"] for l in locks] == ["security"]
    assert api.disk(enc)["KMSKeyId"] == key

    # a reset still works after the restart, with a snapshot taken before it
    api.reset(rig.disk, rig.snapshot)
    api.wait_disk(rig.disk, "In_use")
    api.reset(rig.extra_disks[0], snap2)
    api.wait_disk(rig.extra_disks[0], "In_use")
    # new resources get fresh ids
    new_disk = api.create_disk(size=20)
    assert new_disk not in {d["DiskId"] for d in before["disks"]["Disks"]["Disk"]}
    # and the public image is still there
    assert any(i["ImageId"] == IMAGE for i in api.images(page_size=100)["Images"]["Image"])


def test_used_nonce_survives_restart_or_is_rejected_by_time(fresh_server):
    """A nonce used before a restart must still be refused afterwards (15-minute window)."""
    srv = fresh_server
    nonce = "persisted-nonce-0001"
    assert raw_v1(srv, "DescribeRegions", nonce=nonce).status == 200
    srv.restart()
    r = raw_v1(srv, "DescribeRegions", nonce=nonce)
    assert r.status == 400 and r.json()["Code"] == "SignatureNonceUsed", r.text


def test_restart_during_transition_settles(fresh_server):
    srv = fresh_server
    api = srv.tenant()
    rig = make_rig(api)
    srv.admin("timings", DiskMs=1500)
    api.reset(rig.disk, rig.snapshot)
    assert api.disk_status(rig.disk) == "ReIniting"
    srv.restart()
    srv.admin("timings", DiskMs=50)
    api.wait_disk(rig.disk, "In_use", timeout=15)
    api.reset(rig.disk, rig.snapshot)
    api.wait_disk(rig.disk, "In_use")


def test_sigterm_is_graceful(fresh_server):
    """SIGTERM stops the server promptly by itself (the fixture's 10 s SIGKILL fallback is not needed)."""
    import time

    t0 = time.monotonic()
    rc = fresh_server.stop(timeout=10)
    assert rc is not None and rc >= 0, rc  # negative = killed by a signal
    assert time.monotonic() - t0 < 10


def test_replay_after_kill_9_is_refused(fresh_server):
    """Nonces are journaled before the answer: a captured CreateDisk replayed after kill -9,
    inside the window, is refused and creates nothing."""
    import time

    srv = fresh_server
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    params = {"RegionId": REGION, "ZoneId": ZONE, "Size": "20"}
    first = raw_v1(srv, "CreateDisk", params, nonce="replay-after-crash-0001", timestamp=ts)
    assert first.status == 200, first.text
    srv._kill()  # SIGKILL: no graceful save
    srv.start()
    again = raw_v1(srv, "CreateDisk", params, nonce="replay-after-crash-0001", timestamp=ts)
    assert again.status == 400 and again.json()["Code"] == "SignatureNonceUsed", again.text
    api = Api(srv, BOOT_AK, BOOT_SECRET)
    assert api.disks()["TotalCount"] == 1
