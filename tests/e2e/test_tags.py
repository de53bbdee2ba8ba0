"""TagResources, UntagResources and ListTagResources (#9 item 7) through the Python Tea SDK
and the legacy core SDK: tags on disks, snapshots and instances, the 20-tag limit, all or
nothing, account isolation, NextToken paging, and every reachable error row."""

from __future__ import annotations

from alibabacloud_ecs20140526 import models as m

from support import REGION, catch, legacy_catch, legacy_client, legacy_do, legacy_request


def _tag(api, rtype, ids, **tags):
    req = m.TagResourcesRequest(region_id=REGION, resource_type=rtype, resource_id=ids,
                                tag=[m.TagResourcesRequestTag(key=k, value=v) for k, v in tags.items()])
    return api.client.tag_resources(req).body.to_map()


def _list(api, rtype, ids=None, tags=None, token=None):
    req = m.ListTagResourcesRequest(region_id=REGION, resource_type=rtype, resource_id=ids, next_token=token,
                                    tag=[m.ListTagResourcesRequestTag(key=k, value=v) for k, v in (tags or [])])
    return api.client.list_tag_resources(req).body.to_map()


def _pairs(body):
    return sorted((r["ResourceType"], r["ResourceId"], r["TagKey"], r["TagValue"])
                  for r in body["TagResources"]["TagResource"])


def test_tag_untag_and_list(server):
    api = server.tenant()
    d1, d2 = api.create_disk(), api.create_disk()
    assert "RequestId" in _tag(api, "disk", [d1, d2], env="prod", team="core")
    _tag(api, "disk", [d1], env="staging")  # overwrites one value
    body = _list(api, "disk")
    assert _pairs(body) == sorted([("disk", d1, "env", "staging"), ("disk", d1, "team", "core"),
                                   ("disk", d2, "env", "prod"), ("disk", d2, "team", "core")])
    assert body["NextToken"] == ""
    assert _pairs(_list(api, "disk", ids=[d2])) == [("disk", d2, "env", "prod"), ("disk", d2, "team", "core")]
    assert {r[1] for r in _pairs(_list(api, "disk", tags=[("env", "prod")]))} == {d2}
    # Describe* shows and filters by the same tags.
    disk = api.call("DescribeDisks", {"RegionId": REGION, "DiskIds": f'["{d1}"]'})["Disks"]["Disk"][0]
    assert sorted((t["TagKey"], t["TagValue"]) for t in disk["Tags"]["Tag"]) == [("env", "staging"), ("team", "core")]
    assert api.call("DescribeDisks", {"RegionId": REGION, "Tag.1.Key": "env", "Tag.1.Value": "prod"})["TotalCount"] == 1

    api.client.untag_resources(m.UntagResourcesRequest(region_id=REGION, resource_type="disk",
                                                       resource_id=[d1], tag_key=["team"]))
    assert _pairs(_list(api, "disk", ids=[d1])) == [("disk", d1, "env", "staging")]
    api.client.untag_resources(m.UntagResourcesRequest(region_id=REGION, resource_type="disk",
                                                       resource_id=[d1, d2], all=True))
    assert _pairs(_list(api, "disk")) == []

    # Snapshots and instances too.
    sid = api.create_snapshot(d1)
    iid = api.run_instance()
    _tag(api, "snapshot", [sid], keep="yes")
    _tag(api, "instance", [iid], role="ci")
    assert _pairs(_list(api, "snapshot")) == [("snapshot", sid, "keep", "yes")]
    assert _pairs(_list(api, "instance")) == [("instance", iid, "role", "ci")]

    # Another account sees none of it and cannot tag it.
    other = server.tenant()
    assert _pairs(_list(other, "disk")) == []
    err = catch(_tag, other, "disk", [d1], x="y")
    assert (err.status, err.code, err.message) == (404, "InvalidResourceId.NotFound",
                                                   "The specified ResourceIds are not found in our records.")


