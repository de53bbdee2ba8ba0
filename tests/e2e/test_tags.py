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
