"""Issue 9's new actions through the official SDKs: each reachable error row (HTTP status and
code) through the Tea SDK, ModifyDiskSpec's and DescribeTasks' states and fields, the policy
calls not covered elsewhere (Modify, Cancel), and the tag and snapshot-group calls through the
legacy core SDK (aliyun-python-sdk-core with aliyun-python-sdk-ecs request classes)."""

from __future__ import annotations

import json

import pytest

from support import REGION, catch, legacy_catch, legacy_client, legacy_do, legacy_request, poll


def err(api, action, **query):
    e = catch(api.call, action, {k: v for k, v in query.items() if v is not None})
    return (e.status, e.code)


@pytest.fixture()
def slow_server(make_server):
    """Snapshots stay `progressing` for 30 s here, so the rows about one under way are reachable."""
    return make_server("slow-snapshots", timings={"DiskMs": 50, "InstanceMs": 50, "SnapshotMs": 30000})


def test_snapshot_group_and_reset_disks_error_rows(server, tenant):
    api = tenant
    iid = api.run_instance(data_disks=[{"size": 20}])
    (did,) = api.data_disk_ids(iid)
    api.wait_disk(did, "In_use")
    other = api.create_disk()
    R = REGION
    assert err(api, "CreateSnapshotGroup", RegionId=R) == (400, "MissingParameter")
    assert err(api, "CreateSnapshotGroup", RegionId=R, InstanceId="i-nope") == (404, "InvalidInstanceId.NotFound")
    assert err(api, "CreateSnapshotGroup", RegionId=R, InstanceId=iid, **{"DiskId.1": other}) == (
        404, "InvalidDiskId.NotFound")
    sysd = api.system_disk(iid)["DiskId"]
    assert err(api, "CreateSnapshotGroup", RegionId=R, InstanceId=iid,
               **{"ExcludeDiskId.1": sysd, "ExcludeDiskId.2": did}) == (400, "InvalidParameter")
    assert err(api, "CreateSnapshotGroup", RegionId=R, InstanceId=iid, Name="auto-x") == (400, "InvalidParameter")
    assert err(api, "DescribeSnapshotGroups", RegionId=R, **{"Status.1": "done"}) == (400, "InvalidParameter")
    assert err(api, "DescribeSnapshotGroups", RegionId=R, NextToken="forged") == (400, "InvalidParameter")
    assert err(api, "DeleteSnapshotGroup", RegionId=R, SnapshotGroupId="ssg-nope") == (
        404, "InvalidSnapshotGroupId.NotFound")
    sid = api.create_snapshot(did)
    pair = {"Disk.1.DiskId": did, "Disk.1.SnapshotId": sid}
    assert err(api, "ResetDisks", RegionId=R) == (400, "MissingParameter")
    assert err(api, "ResetDisks", RegionId=R, **pair) == (403, "IncorrectInstanceStatus")
    api.stop(iid)
    assert err(api, "ResetDisks", RegionId=R, **pair, DryRun="true") == (400, "DryRunOperation")
    assert err(api, "ResetDisks", RegionId=R, **{"Disk.1.DiskId": did, "Disk.1.SnapshotId": "s-nope"}) == (
        404, "InvalidSnapshotId.NotFound")


def test_rows_about_a_snapshot_under_way(slow_server):
    api = slow_server.tenant()
    iid = api.run_instance(data_disks=[{"size": 20}])
    (did,) = api.data_disk_ids(iid)
    api.wait_disk(did, "In_use")
    sid = api.create_snapshot(did, wait=False)
    assert err(api, "CreateSnapshotGroup", RegionId=REGION, InstanceId=iid) == (
        403, "IncorrectDiskStatus.CreatingSnapshot")
    assert err(api, "CopySnapshot", RegionId=REGION, SnapshotId=sid, DestinationRegionId=REGION) == (
        403, "InvalidSnapshotId.NotReady")


