"""Every ResetDisk error row, in the server's check order.

Each test sets up one failing condition, usually together with a condition that is checked *later*
(e.g. a Running instance, which alone gives IncorrectInstanceStatus), asserts the exact HTTP status,
Code and Message, then removes the condition and checks that the request moves on to the next one.
"""

from __future__ import annotations

import pytest

from support import (
    INTERNAL_ERROR_MSGS,
    catch,
    expect_error,
    legacy_catch,
    legacy_client,
    legacy_do,
    legacy_request,
    make_rig,
    poll,
    row,
)

UNKNOWN_DISK = "d-bp1nosuchdisk000001"
UNKNOWN_SNAP = "s-bp1nosuchsnap000001"


# ---------------------------------------------------------------------------------------------
# MissingParameter


def test_missing_disk_id(server, sig_tenant):
    expect_error(row("MissingParameter", "MissingParameter.DiskId"), sig_tenant.reset, None, UNKNOWN_SNAP)
    # checked before the RegionId check
    expect_error(row("MissingParameter", "MissingParameter.DiskId"),
                 sig_tenant.call, "ResetDisk", {"SnapshotId": UNKNOWN_SNAP, "RegionId": "xx-nowhere-1"})


def test_missing_snapshot_id(server, sig_tenant):
    expect_error(row("MissingParameter", "MissingParameter.SnapshotId"), sig_tenant.reset, UNKNOWN_DISK, None)
    expect_error(row("MissingParameter", "MissingParameter.SnapshotId"),
                 sig_tenant.call, "ResetDisk", {"DiskId": UNKNOWN_DISK, "RegionId": "xx-nowhere-1"})


def test_empty_disk_id_is_missing(server, tenant):
    expect_error(row("MissingParameter", "MissingParameter.DiskId"),
                 tenant.call, "ResetDisk", {"DiskId": "", "SnapshotId": UNKNOWN_SNAP})


# ---------------------------------------------------------------------------------------------
# InvalidRegionId.MalFormed


def test_invalid_region_legacy_sdk(server, tenant):
    api = tenant
    rig = make_rig(api)
    bad = legacy_client(server, api.ak, api.secret, region="xx-nowhere-1")
    err = legacy_catch(bad, legacy_request("ResetDisk", DiskId=rig.disk, SnapshotId=rig.snapshot))
    assert err.triple == row("InvalidRegionId.MalFormed")
    err = legacy_catch(bad, legacy_request("ResetDisk", DiskId=UNKNOWN_DISK, SnapshotId=UNKNOWN_SNAP))
    assert err.triple == row("InvalidRegionId.MalFormed")
    assert api.disk_status(rig.disk) == "In_use"

    # a valid RegionId (the legacy SDK always sends one) is accepted
    good = legacy_client(server, api.ak, api.secret, region="cn-hangzhou")
    err = legacy_catch(good, legacy_request("ResetDisk", DiskId=rig.disk, SnapshotId=rig.snapshot, DryRun="true"))
    assert err.triple == row("DryRunOperation")
    body = legacy_do(good, legacy_request("ResetDisk", DiskId=rig.disk, SnapshotId=rig.snapshot))
    assert body.get("RequestId") and "Code" not in body
    api.wait_disk(rig.disk, "In_use")


def test_invalid_region_generic_call(server, sig_tenant):
    api = sig_tenant
    expect_error(row("InvalidRegionId.MalFormed"), api.call, "ResetDisk",
                 {"DiskId": UNKNOWN_DISK, "SnapshotId": UNKNOWN_SNAP, "RegionId": "xx-nowhere-1"})
    # a known RegionId passes on to the next check
    expect_error(row("InvalidDiskId.NotFound"), api.call, "ResetDisk",
                 {"DiskId": UNKNOWN_DISK, "SnapshotId": UNKNOWN_SNAP, "RegionId": "cn-shanghai"})


# ---------------------------------------------------------------------------------------------
# White list, snapshot service


