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
    # Unnamed attributes stay; a batch by DiskIds.
    other = api.create_disk()
    api.call("ModifyDiskAttribute", {"DiskIds": json.dumps([did, other]), "EnableAutoSnapshot": "true"})
    assert _disk(api, did)["EnableAutoSnapshot"] and _disk(api, other)["EnableAutoSnapshot"]
    assert _disk(api, did)["DiskName"] == "renamed-1"

    err = catch(api.call, "ModifyDiskAttribute", {"DiskId": did})
    assert (err.status, err.code, err.message) == (400, "NoAttributeToModify", "No attribute to be modified in this request.")
    err = catch(api.call, "ModifyDiskAttribute", {"DiskId": did, "DiskName": "1bad"})
    assert (err.status, err.code) == (400, "InvalidDiskName.Malformed")
    err = catch(api.call, "ModifyDiskAttribute", {"DiskId": did, "Description": "http://x"})
    assert (err.status, err.code) == (400, "InvalidDescription.Malformed")
    err = catch(api.call, "ModifyDiskAttribute", {"DiskName": "x1"})
    assert (err.status, err.code) == (400, "MissingParameter")
    # All or none: one unknown disk in the batch changes nothing.
    err = catch(api.call, "ModifyDiskAttribute", {"DiskIds": json.dumps([did, "d-missing"]), "DiskName": "batch-x"})
    assert (err.status, err.code) == (404, "InvalidDiskId.NotFound")
    assert _disk(api, did)["DiskName"] == "renamed-1"
    # Another account's disk does not exist for the caller.
    c = legacy_client(server, *(lambda t: (t.ak, t.secret))(server.tenant()))
    err = legacy_catch(c, legacy_request("ModifyDiskAttribute", DiskId=did, DiskName="stolen"))
    assert (err.status, err.code) == (404, "InvalidDiskId.NotFound")
