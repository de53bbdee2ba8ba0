"""Fair sharing between accounts (#14 item 4): a request rate per account answered with
Throttling.User and x-acs-retry-after, per-account quotas on disks, snapshots and instances
with the documented QuotaExceed codes (operator-set), and a bounded nonce cache that refuses
rather than forgets."""

from __future__ import annotations

import time
import uuid

import pytest
from alibabacloud_ecs20140526 import models as ecs_models

from support import BOOT_AK, BOOT_SECRET, Server, catch, raw_v1

THROTTLED_MSG = "Request was denied due to user flow control."


@pytest.fixture
def slow(snapdisk_bin, tmp_path):
    srv = Server(snapdisk_bin, tmp_path / "data", tmp_path / "logs", name="slow",
                 extra_args=["--account-requests-per-second", "4", "--account-burst", "6"])
    srv.start()
    yield srv
    srv.stop()


def _regions(srv, ak, secret):
    return raw_v1(srv, "DescribeRegions", ak=ak, secret=secret)


def test_each_account_has_its_own_request_rate(slow):
    a = slow.new_account("greedy")
    b = slow.new_account("quiet")
    answers = [_regions(slow, a["AccessKeyId"], a["AccessKeySecret"]) for _ in range(12)]
    throttled = [r for r in answers if r.status != 200]
    assert 0 < len(throttled) <= 12 - 6, [r.status for r in answers]
    r = throttled[0]
    assert (r.status, r.json()["Code"], r.json()["Message"]) == (400, "Throttling.User", THROTTLED_MSG)
    wait_ms = int(r.headers["x-acs-retry-after"])
    assert 0 < wait_ms <= 250, "one token at 4 a second"
    # The other account is not slowed by the first one's burst.
    assert _regions(slow, b["AccessKeyId"], b["AccessKeySecret"]).status == 200
    # A throttled request took no room in the nonce cache: after the advised wait, the same
    # request with the same nonce is served (the SDKs retry exactly so).
    nonce = uuid.uuid4().hex
    while (r := raw_v1(slow, "DescribeRegions", ak=a["AccessKeyId"], secret=a["AccessKeySecret"],
                       nonce=nonce)).status == 200:
        nonce = uuid.uuid4().hex
    assert r.json()["Code"] == "Throttling.User"
    time.sleep(int(r.headers["x-acs-retry-after"]) / 1000 + 0.05)
    again = raw_v1(slow, "DescribeRegions", ak=a["AccessKeyId"], secret=a["AccessKeySecret"], nonce=nonce)
    assert again.status == 200, again.text
    # The official SDK surfaces the code (its retry policy reads the header).
    api = slow.tenant()
    for _ in range(20):
        try:
            api.client.describe_regions(ecs_models.DescribeRegionsRequest())
        except Exception:  # noqa: BLE001 - checked below through catch()
            break
    err = catch(api.client.describe_regions, ecs_models.DescribeRegionsRequest())
    assert (err.status, err.code) == (400, "Throttling.User")
    # The operator lifts the limit for one account; it applies from the next request.
    slow.admin("account-limits", AccountId=a["AccountId"], RequestsPerSecond=0)
    assert all(_regions(slow, a["AccessKeyId"], a["AccessKeySecret"]).status == 200 for _ in range(20))


def test_quotas_per_account(server):
    api = server.tenant()
    other = server.tenant()
    got = server.admin("account-limits", AccountId=api.account_id, Disks=2, Snapshots=1, Instances=1)
    assert (got["Disks"], got["Snapshots"], got["Instances"]) == (2, 1, 1)
    assert got["RequestsPerSecond"] > 0, "an omitted field keeps the server's default"
    d1 = api.create_disk()
    d2 = api.create_disk()
    # A third disk is refused while the account holds its quota...
    err = catch(api.create_disk)
    assert (err.status, err.code, err.message) == (403, "QuotaExceed.PortableCloudDisk",
                                                   "The quota of portable cloud disk exceeds.")
    # ... and another account is not affected.
    other.create_disk()
    # Deleting a disk makes room again.
    api.delete_disk(d2)
    d2 = api.create_disk()

    api.create_snapshot(d1)
    err = catch(api.create_snapshot, d2)
    assert (err.status, err.code, err.message) == (403, "QuotaExceed.Snapshot", "The snapshot quota exceeds.")

    # An instance needs an instance and a system disk under quota; DryRun reports it too.
    server.admin("account-limits", AccountId=api.account_id, Disks=3)
    api.run_instance()
    for extra in ({"dry_run": True}, {}):
        err = catch(api.run_instances, 1, **extra)
        assert (err.status, err.code, err.message) == (
            403, "QuotaExceed.ElasticQuota", "No additional quota is available for the specified ECS instance type.")
    server.admin("account-limits", AccountId=api.account_id, Instances=5)
    err = catch(api.run_instances, 1)
    assert err.code == "QuotaExceed.PortableCloudDisk", "the system disk would pass the disk quota"


