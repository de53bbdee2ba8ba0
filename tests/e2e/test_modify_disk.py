"""ModifyDiskAttribute (#9 item 6) through the Tea SDK and the legacy core SDK: name,
description, DeleteWithInstance, DeleteAutoSnapshot and EnableAutoSnapshot, one disk or a
DiskIds batch, all or none, and each reachable error row."""

from __future__ import annotations

import json

from alibabacloud_ecs20140526 import models as m

from support import REGION, catch, legacy_catch, legacy_client, legacy_request


def _disk(api, did):
    return api.call("DescribeDisks", {"RegionId": REGION, "DiskIds": json.dumps([did])})["Disks"]["Disk"][0]


def test_modify_disk_attribute(server):
    api = server.tenant()
    did = api.create_disk()
    d = _disk(api, did)
    assert (d["DeleteAutoSnapshot"], d["EnableAutoSnapshot"], d["DeleteWithInstance"]) == (True, True, False)
    api.client.modify_disk_attribute(m.ModifyDiskAttributeRequest(
        disk_id=did, disk_name="renamed-1", description="now described",
        delete_auto_snapshot=False, enable_auto_snapshot=False, delete_with_instance=True))
    d = _disk(api, did)
    assert (d["DiskName"], d["Description"], d["DeleteAutoSnapshot"], d["EnableAutoSnapshot"],
            d["DeleteWithInstance"]) == ("renamed-1", "now described", False, False, True)
    # Unnamed attributes stay; a batch by DiskIds.N, as the SDK sends it (and as a JSON list).
    other = api.create_disk()
    api.client.modify_disk_attribute(m.ModifyDiskAttributeRequest(disk_ids=[did, other], delete_auto_snapshot=True))
    assert _disk(api, did)["DeleteAutoSnapshot"] and _disk(api, other)["DeleteAutoSnapshot"]
    api.client.modify_disk_attribute(m.ModifyDiskAttributeRequest(disk_ids=[did, other], enable_auto_snapshot=False))
    assert not _disk(api, did)["EnableAutoSnapshot"] and not _disk(api, other)["EnableAutoSnapshot"]
    api.call("ModifyDiskAttribute", {"DiskIds": json.dumps([other]), "DiskName": "json-list"})
    assert _disk(api, other)["DiskName"] == "json-list"
    assert _disk(api, did)["DiskName"] == "renamed-1"
    err = catch(api.call, "ModifyDiskAttribute", {"DiskId": did, "DiskIds.1": other, "DiskName": "both-x"})
    assert (err.status, err.code) == (400, "InvalidParameter"), "DiskId and DiskIds exclude each other"

    err = catch(api.call, "ModifyDiskAttribute", {"DiskId": did})
    assert (err.status, err.code, err.message) == (400, "NoAttributeToModify", "No attribute to be modified in this request.")
    err = catch(api.call, "ModifyDiskAttribute", {"DiskId": did, "DiskName": "1bad"})
    assert (err.status, err.code) == (400, "InvalidDiskName.Malformed")
    err = catch(api.call, "ModifyDiskAttribute", {"DiskId": did, "Description": "http://x"})
    assert (err.status, err.code) == (400, "InvalidDescription.Malformed")
    err = catch(api.call, "ModifyDiskAttribute", {"DiskName": "x1"})
    assert (err.status, err.code) == (400, "MissingParameter")
    # All or none: one unknown disk in the batch changes nothing.
    err = catch(api.client.modify_disk_attribute, m.ModifyDiskAttributeRequest(disk_ids=[did, "d-missing"], disk_name="batch-x"))
    assert (err.status, err.code) == (404, "InvalidDiskId.NotFound")
    assert _disk(api, did)["DiskName"] == "renamed-1"
    # Another account's disk does not exist for the caller.
    c = legacy_client(server, *(lambda t: (t.ak, t.secret))(server.tenant()))
    err = legacy_catch(c, legacy_request("ModifyDiskAttribute", DiskId=did, DiskName="stolen"))
    assert (err.status, err.code) == (404, "InvalidDiskId.NotFound")
