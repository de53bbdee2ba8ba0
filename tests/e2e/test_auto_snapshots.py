"""Automatic snapshot policies through the official SDK, on real bytes (issue 9): the operator's
test clock (`auto-snapshot-run` with `Now`) stands in for waiting hours."""

from __future__ import annotations

import datetime as dt
import json

from alibabacloud_ecs20140526 import models as ecs_models

from nbd_client import nbd_url, qemu_io
from support import REGION, _m, attached_disk


def test_an_automatic_snapshot_holds_the_bytes_of_its_moment(server, sig_tenant):
    api = sig_tenant
    iid, did = attached_disk(api, size=20)
    sp = _m(api.client.create_auto_snapshot_policy(ecs_models.CreateAutoSnapshotPolicyRequest(
        region_id=REGION, time_points='["2"]', repeat_weekdays=json.dumps([str(d) for d in range(1, 8)]),
        retention_days=7, auto_snapshot_policy_name="nightly")))["AutoSnapshotPolicyId"]
    _m(api.client.apply_auto_snapshot_policy(ecs_models.ApplyAutoSnapshotPolicyRequest(
        region_id=REGION, auto_snapshot_policy_id=sp, disk_ids=json.dumps([did]))))
    policies = _m(api.client.describe_auto_snapshot_policy_ex(ecs_models.DescribeAutoSnapshotPolicyExRequest(
        region_id=REGION, auto_snapshot_policy_id=sp)))["AutoSnapshotPolicies"]["AutoSnapshotPolicy"]
    assert policies[0]["DiskNums"] == 1 and policies[0]["TimePoints"] == '["2"]'
    assert api.disk(did)["AutoSnapshotPolicyId"] == sp

    qemu_io(nbd_url(server.nbd_port, did), "write -P 0xa1 0 64k")
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    run = server.admin("auto-snapshot-run", Now=later)
    assert len(run["Taken"]) == 1, run
    sid = run["Taken"][0]
    qemu_io(nbd_url(server.nbd_port, did), "write -P 0xb2 0 64k")
    snap = api.wait_snapshot(sid, "accomplished")
    assert snap["SnapshotType"] == "auto" and snap["SnapshotName"].startswith("auto_")
    qemu_io(nbd_url(server.nbd_port, sid), "read -P 0xa1 0 64k", read_only=True)
    # The same moment again takes nothing; deleting the policy leaves the snapshot.
    assert server.admin("auto-snapshot-run", Now=later)["Taken"] == []
    _m(api.client.delete_auto_snapshot_policy(ecs_models.DeleteAutoSnapshotPolicyRequest(
        region_id=REGION, auto_snapshot_policy_id=sp)))
    assert api.snapshot(sid) is not None
    assert api.disk(did)["AutoSnapshotPolicyId"] == ""