def test_tag_limits_and_errors(server):
    api = server.tenant()
    d1, d2 = api.create_disk(), api.create_disk()
    _tag(api, "disk", [d1], **{f"k{n}": "v" for n in range(19)})
    # 19 + 2 new keys is past 20: refused for both disks, nothing changes (all or none).
    err = catch(_tag, api, "disk", [d2, d1], a="1", b="2")
    assert (err.status, err.code, err.message) == (400, "InvalidTagCount", "The specified tags are beyond the permitted range.")
    assert _pairs(_list(api, "disk", ids=[d2])) == []
    _tag(api, "disk", [d1], k0="changed")  # overwriting stays within 20
    err = catch(_tag, api, "disk", [d1, "d-nosuchdisk"], a="1")
    assert err.code == "InvalidResourceId.NotFound"
    assert ("disk", d1, "a", "1") not in _pairs(_list(api, "disk", ids=[d1])), "all or none"
    err = catch(_tag, api, "volcano", [d1], a="1")
    assert (err.status, err.code, err.message) == (400, "InvalidResourceType.NotFound",
                                                   "The ResourceType provided does not exist in our records.")
    err = catch(_tag, api, "securitygroup", ["sg-1"], a="1")
    assert (err.status, err.code) == (403, "InvalidResourceId.NotSupported")
    err = catch(_tag, api, "disk", [d1], **{"aliyun-x": "1"})
    assert (err.status, err.code) == (400, "InvalidTagKey.Malformed")
    err = catch(api.call, "TagResources", {"RegionId": REGION, "ResourceType": "disk", "Tag.1.Key": "a"})
    assert (err.status, err.code) == (400, "MissingParameter")
    # Pages of 50 resources, by NextToken.
    many = [api.create_disk() for _ in range(51)]
    for i in range(0, 51, 50):
        _tag(api, "disk", many[i:i + 50], batch="x")
    first = _list(api, "disk", tags=[("batch", None)])
    assert len(first["TagResources"]["TagResource"]) == 50 and first["NextToken"]
    second = _list(api, "disk", tags=[("batch", None)], token=first["NextToken"])
    assert len(second["TagResources"]["TagResource"]) == 1 and second["NextToken"] == ""


def test_legacy_sdk_tag_calls(server):
    api = server.tenant()
    did = api.create_disk()
    c = legacy_client(server, api.ak, api.secret)
    legacy_do(c, legacy_request("TagResources", RegionId=REGION, ResourceType="disk",
                                **{"ResourceId.1": did, "Tag.1.Key": "env", "Tag.1.Value": "prod"}))
    body = legacy_do(c, legacy_request("ListTagResources", RegionId=REGION, ResourceType="disk",
                                       **{"ResourceId.1": did}))
    assert _pairs(body) == [("disk", did, "env", "prod")]
    legacy_do(c, legacy_request("UntagResources", RegionId=REGION, ResourceType="disk",
                                **{"ResourceId.1": did, "TagKey.1": "env"}))
    assert _pairs(legacy_do(c, legacy_request("ListTagResources", RegionId=REGION, ResourceType="disk"))) == []
    err = legacy_catch(c, legacy_request("TagResources", RegionId=REGION, ResourceType="disk",
                                         **{"ResourceId.1": "d-missing", "Tag.1.Key": "a"}))
    assert (err.status, err.code) == (404, "InvalidResourceId.NotFound")


