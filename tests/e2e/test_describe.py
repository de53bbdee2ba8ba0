"""Describe* paging and filters, regions/zones/images, and images made from snapshots."""

from __future__ import annotations

import json

import pytest

from support import IMAGE, REGION, ZONE, catch, expect_error, make_rig, poll, row


def _page_through(fetch, key, item, id_field, page_size):
    """PageNumber/PageSize paging: returns (ids in page order, list of page bodies)."""
    ids, bodies, page = [], [], 1
    while True:
        body = fetch(page_number=page, page_size=page_size)
        bodies.append(body)
        items = body[key][item]
        assert body["PageNumber"] == page and body["PageSize"] == page_size, body
        assert len(items) <= page_size
        ids += [i[id_field] for i in items]
        if len(items) < page_size or len(ids) >= body["TotalCount"]:
            break
        page += 1
        assert page < 50
    return ids, bodies


def _token_through(fetch, key, item, id_field, max_results):
    ids, token, rounds = [], None, 0
    while True:
        body = fetch(max_results=max_results, next_token=token)
        ids += [i[id_field] for i in body[key][item]]
        token = body.get("NextToken")
        rounds += 1
        assert rounds < 50
        if not token:
            return ids, rounds


# ----------------------------------------------------------------------------------------------
# DescribeDisks


def test_describe_disks_paging(server, tenant):
    api = tenant
    created = [api.create_disk(size=20 + i, name=f"p{i}", wait=False) for i in range(12)]
    for did in created:
        api.wait_disk(did, "Available")

    body = api.disks()
    assert body["TotalCount"] == 12
    assert body["PageNumber"] == 1 and body["PageSize"] == 10  # defaults
    assert len(body["Disks"]["Disk"]) == 10

    ids, bodies = _page_through(api.disks, "Disks", "Disk", "DiskId", 5)
    assert [len(b["Disks"]["Disk"]) for b in bodies] == [5, 5, 2]
    assert all(b["TotalCount"] == 12 for b in bodies)
    assert len(ids) == len(set(ids)) == 12 and set(ids) == set(created)

    # a page past the end is empty
    body = api.disks(page_number=4, page_size=5)
    assert body["Disks"]["Disk"] == [] and body["TotalCount"] == 12

    ids, rounds = _token_through(api.disks, "Disks", "Disk", "DiskId", 10)
    assert rounds == 2
    assert len(ids) == len(set(ids)) == 12 and set(ids) == set(created)

    # the first token page has 10 and hands out a token
    body = api.disks(max_results=10)
    assert len(body["Disks"]["Disk"]) == 10 and body["NextToken"]


def test_describe_disks_filters(server, tenant):
    api = tenant
    iid = api.run_instance(data_disks=[{"size": 30, "category": "cloud_essd"}])
    sysd = api.system_disk(iid)["DiskId"]
    (data_att,) = api.data_disk_ids(iid)
    free_ssd = api.create_disk(size=25, category="cloud_ssd")
    free_essd = api.create_disk(size=26, zone="cn-hangzhou-i")
    all_ids = {sysd, data_att, free_ssd, free_essd}

    def ids(**kw):
        return {d["DiskId"] for d in api.disks(page_size=100, **kw)["Disks"]["Disk"]}

    assert ids() == all_ids
    assert ids(disk_ids=json.dumps([free_ssd, data_att])) == {free_ssd, data_att}
    assert ids(disk_ids=json.dumps(["d-bp1nosuchdisk000001"])) == set()
    assert ids(disk_ids="[]") == set()  # an empty list selects nothing (DescribeDisks doc)
    assert ids(instance_id=iid) == {sysd, data_att}
    assert ids(status="Available") == {free_ssd, free_essd}
    assert ids(status="In_use") == {sysd, data_att}
    assert ids(disk_type="system") == {sysd}
    assert ids(disk_type="data") == {data_att, free_ssd, free_essd}
    assert ids(disk_type="all") == all_ids
    assert ids(category="cloud_ssd") == {free_ssd}
    assert ids(zone_id="cn-hangzhou-i") == {free_essd}
    # TotalCount counts the filtered set, not the page
    body = api.disks(status="Available", page_size=1)
    assert body["TotalCount"] == 2 and len(body["Disks"]["Disk"]) == 1
    # filters are AND-ed
    assert ids(status="Available", category="cloud_essd") == {free_essd}
    assert ids(instance_id=iid, disk_type="data") == {data_att}

    # another region is empty for this tenant
    assert api.disks(region="cn-shanghai")["Disks"]["Disk"] == []

    d = api.disk(free_ssd)
    assert (d["Size"], d["Category"], d["Status"], d["Type"], d["RegionId"], d["ZoneId"]) == (
        25, "cloud_ssd", "Available", "data", REGION, ZONE)
    assert d["Portable"] is True and d["Encrypted"] is False
    assert d["CreationTime"].endswith("Z")


def test_describe_disks_bad_region(server, sig_tenant):
    expect_error(row("InvalidRegionId.MalFormed"), sig_tenant.disks, region="xx-nowhere-1")