def test_whitelist_then_snapshot_service(server, tenant):
    api = tenant
    rig = make_rig(api)
    acct = api.account_id
    try:
        server.admin("whitelist", Enforced=True)
        server.admin("snapshot-service", AccountId=acct, Open=False)
        expect_error(row("UserNotInTheWhiteList"), api.reset, UNKNOWN_DISK, UNKNOWN_SNAP)
        expect_error(row("UserNotInTheWhiteList"), api.reset, rig.disk, rig.snapshot)
        wl = server.admin("whitelist", Add=[acct])
        assert wl["Enforced"] is True and str(acct) in [str(a) for a in wl["Accounts"]], wl
        expect_error(row("InvalidAccountStatus.SnapshotServiceUnavailable"), api.reset, UNKNOWN_DISK, UNKNOWN_SNAP)
        server.admin("snapshot-service", AccountId=acct, Open=True)
        expect_error(row("InvalidDiskId.NotFound"), api.reset, UNKNOWN_DISK, UNKNOWN_SNAP)
        # listed account under an enforced white list: a real reset works
        api.reset(rig.disk, rig.snapshot)
        api.wait_disk(rig.disk, "In_use")
    finally:
        server.admin("whitelist", Enforced=False, Remove=[acct])
        server.admin("snapshot-service", AccountId=acct, Open=True)


def test_snapshot_service_closed(server, sig_tenant):
    api = sig_tenant
    rig = make_rig(api)
    server.admin("snapshot-service", AccountId=api.account_id, Open=False)
    try:
        expect_error(row("InvalidAccountStatus.SnapshotServiceUnavailable"), api.reset, rig.disk, rig.snapshot)
        expect_error(row("InvalidAccountStatus.SnapshotServiceUnavailable"), api.reset, UNKNOWN_DISK, UNKNOWN_SNAP)
    finally:
        server.admin("snapshot-service", AccountId=api.account_id, Open=True)
    api.reset(rig.disk, rig.snapshot)
    api.wait_disk(rig.disk, "In_use")


def test_snapshot_service_is_per_account(server, tenant):
    other = server.tenant()
    rig = make_rig(tenant)
    server.admin("snapshot-service", AccountId=other.account_id, Open=False)
    try:
        tenant.reset(rig.disk, rig.snapshot)
        tenant.wait_disk(rig.disk, "In_use")
    finally:
        server.admin("snapshot-service", AccountId=other.account_id, Open=True)


# ---------------------------------------------------------------------------------------------
# Disk lookup


def test_unknown_disk(server, sig_tenant):
    expect_error(row("InvalidDiskId.NotFound"), sig_tenant.reset, UNKNOWN_DISK, UNKNOWN_SNAP)


def test_deleted_disk(server, sig_tenant):
    api = sig_tenant
    did = api.create_disk(size=20)
    api.delete_disk(did)
    api.wait_disk(did, None)
    expect_error(row("Disk.NotFound"), api.reset, did, UNKNOWN_SNAP)


def test_deleted_disk_with_its_snapshot(server, tenant):
    api = tenant
    rig = make_rig(api)
    api.detach(rig.disk, rig.instance)
    api.delete_disk(rig.disk)
    api.wait_disk(rig.disk, None)
    # the snapshot survives its disk
    assert api.snapshot(rig.snapshot)["SourceDiskId"] == rig.disk
    expect_error(row("Disk.NotFound"), api.reset, rig.disk, rig.snapshot)


@pytest.mark.parametrize("category", ["ephemeral_ssd", "local_ssd_pro", "local_hdd_pro"])
def test_local_disk_category(server, tenant, category):
    api = tenant
    iid = api.run_instance(data_disks=[{"size": 100, "category": category}])
    (did,) = api.data_disk_ids(iid)
    d = api.wait_disk(did, "In_use")
    assert d["Category"] == category
    api.stop(iid)
    expect_error(row("DiskCategory.OperationNotSupported"), api.reset, did, UNKNOWN_SNAP)
    err = catch(api.create_snapshot, did, wait=False)
    assert (err.status, err.code) == (400, "DiskCategory.OperationNotSupported"), err.data


# ---------------------------------------------------------------------------------------------
# Snapshot lookup and state


