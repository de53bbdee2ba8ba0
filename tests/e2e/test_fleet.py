"""Paging and idempotence through the official SDKs: a NextToken round trip with Tea (ACS3 and
v2) and the legacy core SDK, refused tokens, and ClientToken retries, sequential and concurrent."""

from __future__ import annotations

import threading

from alibabacloud_ecs20140526 import models as ecs_models

from support import ZONE, catch, legacy_client, legacy_do, legacy_request


def _walk(api, max_results, **kw):
    """Every disk through NextToken pages: (ids, number of pages, the bodies)."""
    ids, token, bodies = [], None, []
    while True:
        body = api.disks(max_results=max_results, next_token=token, **kw)
        bodies.append(body)
        ids += [d["DiskId"] for d in body["Disks"]["Disk"]]
        token = body.get("NextToken")
        assert len(bodies) < 50
        if not token:
            return ids, bodies


def test_next_token_round_trip_through_tea(server, sig_tenant):
    api = sig_tenant
    created = [api.create_disk(size=20, wait=False) for _ in range(11)]
    for did in created:
        api.wait_disk(did, "Available")
    ids, bodies = _walk(api, 4)
    assert sorted(ids) == sorted(created) and len(set(ids)) == len(ids), "each disk once"
    assert [len(b["Disks"]["Disk"]) for b in bodies] == [4, 4, 3]
    assert bodies[-1]["NextToken"] == ""
    # Exactly a page's worth: the last page carries no token, and no empty page follows.
    ids, bodies = _walk(api, 11)
    assert len(bodies) == 1 and len(ids) == 11
    # Filters hold across pages, and the token belongs to them.
    first = api.disks(max_results=2, status="Available")
    assert first["NextToken"]
    err = catch(api.disks, max_results=2, status="In_use", next_token=first["NextToken"])
    assert (err.status, err.code) == (400, "InvalidParameter")
    assert "NextToken" in err.message


def test_next_token_through_the_legacy_sdk(server, tenant):
    for _ in range(3):
        tenant.create_disk(size=20, wait=False)
    client = legacy_client(server, tenant.ak, tenant.secret)
    seen, token = [], None
    while True:
        params = {"RegionId": "cn-hangzhou", "MaxResults": 2}
        if token:
            params["NextToken"] = token
        body = legacy_do(client, legacy_request("DescribeDisks", **params))
        seen += [d["DiskId"] for d in body["Disks"]["Disk"]]
        token = body["NextToken"]
        if not token:
            break
    assert len(seen) == len(set(seen)) == 3


def test_foreign_and_malformed_tokens(server, tenant):
    for _ in range(3):
        tenant.create_disk(size=20, wait=False)
    token = tenant.disks(max_results=1)["NextToken"]
    other = server.tenant()
    other.create_disk(size=20, wait=False)
    for who, tok in ((other, token), (tenant, "not-a-token"), (tenant, token[:-2] + "00")):
        err = catch(who.disks, max_results=1, next_token=tok)
        assert (err.status, err.code, err.message) == (
            400, "InvalidParameter", 'The specified parameter "NextToken" is not valid.')


def test_page_number_beyond_the_end(server, tenant):
    for _ in range(3):
        tenant.create_disk(size=20, wait=False)
    body = tenant.disks(page_number=2, page_size=3)
    assert body["Disks"]["Disk"] == [] and body["TotalCount"] == 3


def _create_disk(api, token, size=20):
    req = ecs_models.CreateDiskRequest(region_id="cn-hangzhou", zone_id=ZONE, size=size, client_token=token)
    return api.client.create_disk(req).body.to_map()["DiskId"]


def test_client_token_retries(server, sig_tenant):
    api = sig_tenant
    first = _create_disk(api, "retry-1")
    assert _create_disk(api, "retry-1") == first
    assert api.disks()["TotalCount"] == 1
    err = catch(_create_disk, api, "retry-1", size=30)
    assert (err.status, err.code, err.message) == (
        400, "IdempotentParameterMismatch", "The request is retried with updated parameters.")
    # RunInstances: the same ids again, no second launch.
    run = lambda: api.run_instances(amount=2, wait=False, client_token="run-1")  # noqa: E731
    ids = run()
    assert run() == ids
    assert api.instances()["TotalCount"] == 2
    # CreateSnapshot.
    api.wait_disk(first, "Available")
    snap = lambda: api.client.create_snapshot(  # noqa: E731
        ecs_models.CreateSnapshotRequest(disk_id=first, client_token="snap-1")).body.to_map()["SnapshotId"]
    sid = snap()
    assert snap() == sid
    assert api.snapshots()["TotalCount"] == 1


def test_concurrent_calls_with_one_token_make_one_disk(server, tenant):
    results, errors = [], []

    def go():
        try:
            results.append(_create_disk(tenant, "race-token"))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(results)) == 1, results
    body = tenant.disks()
    assert body["TotalCount"] == 1 and [d["DiskId"] for d in body["Disks"]["Disk"]] == results[:1]


def test_single_quoted_id_arrays(server, tenant):
    """The single-quoted array form of Alibaba's CLI guide works for every *Ids filter."""
    did = tenant.create_disk(size=20)
    sid = tenant.create_snapshot(did)
    iid = tenant.run_instance()
    assert [d["DiskId"] for d in tenant.disks(disk_ids=f"['{did}']")["Disks"]["Disk"]] == [did]
    assert [s["SnapshotId"] for s in tenant.snapshots(snapshot_ids=f"['{sid}']")["Snapshots"]["Snapshot"]] == [sid]
    assert [i["InstanceId"] for i in tenant.instances(instance_ids=f"['{iid}']")["Instances"]["Instance"]] == [iid]