def test_describe_disks_in_shanghai(server, tenant):
    api = tenant
    did = api.create_disk(size=20, zone="cn-shanghai-e", region="cn-shanghai", wait=False)
    d = poll(lambda: (api.disks(region="cn-shanghai", disk_ids=json.dumps([did]))["Disks"]["Disk"] or [None])[0],
             lambda d: d is not None and d["Status"] == "Available", what="shanghai disk")
    assert d["RegionId"] == "cn-shanghai" and d["ZoneId"] == "cn-shanghai-e"
    assert api.disk(did) is None  # not listed in cn-hangzhou


# ----------------------------------------------------------------------------------------------
# DescribeInstances


def test_describe_instances_paging_and_filters(server, tenant):
    api = tenant
    ids = api.run_instances(amount=3)
    other = api.run_instance(itype="ecs.c7.large")
    api.stop(other)
    every = set(ids) | {other}

    body = api.instances()
    assert body["TotalCount"] == 4 and len(body["Instances"]["Instance"]) == 4

    got, bodies = _page_through(api.instances, "Instances", "Instance", "InstanceId", 3)
    assert [len(b["Instances"]["Instance"]) for b in bodies] == [3, 1]
    assert len(got) == len(set(got)) == 4 and set(got) == every

    got, _ = _token_through(api.instances, "Instances", "Instance", "InstanceId", 10)
    assert set(got) == every and len(got) == 4

    def iids(**kw):
        return {i["InstanceId"] for i in api.instances(page_size=100, **kw)["Instances"]["Instance"]}

    assert iids(instance_ids=json.dumps([ids[0], other])) == {ids[0], other}
    assert iids(status="Stopped") == {other}
    assert iids(status="Running") == set(ids)
    assert iids(instance_ids=json.dumps(ids[:2]), status="Running") == set(ids[:2])

    inst = api.instance(other)
    assert (inst["InstanceType"], inst["Cpu"], inst["Memory"]) == ("ecs.c7.large", 2, 4096)
    assert inst["OperationLocks"]["LockReason"] == []
    assert inst["InstanceChargeType"] == "PostPaid"
    assert api.instances(region="cn-shanghai")["Instances"]["Instance"] == []


@pytest.mark.parametrize("itype,cpu,mem", [
    ("ecs.g7.large", 2, 8192), ("ecs.g7.xlarge", 4, 16384), ("ecs.c7.large", 2, 4096),
    ("ecs.t6-c1m1.large", 2, 2048),
])
def test_instance_type_shapes(server, tenant, itype, cpu, mem):
    iid = tenant.run_instance(itype=itype, wait=False)
    inst = tenant.instance(iid)
    assert (inst["InstanceType"], inst["Cpu"], inst["Memory"]) == (itype, cpu, mem)


def test_run_instances_in_shanghai(server, tenant):
    api = tenant
    (iid,) = api.run_instances(region="cn-shanghai", zone="cn-shanghai-f", wait=False)
    inst = poll(lambda: api.instances(region="cn-shanghai", instance_ids=json.dumps([iid]))["Instances"]["Instance"][0],
                lambda i: i["Status"] == "Running", what="shanghai instance running")
    assert (inst["RegionId"], inst["ZoneId"]) == ("cn-shanghai", "cn-shanghai-f")


# ----------------------------------------------------------------------------------------------
# DescribeSnapshots


def test_describe_snapshots_filters_and_paging(server, tenant):
    api = tenant
    rig = make_rig(api, running=True, data_disks=2)
    (d2,) = rig.extra_disks
    s1 = rig.snapshot
    s2 = api.create_snapshot(rig.disk, name="second")
    s3 = api.create_snapshot(d2)

    def sids(**kw):
        return {s["SnapshotId"] for s in api.snapshots(page_size=100, **kw)["Snapshots"]["Snapshot"]}

    assert sids() == {s1, s2, s3}
    assert sids(disk_id=rig.disk) == {s1, s2}
    assert sids(disk_id=d2) == {s3}
    assert sids(snapshot_ids=json.dumps([s1, s3])) == {s1, s3}
    assert sids(status="accomplished") == {s1, s2, s3}
    assert sids(status="progressing") == set()
    assert sids(status="all") == {s1, s2, s3}

    got, bodies = _page_through(api.snapshots, "Snapshots", "Snapshot", "SnapshotId", 2)
    assert [len(b["Snapshots"]["Snapshot"]) for b in bodies] == [2, 1]
    assert set(got) == {s1, s2, s3} and len(got) == 3
    assert all(b["TotalCount"] == 3 for b in bodies)

    s = api.snapshot(s2)
    assert (s["Status"], s["Progress"], s["SourceDiskId"], s["SnapshotName"]) == ("accomplished", "100%", rig.disk, "second")
    assert s["SourceDiskSize"] in (20, "20")
    assert s["SourceDiskType"].lower() == "data"

    got, rounds = _token_through(api.snapshots, "Snapshots", "Snapshot", "SnapshotId", 10)
    assert set(got) == {s1, s2, s3} and len(got) == 3 and rounds == 1

    with server.timings(SnapshotMs=1500):
        s4 = api.create_snapshot(d2, wait=False)
        assert sids(status="progressing") == {s4}
        assert sids(status="accomplished") == {s1, s2, s3}
    api.wait_snapshot(s4, "accomplished")