def test_unknown_snapshot(server, sig_tenant):
    rig = make_rig(sig_tenant, running=True)
    expect_error(row("InvalidSnapshotId.NotFound"), sig_tenant.reset, rig.disk, UNKNOWN_SNAP)


def test_deleted_snapshot(server, tenant):
    api = tenant
    rig = make_rig(api)
    api.delete_snapshot(rig.snapshot)
    expect_error(row("InvalidSnapshotId.NotFound"), api.reset, rig.disk, rig.snapshot)


def test_snapshot_of_other_disk(server, sig_tenant):
    api = sig_tenant
    rig = make_rig(api, running=True, data_disks=2)
    (other_disk,) = rig.extra_disks
    other_snap = api.create_snapshot(other_disk)
    expect_error(row("InvalidParameter.Mismatch"), api.reset, rig.disk, other_snap)
    # the right snapshot moves on to the instance check
    expect_error(row("IncorrectInstanceStatus"), api.reset, rig.disk, rig.snapshot)


def test_snapshot_too_old(server, tenant):
    api = tenant
    rig = make_rig(api, running=True)
    old = server.admin("snapshot-import", AccountId=api.account_id, DiskId=rig.disk,
                       CreationTime="2013-07-14T00:00:00Z")["SnapshotId"]
    s = api.snapshot(old)
    assert s is not None and s["SourceDiskId"] == rig.disk
    assert s["CreationTime"].startswith("2013-07-14"), s["CreationTime"]
    expect_error(row("InvalidSnapshot.TooOld"), api.reset, rig.disk, old)

    # a legacy snapshot taken after the cut-off date is fine
    newer = server.admin("snapshot-import", AccountId=api.account_id, DiskId=rig.disk,
                         CreationTime="2013-07-16T00:00:00Z")["SnapshotId"]
    expect_error(row("IncorrectInstanceStatus"), api.reset, rig.disk, newer)
    api.stop(rig.instance)
    expect_error(row("InvalidSnapshot.TooOld"), api.reset, rig.disk, old)
    expect_error(row("DryRunOperation"), api.reset, rig.disk, newer, dry_run=True)


def test_imported_snapshot_after_cutoff_can_restore(server, tenant):
    """An imported (legacy) snapshot that passes every check is a usable snapshot of the disk: the
    reset must not fail with InternalError."""
    api = tenant
    rig = make_rig(api)
    newer = server.admin("snapshot-import", AccountId=api.account_id, DiskId=rig.disk,
                         CreationTime="2013-07-16T00:00:00Z")["SnapshotId"]
    assert api.snapshot(newer)["Status"] == "accomplished"
    api.reset(rig.disk, newer)
    api.wait_disk(rig.disk, "In_use")


def _failed_snapshot(server, api, disk) -> str:
    server.admin("fault-inject", Operation="snapshot")
    sid = None
    try:
        sid = api.create_snapshot(disk, wait=False)
    except AssertionError:
        raise
    except Exception as e:  # the call itself may answer InternalError
        assert getattr(e, "code", None) == "InternalError", e
    snaps = poll(lambda: [s for s in api.snapshots(disk_id=disk, page_size=100)["Snapshots"]["Snapshot"]
                          if s["Status"] == "failed" and (sid is None or s["SnapshotId"] == sid)],
                 lambda l: len(l) == 1, what="a failed snapshot")
    return snaps[0]["SnapshotId"]


def test_failed_snapshot(server, tenant):
    api = tenant
    rig = make_rig(api, running=True)
    failed = _failed_snapshot(server, api, rig.disk)
    expect_error(row("OperationDenied"), api.reset, rig.disk, failed)
    api.stop(rig.instance)
    expect_error(row("OperationDenied"), api.reset, rig.disk, failed)
    # the disk is fine: the good snapshot still works
    api.reset(rig.disk, rig.snapshot)
    api.wait_disk(rig.disk, "In_use")