def test_policy_copy_replace_spec_and_task_error_rows(server, tenant):
    api = tenant
    R = REGION
    iid = api.run_instance(data_disks=[{"size": 20}])
    (did,) = api.data_disk_ids(iid)
    api.wait_disk(did, "In_use")
    ok = {"regionId": R, "timePoints": '["1"]', "repeatWeekdays": '["1"]', "retentionDays": "1"}
    assert err(api, "CreateAutoSnapshotPolicy", **{**ok, "timePoints": '["24"]'}) == (400, "InvalidParameter")
    assert err(api, "CreateAutoSnapshotPolicy", **{**ok, "retentionDays": "0"}) == (400, "InvalidParameter")
    assert err(api, "CreateAutoSnapshotPolicy", regionId=R, timePoints='["1"]') == (400, "MissingParameter")
    nf = (403, "ParameterInvalid")
    assert err(api, "ModifyAutoSnapshotPolicyEx", regionId=R, autoSnapshotPolicyId="sp-nope") == nf
    assert err(api, "DeleteAutoSnapshotPolicy", regionId=R, autoSnapshotPolicyId="sp-nope") == nf
    assert err(api, "ApplyAutoSnapshotPolicy", regionId=R, autoSnapshotPolicyId="sp-nope",
               diskIds=json.dumps([did])) == nf
    sp = api.call("CreateAutoSnapshotPolicy", {**ok, "autoSnapshotPolicyName": "weekly"})["AutoSnapshotPolicyId"]
    assert err(api, "ApplyAutoSnapshotPolicy", regionId=R, autoSnapshotPolicyId=sp,
               diskIds=json.dumps(["d-nope"])) == (403, "ParameterInvalid")
    assert err(api, "CancelAutoSnapshotPolicy", regionId=R, diskIds=json.dumps(["d-nope"])) == (
        403, "ParameterInvalid")
    api.call("ApplyAutoSnapshotPolicy", {"regionId": R, "autoSnapshotPolicyId": sp, "diskIds": json.dumps([did])})
    api.call("ModifyAutoSnapshotPolicyEx", {"regionId": R, "autoSnapshotPolicyId": sp, "retentionDays": "30",
                                            "repeatWeekdays": '["6","7"]'})
    p = api.call("DescribeAutoSnapshotPolicyEx", {"RegionId": R, "AutoSnapshotPolicyId": sp})
    p = p["AutoSnapshotPolicies"]["AutoSnapshotPolicy"][0]
    assert (p["RetentionDays"], p["RepeatWeekdays"], p["DiskNums"], p["AutoSnapshotPolicyName"]) == (
        30, '["6","7"]', 1, "weekly")
    api.call("CancelAutoSnapshotPolicy", {"regionId": R, "diskIds": json.dumps([did])})
    assert api.disk(did)["EnableAutomatedSnapshotPolicy"] is False

    # CopySnapshot.
    assert err(api, "CopySnapshot", RegionId=R, SnapshotId="s-nope", DestinationRegionId=R) == (
        404, "InvalidSnapshotId.NotFound")
    sid = api.create_snapshot(did)
    assert err(api, "CopySnapshot", RegionId=R, SnapshotId=sid, DestinationRegionId="mars-1") == (
        400, "InvalidParameter")
    assert err(api, "CopySnapshot", RegionId=R, SnapshotId=sid) == (400, "MissingParameter")

    # ReplaceSystemDisk.
    assert err(api, "ReplaceSystemDisk", InstanceId=iid, ImageId="blank_x64_20G.vhd") == (
        403, "IncorrectInstanceStatus")
    api.stop(iid)
    assert err(api, "ReplaceSystemDisk", InstanceId=iid, ImageId="m-nope") == (404, "InvalidImageId.NotFound")
    assert err(api, "ReplaceSystemDisk", InstanceId=iid, ImageId="blank_x64_20G.vhd",
               **{"SystemDisk.Size": "10"}) == (403, "InvalidDiskSize.TooSmall")
    assert err(api, "ReplaceSystemDisk", InstanceId="i-nope", ImageId="blank_x64_20G.vhd") == (
        404, "InvalidInstanceId.NotFound")
    new = api.call("ReplaceSystemDisk", {"InstanceId": iid, "ImageId": "blank_x64_20G.vhd"})["DiskId"]
    assert api.system_disk(iid)["DiskId"] == new

    # ModifyDiskSpec, its task, DescribeTasks and DescribeTaskAttribute.
    assert err(api, "ModifyDiskSpec", DiskId=did, PerformanceLevel="PL2") == (400, "InvalidParameter")
    assert err(api, "ModifyDiskSpec", DiskId=did, DiskCategory="local_ssd_pro") == (
        400, "InvalidDiskCategory.ValueNotSupported")
    assert err(api, "ModifyDiskSpec", DiskId="d-nope", PerformanceLevel="PL0") == (404, "InvalidDiskId.NotFound")
    assert err(api, "ModifyDiskSpec", DiskId=did) == (400, "MissingParameter")
    assert err(api, "ModifyDiskSpec", DiskId=did, PerformanceLevel="PL0", DryRun="true") == (400, "DryRunOperation")
    task = api.call("ModifyDiskSpec", {"DiskId": did, "PerformanceLevel": "PL0"})["TaskId"]
    assert api.disk(did)["PerformanceLevel"] == "PL0"
    tasks = api.call("DescribeTasks", {"RegionId": R, "TaskIds": task})["TaskSet"]["Task"]
    assert [(t["TaskId"], t["TaskAction"], t["TaskStatus"], t["ResourceId"]) for t in tasks] == [
        (task, "ModifyDiskSpec", "Finished", did)]
    attr = api.call("DescribeTaskAttribute", {"RegionId": R, "TaskId": task})
    assert (attr["TaskStatus"], attr["SuccessCount"], attr["FailedCount"]) == ("Finished", 1, 0)
    assert err(api, "DescribeTaskAttribute", RegionId=R, TaskId="t-nope") == (404, "InvalidTaskId.NotFound")
    assert err(api, "DescribeTasks", RegionId=R, TaskStatus="Done") == (400, "InvalidParameter")