# ----------------------------------------------------------------------------------------------
# Regions, zones, images


def test_describe_regions(server, sig_tenant):
    from alibabacloud_ecs20140526 import models as m

    body = sig_tenant.client.describe_regions(m.DescribeRegionsRequest()).body.to_map()
    regions = {r["RegionId"] for r in body["Regions"]["Region"]}
    assert regions >= {"cn-hangzhou", "cn-shanghai"}, regions


@pytest.mark.parametrize("region,zones", [
    ("cn-hangzhou", {"cn-hangzhou-h", "cn-hangzhou-i"}),
    ("cn-shanghai", {"cn-shanghai-e", "cn-shanghai-f"}),
])
def test_describe_zones(server, tenant, region, zones):
    from alibabacloud_ecs20140526 import models as m

    body = tenant.client.describe_zones(m.DescribeZonesRequest(region_id=region)).body.to_map()
    assert {z["ZoneId"] for z in body["Zones"]["Zone"]} >= zones


def test_describe_zones_bad_region(server, tenant):
    from alibabacloud_ecs20140526 import models as m

    expect_error(row("InvalidRegionId.MalFormed"), tenant.client.describe_zones,
                 m.DescribeZonesRequest(region_id="xx-nowhere-1"))


def test_describe_images_public(server, tenant):
    imgs = tenant.images(page_size=100)["Images"]["Image"]
    blank = [i for i in imgs if i["ImageId"] == IMAGE]
    assert len(blank) == 1, [i["ImageId"] for i in imgs]
    assert blank[0]["Size"] == 20
    assert blank[0]["OSType"] == "linux"


def test_image_from_snapshot_then_run_instances(server, tenant):
    api = tenant
    iid = api.run_instance()
    sysd = api.system_disk(iid)
    sid = api.create_snapshot(sysd["DiskId"])
    image_id = api.create_image(sid, "golden-1")
    assert image_id.startswith("m-"), image_id

    def mine():
        return [i for i in api.images(page_size=100)["Images"]["Image"] if i["ImageId"] == image_id]

    img = poll(mine, lambda l: len(l) == 1 and l[0].get("Status", "Available") == "Available",
               what="own image available")[0]
    assert img["ImageName"] == "golden-1"
    assert img["Size"] == sysd["Size"]
    # the public image is still listed alongside
    assert any(i["ImageId"] == IMAGE for i in api.images(page_size=100)["Images"]["Image"])
    # image_id filter
    only = api.images(image_id=image_id)["Images"]["Image"]
    assert [i["ImageId"] for i in only] == [image_id]

    # other tenants do not see it and cannot use it
    other = server.tenant()
    assert all(i["ImageId"] != image_id for i in other.images(page_size=100)["Images"]["Image"])
    err = catch(other.run_instances, image=image_id, wait=False)
    assert err.status in (400, 403, 404) and err.code.startswith("InvalidImageId"), err.data

    new_iid = api.run_instance(image=image_id)
    inst = api.instance(new_iid)
    assert inst["ImageId"] == image_id and inst["Status"] == "Running"
    nsys = api.system_disk(new_iid)
    assert nsys["Status"] == "In_use" and nsys["Device"] == "/dev/xvda"
    assert nsys["ImageId"] == image_id
    assert nsys["Size"] >= sysd["Size"]

    # An image that instances run from is deleted only with Force.
    err = catch(api.delete_image, image_id)
    assert (err.status, err.code) == (403, "InvalidImageId.IncorrectStatus"), err.data
    api.delete_image(image_id, force=True)
    assert api.images(image_id=image_id)["Images"]["Image"] == []
    # the instance made from it keeps running
    assert api.instance_status(new_iid) == "Running"


@pytest.mark.parametrize("action,query", [
    ("DescribeInstances", {}),
    ("DescribeSnapshots", {}),
    ("DescribeImages", {}),
    ("DescribeZones", {}),
    ("CreateDisk", {"ZoneId": "cn-hangzhou-h", "Size": 20}),
    ("RunInstances", {"ImageId": IMAGE, "InstanceType": "ecs.g7.large", "ZoneId": "cn-hangzhou-h"}),
    ("CreateImage", {"SnapshotId": "s-bp1nosuchsnap000001", "ImageName": "x"}),
])
def test_unknown_region_everywhere(server, tenant, action, query):
    q = dict(query, RegionId="xx-nowhere-1")
    expect_error(row("InvalidRegionId.MalFormed"), tenant.call, action, q)
    assert tenant.disks(page_size=100)["Disks"]["Disk"] == []
    assert tenant.instances(page_size=100)["Instances"]["Instance"] == []