def test_progressing_snapshot(server, sig_tenant):
    api = sig_tenant
    rig = make_rig(api, running=True)
    with server.timings(SnapshotMs=2500):
        sid = api.create_snapshot(rig.disk, wait=False)
        assert api.snapshot(sid)["Status"] == "progressing"
        expect_error(row("InvalidSnapshotId.NotReady"), api.reset, rig.disk, sid)
        # another snapshot of the disk is progressing: the accomplished one is refused by disk status,
        # which is checked before the instance status
        expect_error(row("IncorrectDiskStatus"), api.reset, rig.disk, rig.snapshot)
    api.wait_snapshot(sid, "accomplished")
    expect_error(row("IncorrectInstanceStatus"), api.reset, rig.disk, sid)
    api.stop(rig.instance)
    api.reset(rig.disk, sid)
    api.wait_disk(rig.disk, "In_use")


def test_snapshot_in_progress_blocks_reset_on_stopped_instance(server, tenant):
    api = tenant
    rig = make_rig(api)
    with server.timings(SnapshotMs=2000):
        sid2 = api.create_snapshot(rig.disk, wait=False)
        expect_error(row("IncorrectDiskStatus"), api.reset, rig.disk, rig.snapshot)
        expect_error(row("IncorrectDiskStatus"), api.reset, rig.disk, rig.snapshot, dry_run=True)
    api.wait_snapshot(sid2, "accomplished")
    api.reset(rig.disk, rig.snapshot)
    api.wait_disk(rig.disk, "In_use")


# ---------------------------------------------------------------------------------------------
# KMS


def _kms_rig(server, api, running=True):
    key = server.admin("kms-create", AccountId=api.account_id)["KeyId"]
    rig = make_rig(api, running=running, encrypted_key=key)
    d = api.disk(rig.disk)
    assert d["Encrypted"] is True and d["KMSKeyId"] == key, d
    return key, rig


def test_kms_key_deleted(server, tenant):
    api = tenant
    key, rig = _kms_rig(server, api)
    server.admin("kms-delete", KeyId=key)
    expect_error(row("InvalidParameter.KMSKeyId.NotFound"), api.reset, rig.disk, rig.snapshot)
    api.stop(rig.instance)
    expect_error(row("InvalidParameter.KMSKeyId.NotFound"), api.reset, rig.disk, rig.snapshot)


def test_kms_key_disabled(server, sig_tenant):
    api = sig_tenant
    key, rig = _kms_rig(server, api)
    server.admin("kms-disable", KeyId=key)
    expect_error(row("InvalidParameter.KMSKeyId.CMKNotEnabled"), api.reset, rig.disk, rig.snapshot)
    server.admin("kms-enable", KeyId=key)
    expect_error(row("IncorrectInstanceStatus"), api.reset, rig.disk, rig.snapshot)
    api.stop(rig.instance)
    api.reset(rig.disk, rig.snapshot)
    api.wait_disk(rig.disk, "In_use")


def test_kms_access_revoked(server, tenant):
    api = tenant
    key, rig = _kms_rig(server, api)
    plain = make_rig(api)  # an unencrypted disk of the same account
    server.admin("kms-ecs-access", AccountId=api.account_id, Granted=False)
    try:
        expect_error(row("InvalidParameter.KMSKeyId.KMSUnauthorized"), api.reset, rig.disk, rig.snapshot)
        # unencrypted disks are not affected
        api.reset(plain.disk, plain.snapshot)
        api.wait_disk(plain.disk, "In_use")
    finally:
        server.admin("kms-ecs-access", AccountId=api.account_id, Granted=True)
    expect_error(row("IncorrectInstanceStatus"), api.reset, rig.disk, rig.snapshot)


# ---------------------------------------------------------------------------------------------
# Billing


def test_not_enough_balance(server, sig_tenant):
    api = sig_tenant
    rig = make_rig(api, running=True)
    server.admin("account-billing", AccountId=api.account_id, Balance=-1)
    try:
        expect_error(row("InvalidAccountStatus.NotEnoughBalance"), api.reset, rig.disk, rig.snapshot)
    finally:
        server.admin("account-billing", AccountId=api.account_id, Balance=100)
    expect_error(row("IncorrectInstanceStatus"), api.reset, rig.disk, rig.snapshot)