def test_tag_and_group_calls_through_the_legacy_core_sdk(server, tenant):
    api = tenant
    c = legacy_client(server, api.ak, api.secret)
    iid = api.run_instance(data_disks=[{"size": 20}])
    (did,) = api.data_disk_ids(iid)
    api.wait_disk(did, "In_use")
    legacy_do(c, legacy_request("TagResources", RegionId=REGION, ResourceType="disk",
                                **{"ResourceId.1": did, "Tag.1.Key": "env", "Tag.1.Value": "ci"}))
    listed = legacy_do(c, legacy_request("ListTagResources", RegionId=REGION, ResourceType="disk",
                                         **{"ResourceId.1": did}))
    assert [(t["TagKey"], t["TagValue"]) for t in listed["TagResources"]["TagResource"]] == [("env", "ci")]
    legacy_do(c, legacy_request("AddTags", RegionId=REGION, ResourceType="disk", ResourceId=did,
                                **{"Tag.1.Key": "team", "Tag.1.Value": "storage"}))
    tags = legacy_do(c, legacy_request("DescribeTags", RegionId=REGION, ResourceType="disk", ResourceId=did))
    assert {(t["TagKey"], t["TagValue"]) for t in tags["Tags"]["Tag"]} == {("env", "ci"), ("team", "storage")}
    legacy_do(c, legacy_request("UntagResources", RegionId=REGION, ResourceType="disk",
                                **{"ResourceId.1": did, "TagKey.1": "env"}))
    legacy_do(c, legacy_request("RemoveTags", RegionId=REGION, ResourceType="disk", ResourceId=did,
                                **{"Tag.1.Key": "team", "Tag.1.Value": "storage"}))
    assert api.disk(did)["Tags"]["Tag"] == []
    e = legacy_catch(c, legacy_request("TagResources", RegionId=REGION, ResourceType="disk",
                                       **{"ResourceId.1": did, "Tag.1.Key": "acs:x", "Tag.1.Value": "v"}))
    assert e.status == 400

    body = legacy_do(c, legacy_request("CreateSnapshotGroup", RegionId=REGION, InstanceId=iid,
                                       **{"DiskId.1": did}))
    gid = body["SnapshotGroupId"]

    def group():
        r = legacy_do(c, legacy_request("DescribeSnapshotGroups", RegionId=REGION, **{"SnapshotGroupId.1": gid}))
        return r["SnapshotGroups"]["SnapshotGroup"][0]

    g = poll(group, lambda g: g["Status"] == "accomplished", what="group")
    sid = g["Snapshots"]["Snapshot"][0]["SnapshotId"]
    e = legacy_catch(c, legacy_request("ResetDisks", RegionId=REGION,
                                       **{"Disk.1.DiskId": did, "Disk.1.SnapshotId": sid}))
    assert (e.status, e.code) == (403, "IncorrectInstanceStatus")
    api.stop(iid)
    out = legacy_do(c, legacy_request("ResetDisks", RegionId=REGION,
                                      **{"Disk.1.DiskId": did, "Disk.1.SnapshotId": sid}))
    assert out["OperationProgressSet"]["OperationProgress"][0]["OperationStatus"] == "Success"
    api.wait_disk(did, "In_use")
    legacy_do(c, legacy_request("DeleteSnapshotGroup", RegionId=REGION, SnapshotGroupId=gid))
    e = legacy_catch(c, legacy_request("DeleteSnapshotGroup", RegionId=REGION, SnapshotGroupId=gid))
    assert (e.status, e.code) == (404, "InvalidSnapshotGroupId.NotFound")
