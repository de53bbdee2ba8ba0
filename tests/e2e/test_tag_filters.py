"""Tag.N filters on every Describe* (#9 item 7): AND across tags, a key alone matches any
value, done in SQL with TotalCount and paging agreeing. Before, DescribeDisks with
Tag.1.Key=env returned every disk, tagged or not."""

from __future__ import annotations

from alibabacloud_ecs20140526 import models as ecs_models

from support import IMAGE, ITYPE, REGION, ZONE, catch


def _disk(api, **tags):
    q = {"RegionId": REGION, "ZoneId": ZONE, "Size": "20"}
    for n, (k, v) in enumerate(tags.items(), 1):
        q[f"Tag.{n}.Key"], q[f"Tag.{n}.Value"] = k, v
    return api.call("CreateDisk", q)["DiskId"]


def _ids(body, outer, inner, key):
    return sorted(x[key] for x in body[outer][inner])


def test_describe_filters_by_tags(server):
    api = server.tenant()
    prod = _disk(api, env="prod", team="core")
    dev = _disk(api, env="dev")
    _disk(api)
    other = _disk(api, team="core")

    def disks(*tags, **extra):
        req = ecs_models.DescribeDisksRequest(
            region_id=REGION, tag=[ecs_models.DescribeDisksRequestTag(key=k, value=v) for k, v in tags], **extra)
        return api.client.describe_disks(req).body.to_map()

    body = disks(("env", "prod"))
    assert (_ids(body, "Disks", "Disk", "DiskId"), body["TotalCount"]) == ([prod], 1)
    body = disks(("env", None))
    assert (_ids(body, "Disks", "Disk", "DiskId"), body["TotalCount"]) == (sorted([prod, dev]), 2)
    assert _ids(disks(("env", "prod"), ("team", "core")), "Disks", "Disk", "DiskId") == [prod]
    assert _ids(disks(("env", "dev"), ("team", "core")), "Disks", "Disk", "DiskId") == []
    assert _ids(disks(("team", None)), "Disks", "Disk", "DiskId") == sorted([prod, other])
    # Paging under a tag filter: one per page, by NextToken, both found.
    page1 = disks(("team", None), max_results=1)
    page2 = disks(("team", None), max_results=1, next_token=page1["NextToken"])
    assert sorted(_ids(page1, "Disks", "Disk", "DiskId") + _ids(page2, "Disks", "Disk", "DiskId")) == sorted([prod, other])
    # Another account's tags are not seen.
    assert api.call("DescribeDisks", {"RegionId": REGION, "Tag.1.Key": "env"})["TotalCount"] == 2
    assert server.tenant().call("DescribeDisks", {"RegionId": REGION, "Tag.1.Key": "env"})["TotalCount"] == 0

    # Snapshots and instances filter the same way (a disk takes its snapshot once Available).
    for did in (prod, dev):
        api.wait_disk(did, "Available")
    sid = api.call("CreateSnapshot", {"DiskId": prod, "Tag.1.Key": "keep", "Tag.1.Value": "yes"})["SnapshotId"]
    api.call("CreateSnapshot", {"DiskId": dev})
    snaps = api.call("DescribeSnapshots", {"RegionId": REGION, "Tag.1.Key": "keep", "Tag.1.Value": "yes"})
    assert (_ids(snaps, "Snapshots", "Snapshot", "SnapshotId"), snaps["TotalCount"]) == ([sid], 1)
    iid = api.run_instance(tag=[ecs_models.RunInstancesRequestTag(key="role", value="ci")])
    api.run_instance()
    inst = api.call("DescribeInstances", {"RegionId": REGION, "Tag.1.Key": "role"})
    assert (_ids(inst, "Instances", "Instance", "InstanceId"), inst["TotalCount"]) == ([iid], 1)
    # Images carry no tags: a tag filter matches none.
    imgs = api.call("DescribeImages", {"RegionId": REGION, "Tag.1.Key": "role"})
    assert imgs["TotalCount"] == 0 and imgs["Images"]["Image"] == []
    err = catch(api.call, "DescribeDisks", {"RegionId": REGION, "Tag.21.Key": "x"})
    assert (err.status, err.code) == (400, "InvalidTagCount")


def test_disk_names_and_descriptions_follow_the_documented_rules(server):
    """#9: CreateDisk accepted names the naming rules forbid."""
    api = server.tenant()
    base = {"RegionId": REGION, "ZoneId": ZONE, "Size": "20"}
    for bad in ["http://x", "1abc", "_x", "a", "a b"]:
        err = catch(api.call, "CreateDisk", {**base, "DiskName": bad})
        assert (err.status, err.code, err.message) == (400, "InvalidDiskName.Malformed",
                                                       "The specified disk name is wrongly formed."), bad
    err = catch(api.call, "CreateDisk", {**base, "Description": "https://example.com"})
    assert (err.status, err.code, err.message) == (400, "InvalidDescription.Malformed",
                                                   "The specified description is wrongly formed.")
    did = api.call("CreateDisk", {**base, "DiskName": "数据盘:v1.0_a-b", "Description": "any text (even this!)"})["DiskId"]
    d = api.call("DescribeDisks", {"RegionId": REGION, "DiskIds": f'["{did}"]'})["Disks"]["Disk"][0]
    assert (d["DiskName"], d["Description"]) == ("数据盘:v1.0_a-b", "any text (even this!)")


def test_instance_and_instance_disk_names_follow_the_rules(server):
    api = server.tenant()
    for extra, code, msg in [
        ({"InstanceName": "1bad"}, "InvalidInstanceName.Malformed", 'The specified parameter "InstanceName" is not valid.'),
        ({"Description": "http://x"}, "InvalidDescription.Malformed", 'The specified parameter "Description" is not valid.'),
        ({"SystemDisk.DiskName": "_x"}, "InvalidDiskName.Malformed",
         'The specified parameter "SystemDisk.DiskName or DataDisk.n.DiskName" is not valid.'),
        ({"DataDisk.1.Size": "20", "DataDisk.1.DiskName": "a b"}, "InvalidDiskName.Malformed",
         'The specified parameter "SystemDisk.DiskName or DataDisk.n.DiskName" is not valid.'),
    ]:
        err = catch(api.call, "RunInstances", {"RegionId": REGION, "ZoneId": ZONE, "ImageId": IMAGE,
                                               "InstanceType": ITYPE, **extra})
        assert (err.status, err.code, err.message) == (400, code, msg), extra
    iid = api.run_instance(instance_name="lab-runner.01")
    assert api.instance(iid)["InstanceName"] == "lab-runner.01"