# ---------------------------------------------------------------------------------------------
# The attached instance


def test_instance_gone_while_disk_detaching(server, tenant):
    api = tenant
    rig = make_rig(api, delete_with_instance=False)
    with server.timings(DiskMs=2500):
        api.delete_instance(rig.instance)
        api.wait_instance(rig.instance, None, timeout=2)
        d = api.disk(rig.disk)
        assert d["Status"] == "Detaching", d
        expect_error(row("InvalidInstanceId.NotFound"), api.reset, rig.disk, rig.snapshot)
    api.wait_disk(rig.disk, "Available")
    api.reset(rig.disk, rig.snapshot)
    api.wait_disk(rig.disk, "Available")


def test_instance_locked_for_security(server, sig_tenant):
    api = sig_tenant
    rig = make_rig(api, running=True)
    server.admin("instance-lock", InstanceId=rig.instance, LockReason="security")
    try:
        locks = api.instance(rig.instance)["OperationLocks"]["LockReason"]
        assert [l["LockReason"] for l in locks] == ["security"]
        expect_error(row("InstanceLockedForSecurity"), api.reset, rig.disk, rig.snapshot)
        err = catch(api.stop, rig.instance, wait=False)
        assert (err.status, err.code) == (403, "InstanceLockedForSecurity"), err.data
    finally:
        server.admin("instance-unlock", InstanceId=rig.instance)
    assert api.instance(rig.instance)["OperationLocks"]["LockReason"] == []
    expect_error(row("IncorrectInstanceStatus"), api.reset, rig.disk, rig.snapshot)


def test_prepaid_instance_expired(server, tenant):
    api = tenant
    rig = make_rig(api, running=True, charge="PrePaid")
    assert api.instance(rig.instance)["InstanceChargeType"] == "PrePaid"
    server.admin("instance-expire", InstanceId=rig.instance)
    expect_error(row("InstanceExpiredOrInArrears"), api.reset, rig.disk, rig.snapshot)


def test_prepaid_instance_expired_when_stopped(server, tenant):
    api = tenant
    rig = make_rig(api, running=False, charge="PrePaid")
    server.admin("instance-expire", InstanceId=rig.instance)
    expect_error(row("InstanceExpiredOrInArrears"), api.reset, rig.disk, rig.snapshot)


def test_postpaid_instance_in_arrears(server, sig_tenant):
    api = sig_tenant
    rig = make_rig(api, running=True)
    assert api.instance(rig.instance)["InstanceChargeType"] == "PostPaid"
    server.admin("account-billing", AccountId=api.account_id, InArrears=True)
    try:
        expect_error(row("InstanceExpiredOrInArrears"), api.reset, rig.disk, rig.snapshot)
    finally:
        server.admin("account-billing", AccountId=api.account_id, InArrears=False)
    expect_error(row("IncorrectInstanceStatus"), api.reset, rig.disk, rig.snapshot)


# ---------------------------------------------------------------------------------------------
# Disk / instance state


def test_operation_conflict(server, sig_tenant):
    api = sig_tenant
    rig = make_rig(api)
    with server.timings(DiskMs=1500):
        api.reset(rig.disk, rig.snapshot)
        assert api.disk_status(rig.disk) == "ReIniting"
        expect_error(row("Operation.Conflict"), api.reset, rig.disk, rig.snapshot)
        expect_error(row("Operation.Conflict"), api.reset, rig.disk, rig.snapshot, dry_run=True)
    api.wait_disk(rig.disk, "In_use")
    api.reset(rig.disk, rig.snapshot)
    api.wait_disk(rig.disk, "In_use")


def test_incorrect_disk_status_creating(server, tenant):
    api = tenant
    with server.timings(DiskMs=2500):
        did = api.create_disk(size=20, wait=False)
        assert api.disk_status(did) == "Creating"
        sid = server.admin("snapshot-import", AccountId=api.account_id, DiskId=did,
                           CreationTime="2020-01-01T00:00:00Z")["SnapshotId"]
        expect_error(row("IncorrectDiskStatus"), api.reset, did, sid)
    api.wait_disk(did, "Available")
    expect_error(row("DryRunOperation"), api.reset, did, sid, dry_run=True)