def test_older_tag_calls_add_remove_describe(server):
    """AddTags, RemoveTags and DescribeTags (the older single-resource forms), through the
    Tea SDK and the legacy core SDK; they act on the same tags as TagResources."""
    api = server.tenant()
    d1, d2 = api.create_disk(), api.create_disk()
    sid = api.create_snapshot(d1)
    api.client.add_tags(m.AddTagsRequest(region_id=REGION, resource_type="disk", resource_id=d1,
                                         tag=[m.AddTagsRequestTag(key="env", value="prod"),
                                              m.AddTagsRequestTag(key="team", value="core")]))
    c = legacy_client(server, api.ak, api.secret)
    legacy_do(c, legacy_request("AddTags", RegionId=REGION, ResourceType="disk", ResourceId=d2,
                                **{"Tag.1.Key": "env", "Tag.1.Value": "prod"}))
    legacy_do(c, legacy_request("AddTags", RegionId=REGION, ResourceType="snapshot", ResourceId=sid,
                                **{"Tag.1.Key": "env", "Tag.1.Value": "dev"}))
    body = api.client.describe_tags(m.DescribeTagsRequest(region_id=REGION)).body.to_map()
    got = {(t["TagKey"], t["TagValue"]): t["ResourceTypeCount"] for t in body["Tags"]["Tag"]}
    assert body["TotalCount"] == 3 and set(got) == {("env", "dev"), ("env", "prod"), ("team", "core")}
    assert (got[("env", "prod")]["Disk"], got[("env", "prod")]["Snapshot"]) == (2, 0)
    assert (got[("env", "dev")]["Disk"], got[("env", "dev")]["Snapshot"]) == (0, 1)
    # One resource, one type, a filter, and paging.
    one = legacy_do(c, legacy_request("DescribeTags", RegionId=REGION, ResourceType="disk", ResourceId=d2))
    assert [(t["TagKey"], t["TagValue"]) for t in one["Tags"]["Tag"]] == [("env", "prod")]
    snap = api.client.describe_tags(m.DescribeTagsRequest(region_id=REGION, resource_type="snapshot")).body.to_map()
    assert [(t["TagKey"], t["TagValue"]) for t in snap["Tags"]["Tag"]] == [("env", "dev")]
    env = api.client.describe_tags(m.DescribeTagsRequest(
        region_id=REGION, tag=[m.DescribeTagsRequestTag(key="env")])).body.to_map()
    assert env["TotalCount"] == 2
    page2 = api.client.describe_tags(m.DescribeTagsRequest(region_id=REGION, page_size=2, page_number=2)).body.to_map()
    assert (page2["TotalCount"], page2["PageNumber"], page2["PageSize"], len(page2["Tags"]["Tag"])) == (3, 2, 2, 1)
    # RemoveTags: by key; with a value only where it matches.
    legacy_do(c, legacy_request("RemoveTags", RegionId=REGION, ResourceType="disk", ResourceId=d1,
                                **{"Tag.1.Key": "env", "Tag.1.Value": "other"}))
    assert ("disk", d1, "env", "prod") in _pairs(_list(api, "disk", ids=[d1]))
    api.client.remove_tags(m.RemoveTagsRequest(region_id=REGION, resource_type="disk", resource_id=d1,
                                               tag=[m.RemoveTagsRequestTag(key="env")]))
    assert _pairs(_list(api, "disk", ids=[d1])) == [("disk", d1, "team", "core")]
    err = legacy_catch(c, legacy_request("AddTags", RegionId=REGION, ResourceType="disk", ResourceId="d-gone",
                                         **{"Tag.1.Key": "k"}))
    assert (err.status, err.code) == (404, "InvalidResourceId.NotFound")
    assert server.tenant().call("DescribeTags", {"RegionId": REGION})["TotalCount"] == 0


def test_modify_snapshot_attribute(server):
    api = server.tenant()
    sid = api.create_snapshot(api.create_disk())
    api.client.modify_snapshot_attribute(m.ModifySnapshotAttributeRequest(
        snapshot_id=sid, snapshot_name="golden-1", description="the golden state", disable_instant_access=True))
    s = api.snapshot(sid)
    assert (s["SnapshotName"], s["Description"]) == ("golden-1", "the golden state")
    api.call("ModifySnapshotAttribute", {"SnapshotId": sid, "RetentionDays": "7"})
    s = api.snapshot(sid)
    assert (s["SnapshotName"], s["RetentionDays"]) == ("golden-1", 7)
    for params, code in [({"SnapshotName": "auto-x"}, "InvalidParameter"), ({"SnapshotName": "x"}, "InvalidParameter"),
                         ({"Description": "https://x"}, "InvalidDescription.Malformed")]:
        err = catch(api.call, "ModifySnapshotAttribute", {"SnapshotId": sid, **params})
        assert (err.status, err.code) == (400, code), params
    err = catch(server.tenant().call, "ModifySnapshotAttribute", {"SnapshotId": sid, "SnapshotName": "stolen"})
    assert (err.status, err.code) == (404, "InvalidSnapshotId.NotFound")