def test_unknown_account_limits_is_refused(server):
    with pytest.raises(Exception) as e:
        server.admin("account-limits", AccountId="no-such-account", Disks=1)
    assert getattr(e.value, "status", None) == 404


@pytest.fixture
def few_nonces(snapdisk_bin, tmp_path):
    srv = Server(snapdisk_bin, tmp_path / "ndata", tmp_path / "nlogs", name="few-nonces",
                 extra_args=["--max-nonces", "8"])
    srv.start()
    yield srv
    srv.stop()


def test_a_full_nonce_cache_refuses_and_forgets_nothing(few_nonces):
    used = []
    refused = None
    for _ in range(12):
        n = uuid.uuid4().hex
        r = raw_v1(few_nonces, "DescribeRegions", nonce=n)
        if r.status == 200:
            used.append(n)
        else:
            refused = r
            break
    assert refused is not None and used, "the cache holds at most 8 nonces"
    body = refused.json()
    assert (refused.status, body["Code"], body["Message"]) == (
        400, "Throttling", "Request was denied due to request throttling.")
    # The oldest nonce leaves its window 30 minutes after its use.
    assert 25 * 60 * 1000 < int(refused.headers["x-acs-retry-after"]) <= 31 * 60 * 1000
    # Still full, and every admitted nonce is still refused as a replay.
    assert raw_v1(few_nonces, "DescribeRegions").status == 400
    r = raw_v1(few_nonces, "DescribeRegions", nonce=used[0], ak=BOOT_AK, secret=BOOT_SECRET)
    assert r.json()["Code"] == "SignatureNonceUsed"


def test_tag_limits(server):
    """One disk took 20,000 tags before: Tag.N now stops at 20, with the documented rules."""
    from support import REGION, ZONE
    api = server.tenant()
    base = {"RegionId": REGION, "ZoneId": ZONE, "Size": "20"}
    twenty = {f"Tag.{n}.Key": f"k{n}" for n in range(1, 21)}
    did = api.call("CreateDisk", {**base, **twenty})["DiskId"]
    tags = api.call("DescribeDisks", {"RegionId": REGION, "DiskIds": f'["{did}"]'})["Disks"]["Disk"][0]["Tags"]["Tag"]
    assert len(tags) == 20
    for extra, code, msg in [
        ({"Tag.21.Key": "k21"}, "InvalidTagCount", "The specified tags are beyond the permitted range."),
        ({"Tag.20000.Key": "k"}, "InvalidTagCount", "The specified tags are beyond the permitted range."),
        ({"Tag.1.Key": "aliyun-x"}, "InvalidTagKey.Malformed", "The specified Tag.n.Key is not valid."),
        ({"Tag.1.Key": "acs:x"}, "InvalidTagKey.Malformed", "The specified Tag.n.Key is not valid."),
        ({"Tag.1.Key": "k", "Tag.1.Value": "see http://x"}, "InvalidTagValue.Malformed",
         "The specified Tag.n.Value is not valid."),
        ({"Tag.1.Value": "v"}, "InvalidTag.Mismatch", "The specified Tag.n.Key and Tag.n.Value are not match."),
    ]:
        err = catch(api.call, "CreateDisk", {**base, **extra})
        assert (err.status, err.code, err.message) == (400, code, msg), extra