def test_incorrect_disk_status_attaching(server, tenant):
    api = tenant
    rig = make_rig(api, running=True)
    api.detach(rig.disk, rig.instance)
    with server.timings(DiskMs=2000):
        api.attach(rig.disk, rig.instance, wait=False)
        assert api.disk_status(rig.disk) == "Attaching"
        expect_error(row("IncorrectDiskStatus"), api.reset, rig.disk, rig.snapshot)
    api.wait_disk(rig.disk, "In_use")
    expect_error(row("IncorrectInstanceStatus"), api.reset, rig.disk, rig.snapshot)


def test_incorrect_disk_status_detaching(server, tenant):
    api = tenant
    rig = make_rig(api)
    with server.timings(DiskMs=2000):
        api.detach(rig.disk, rig.instance, wait=False)
        assert api.disk_status(rig.disk) == "Detaching"
        expect_error(row("IncorrectDiskStatus"), api.reset, rig.disk, rig.snapshot)
    api.wait_disk(rig.disk, "Available")


@pytest.mark.parametrize("state", ["Running", "Starting", "Stopping"])
def test_incorrect_instance_status(server, tenant, state):
    api = tenant
    rig = make_rig(api, running=(state != "Starting"))
    with server.timings(InstanceMs=2000):
        if state == "Starting":
            api.start(rig.instance, wait=False)
        elif state == "Stopping":
            api.stop(rig.instance, wait=False)
        assert api.instance_status(rig.instance) == state
        expect_error(row("IncorrectInstanceStatus"), api.reset, rig.disk, rig.snapshot)
        # checked before DryRun
        expect_error(row("IncorrectInstanceStatus"), api.reset, rig.disk, rig.snapshot, dry_run=True)
    assert api.disk_status(rig.disk) == "In_use"


def test_incorrect_instance_status_both_sigs(server, sig_tenant):
    rig = make_rig(sig_tenant, running=True)
    expect_error(row("IncorrectInstanceStatus"), sig_tenant.reset, rig.disk, rig.snapshot, dry_run=True)


def test_dry_run(server, sig_tenant):
    api = sig_tenant
    rig = make_rig(api)
    expect_error(row("DryRunOperation"), api.reset, rig.disk, rig.snapshot, dry_run=True)
    assert api.disk_status(rig.disk) == "In_use"
    # DryRun=false is a real call
    body = api.reset(rig.disk, rig.snapshot, dry_run=False)
    assert body.get("RequestId")
    api.wait_disk(rig.disk, "In_use")


def test_dry_run_on_available_disk(server, tenant):
    api = tenant
    rig = make_rig(api)
    api.detach(rig.disk, rig.instance)
    api.start(rig.instance)  # the (former) instance's status no longer matters
    expect_error(row("DryRunOperation"), api.reset, rig.disk, rig.snapshot, dry_run=True)
    assert api.disk_status(rig.disk) == "Available"


def test_storage_failure_is_internal_error(server, sig_tenant):
    api = sig_tenant
    rig = make_rig(api)
    before = api.disk(rig.disk)
    server.admin("fault-inject", Operation="reset")
    err = catch(api.reset, rig.disk, rig.snapshot)
    assert (err.status, err.code) == (500, "InternalError"), err.data
    assert err.message in INTERNAL_ERROR_MSGS, err.message
    after = api.disk(rig.disk)
    assert after["Status"] == "In_use"
    assert after == before
    # later resets work
    api.reset(rig.disk, rig.snapshot)
    api.wait_disk(rig.disk, "In_use")


def test_other_accounts_disk_is_not_found(server, tenant):
    rig = make_rig(tenant)
    other = server.tenant()
    expect_error(row("InvalidDiskId.NotFound"), other.reset, rig.disk, rig.snapshot)
    own = make_rig(other)
    expect_error(row("InvalidSnapshotId.NotFound"), other.reset, own.disk, rig.snapshot)


# ---------------------------------------------------------------------------------------------
# Precedence: stack many failing conditions on one request and remove them one at a time.


def test_check_order_chain(server, tenant):
    api = tenant
    acct = api.account_id
    key = server.admin("kms-create", AccountId=acct)["KeyId"]
    rig = make_rig(api, running=True, charge="PrePaid", encrypted_key=key, data_disks=2)
    (d2,) = rig.extra_disks
    s_other = api.create_snapshot(d2)
    s_failed = _failed_snapshot(server, api, rig.disk)
    s_old = server.admin("snapshot-import", AccountId=acct, DiskId=rig.disk,
                         CreationTime="2013-07-01T00:00:00Z")["SnapshotId"]

    # every later condition is in force from the start
    server.admin("kms-disable", KeyId=key)
    server.admin("account-billing", AccountId=acct, Balance=-5)
    server.admin("instance-lock", InstanceId=rig.instance, LockReason="security")
    server.admin("instance-expire", InstanceId=rig.instance)
    server.admin("snapshot-service", AccountId=acct, Open=False)
    server.admin("whitelist", Enforced=True)
    try:
        expect_error(row("UserNotInTheWhiteList"), api.reset, rig.disk, rig.snapshot)
        server.admin("whitelist", Enforced=False)
        expect_error(row("InvalidAccountStatus.SnapshotServiceUnavailable"), api.reset, rig.disk, rig.snapshot)
        server.admin("snapshot-service", AccountId=acct, Open=True)
        expect_error(row("InvalidSnapshotId.NotFound"), api.reset, rig.disk, UNKNOWN_SNAP)
        expect_error(row("InvalidParameter.Mismatch"), api.reset, rig.disk, s_other)
        expect_error(row("InvalidSnapshot.TooOld"), api.reset, rig.disk, s_old)
        expect_error(row("OperationDenied"), api.reset, rig.disk, s_failed)
        expect_error(row("InvalidParameter.KMSKeyId.CMKNotEnabled"), api.reset, rig.disk, rig.snapshot, dry_run=True)
        server.admin("kms-enable", KeyId=key)
        expect_error(row("InvalidAccountStatus.NotEnoughBalance"), api.reset, rig.disk, rig.snapshot, dry_run=True)
        server.admin("account-billing", AccountId=acct, Balance=100)
        expect_error(row("InstanceLockedForSecurity"), api.reset, rig.disk, rig.snapshot, dry_run=True)
        server.admin("instance-unlock", InstanceId=rig.instance)
        expect_error(row("InstanceExpiredOrInArrears"), api.reset, rig.disk, rig.snapshot, dry_run=True)
    finally:
        server.admin("whitelist", Enforced=False)
        server.admin("snapshot-service", AccountId=acct, Open=True)
        server.admin("account-billing", AccountId=acct, Balance=100)
    assert api.disk_status(rig.disk) == "In_use"


def test_arrears_after_balance(server, tenant):
    api = tenant
    rig = make_rig(api)
    server.admin("account-billing", AccountId=api.account_id, Balance=-1, InArrears=True)
    try:
        expect_error(row("InvalidAccountStatus.NotEnoughBalance"), api.reset, rig.disk, rig.snapshot)
        server.admin("account-billing", AccountId=api.account_id, Balance=10)
        expect_error(row("InstanceExpiredOrInArrears"), api.reset, rig.disk, rig.snapshot)
    finally:
        server.admin("account-billing", AccountId=api.account_id, Balance=100, InArrears=False)
    api.reset(rig.disk, rig.snapshot)
    api.wait_disk(rig.disk, "In_use")


def test_storage_failure_on_available_disk(server, tenant):
    api = tenant
    rig = make_rig(api)
    api.detach(rig.disk, rig.instance)
    server.admin("fault-inject", Operation="reset")
    err = catch(api.reset, rig.disk, rig.snapshot)
    assert (err.status, err.code) == (500, "InternalError"), err.data
    assert err.message in INTERNAL_ERROR_MSGS, err.message
    assert api.disk_status(rig.disk) == "Available"
    api.reset(rig.disk, rig.snapshot)
    api.wait_disk(rig.disk, "Available")
