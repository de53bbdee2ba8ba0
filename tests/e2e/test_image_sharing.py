"""CopyImage, ModifyImageSharePermission and DescribeImageSharePermission through the official
SDK (issue 10, item 6), on real bytes: a copy and a shared image boot disks that read the
source's bytes (the store shares the frozen layer, nothing is copied), a copy outlives its
deleted source, and a share is seen, booted from and withdrawn across two tenants."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from alibabacloud_ecs20140526 import models as ecs_models

from nbd_client import nbd_url, qemu_io
from support import REGION, _m, catch, poll, raw_v1

OTHER_REGION = "cn-shanghai"
OTHER_ZONE = "cn-shanghai-e"


def golden_image(server, api) -> tuple[str, str]:
    """A custom image whose 20 GiB disk holds 0xa5 at 0 and 0x3c at 10 MiB: (image, snapshot)."""
    iid = api.run_instance(data_disks=[{"size": 20}])
    (did,) = api.data_disk_ids(iid)
    api.wait_disk(did, "In_use")
    qemu_io(nbd_url(server.nbd_port, did), "write -P 0xa5 0 64k", "write -P 0x3c 10M 1M")
    sid = api.create_snapshot(did)
    return api.create_image(sid, "golden"), sid


def reads_golden(server, api, iid: str, region: str = REGION):
    """The system disk of `iid` (Running, in `region`) reads the golden bytes."""
    def system():
        return api.disks(region=region, instance_id=iid, disk_type="system")["Disks"]["Disk"]
    (d,) = poll(system, lambda ds: len(ds) == 1 and ds[0]["Status"] == "In_use", what="system disk In_use")
    did = d["DiskId"]
    qemu_io(nbd_url(server.nbd_port, did), "read -P 0xa5 0 64k", "read -P 0x3c 10M 1M", read_only=True)
    return did


def copy(api, image_id: str, region: str = REGION, **kw) -> str:
    return _m(api.client.copy_image(ecs_models.CopyImageRequest(region_id=region, image_id=image_id, **kw)))["ImageId"]


def image(api, image_id: str, region: str = REGION, **kw) -> dict | None:
    found = api.images(region=region, image_id=image_id, status="Creating,Available,CreateFailed", **kw)
    return (found["Images"]["Image"] or [None])[0]


def wait_available(api, image_id: str, region: str = REGION) -> dict:
    return poll(lambda: image(api, image_id, region), lambda i: i and i["Status"] == "Available",
                what=f"{image_id} Available")


def share(api, image_id: str, add=None, remove=None, **kw):
    return api.client.modify_image_share_permission(ecs_models.ModifyImageSharePermissionRequest(
        region_id=REGION, image_id=image_id, add_account=add, remove_account=remove, **kw))


def shares(api, image_id: str, **kw) -> dict:
    return _m(api.client.describe_image_share_permission(ecs_models.DescribeImageSharePermissionRequest(
        region_id=REGION, image_id=image_id, **kw)))


def err(fn, *a, **kw):
    e = catch(fn, *a, **kw)
    return (e.status, e.code, e.message)


def test_copy_within_and_across_regions_shares_bytes_and_outlives_its_source(server, tenant):
    api = tenant
    src, sid = golden_image(server, api)
    same = copy(api, src, destination_image_name="same-region", destination_description="a copy here",
                tag=[ecs_models.CopyImageRequestTag(key="env", value="prod")])
    far = copy(api, src, destination_region_id=OTHER_REGION, destination_image_name="far")
    assert len({src, same, far}) == 3

    i = wait_available(api, same)
    assert (i["ImageName"], i["Description"], i["IsCopied"], i["ImageOwnerAlias"]) == (
        "same-region", "a copy here", True, "self")
    assert i["Tags"]["Tag"] == [{"TagKey": "env", "TagValue": "prod"}]
    assert i["ImageOwnerId"] == int(api.account_id)
    copy_snap = i["DiskDeviceMappings"]["DiskDeviceMapping"][0]["SnapshotId"]
    assert copy_snap != sid
    snap = api.snapshot(copy_snap)
    assert (snap["SourceSnapshotId"], snap["Usage"]) == (sid, "image")
    f = wait_available(api, far, OTHER_REGION)
    assert f["ImageName"] == "far" and image(api, far) is None
    assert api.images(image_owner_alias="self", tag=[ecs_models.DescribeImagesRequestTag(key="env", value="prod")]
                      )["Images"]["Image"][0]["ImageId"] == same

    # The source goes, image and snapshot: both copies still boot the same bytes.
    api.delete_image(src)
    api.client.delete_snapshot(ecs_models.DeleteSnapshotRequest(snapshot_id=sid, force=True))
    assert api.snapshot(sid) is None
    iid = api.run_instance(image=same)
    reads_golden(server, api, iid)
    (far_iid,) = api.run_instances(image=far, region=OTHER_REGION, zone=OTHER_ZONE, wait=False)
    poll(lambda: api.instance(far_iid, region=OTHER_REGION), lambda i: i["Status"] == "Running", what="running")
    reads_golden(server, api, far_iid, OTHER_REGION)

    # A copy of a copy, and ReplaceSystemDisk from one.
    again = copy(api, same)
    wait_available(api, again)
    api.stop(iid)
    new_disk = _m(api.client.replace_system_disk(ecs_models.ReplaceSystemDiskRequest(
        instance_id=iid, image_id=again)))["DiskId"]
    api.wait_disk(new_disk, "In_use")
    api.start(iid)
    reads_golden(server, api, iid)


def test_copy_shows_creating_then_available_and_its_errors(server, tenant):
    api = tenant
    src, _ = golden_image(server, api)
    with server.timings(SnapshotMs=2500):
        slow = copy(api, src)
        i = image(api, slow)
        assert i["Status"] == "Creating" and i["Progress"] != "100%", i
        assert api.images(image_id=slow)["Images"]["Image"] == [], "Status defaults to Available"
        assert err(api.client.copy_image, ecs_models.CopyImageRequest(region_id=REGION, image_id=slow)) == (
            400, "IncorrectImageStatus", "The image not available.")
        assert err(api.delete_image, slow) == (403, "OperationDenied.ImageCopying", "The Image is coping.")
        other = server.tenant()
        assert err(share, api, slow, add=[other.account_id]) == (
            400, "IncorrectImageStatus", "The image is not available.")
        i = poll(lambda: image(api, slow), lambda i: i["Status"] == "Available", timeout=10, what="copy done")
        assert i["Progress"] == "100%"

    def refused(**kw):
        return err(api.client.copy_image, ecs_models.CopyImageRequest(region_id=REGION, **kw))

    not_found = (404, "InvalidImageId.NotFound", "The specified ImageId does not exist.")
    assert refused(image_id="m-doesnotexist0000000") == not_found
    assert refused(image_id="blank_x64_20G.vhd") == not_found, "public images are not copied"
    stranger = server.tenant()
    assert err(stranger.client.copy_image, ecs_models.CopyImageRequest(region_id=REGION, image_id=src)) == not_found
    assert refused(image_id=src, destination_region_id="xx-nowhere-1") == (
        400, "DestinationRegion.NotFound", "The destination region not found")
    assert refused(image_id=src, destination_image_name="aliyun-copy") == (
        400, "InvalidImageName.Malformed", "The specified destination Image name is wrongly formed.")
    assert refused(image_id=src, destination_description="http://x") == (
        400, "InvalidDescription.Malformed", "The specified destination description is wrongly formed.")
    assert refused(image_id=src, kmskey_id="key-1") == (
        400, "InvalidParameter.EncryptedIllegal",
        "The specified parameter Encrypted must be true when kmsKeyId is not empty.")
    assert refused(image_id=src, encrypted=True, kmskey_id="no-such-key")[:2] == (
        404, "InvalidParameter.KMSKeyId.NotFound")
    assert refused(image_id=src, dry_run=True)[:2] == (400, "DryRunOperation")
    assert err(api.client.copy_image, ecs_models.CopyImageRequest(region_id="xx-nowhere-1", image_id=src))[:2] == (
        400, "InvalidRegionId.MalFormed")

    # ClientToken: the same token and parameters answer the first copy.
    a = copy(api, src, client_token="copy-once-1")
    assert copy(api, src, client_token="copy-once-1") == a


def test_share_unshare_between_two_tenants(server):
    owner, sharee, third = server.tenant(), server.tenant(), server.tenant()
    src, sid = golden_image(server, owner)

    # Not shared yet: invisible and unusable to the other account.
    assert image(sharee, src) is None
    assert err(sharee.run_instances, image=src)[:2] == (404, "InvalidImageId.NotFound")

    share(owner, src, add=[sharee.account_id, third.account_id])
    share(owner, src, add=[sharee.account_id])  # again: still one share
    got = shares(owner, src)
    assert (got["ImageId"], got["RegionId"], got["TotalCount"], got["PageNumber"], got["PageSize"]) == (
        src, REGION, 2, 1, 10)
    assert sorted(a["AliyunId"] for a in got["Accounts"]["Account"]) == sorted([sharee.account_id, third.account_id])
    assert all(a["SharedTime"].endswith("Z") for a in got["Accounts"]["Account"])
    assert got["ShareGroups"]["ShareGroup"] == []
    page1, page2 = (shares(owner, src, page_number=n, page_size=1) for n in (1, 2))
    assert page2["TotalCount"] == 2 and page2["PageNumber"] == 2
    assert {page1["Accounts"]["Account"][0]["AliyunId"], page2["Accounts"]["Account"][0]["AliyunId"]} == {
        sharee.account_id, third.account_id}

    mine = image(owner, src)
    assert (mine["ImageOwnerAlias"], mine["IsSelfShared"]) == ("self", "True")
    seen = sharee.images(image_owner_alias="others")["Images"]["Image"]
    assert [i["ImageId"] for i in seen] == [src]
    assert (seen[0]["ImageOwnerAlias"], seen[0]["ImageOwnerId"], seen[0]["IsSelfShared"]) == (
        "others", int(owner.account_id), "False")
    assert src in {i["ImageId"] for i in sharee.images()["Images"]["Image"]}, "the default lists shared images"
    assert src not in {i["ImageId"] for i in sharee.images(image_owner_alias="self")["Images"]["Image"]}
    assert sharee.images(image_owner_alias="others", image_owner_id=int(third.account_id))["Images"]["Image"] == []
    assert sharee.images(image_owner_alias="others", image_owner_id=int(owner.account_id))["Images"]["Image"]

    # The sharee boots from it (a clone of the same bytes) and writes its own disk.
    iid = sharee.run_instance(image=src)
    did = reads_golden(server, sharee, iid)
    qemu_io(nbd_url(server.nbd_port, did), "write -P 0x11 0 64k")
    created = sharee.create_instance(image=src)
    assert sharee.instance(created)["ImageId"] == src

    # ... may copy it within its region (the copy is its own), not to another one ...
    own_copy = copy(sharee, src, destination_image_name="mine-now")
    wait_available(sharee, own_copy)
    assert err(sharee.client.copy_image, ecs_models.CopyImageRequest(
        region_id=REGION, image_id=src, destination_region_id=OTHER_REGION)) == (
        403, "OperationDenied.SameRegionOnly",
        "The image shared from others can not be copied to another region directly.")

    # ... and cannot delete it, share it on or see who it is shared with.
    not_found = (404, "InvalidImageId.NotFound", "The specified ImageId does not exist.")
    assert err(sharee.delete_image, src) == not_found
    assert err(share, sharee, src, add=[third.account_id]) == not_found
    assert err(shares, sharee, src) == not_found

    # The owner may not delete it while shared, except with Force.
    assert err(owner.delete_image, src) == (403, "ImageUseShared", "The specified image has been shared to others.")

    # Unsharing hides it again for new instances; the disks made stay (their own bytes).
    share(owner, src, remove=[sharee.account_id])
    assert [a["AliyunId"] for a in shares(owner, src)["Accounts"]["Account"]] == [third.account_id]
    assert image(sharee, src) is None
    assert err(sharee.run_instances, image=src)[:2] == (404, "InvalidImageId.NotFound")
    qemu_io(nbd_url(server.nbd_port, did), "read -P 0x11 0 64k", "read -P 0x3c 10M 1M", read_only=True)
    sharee.stop(iid)
    assert err(sharee.client.re_init_disk, ecs_models.ReInitDiskRequest(disk_id=did))[:2] == (
        404, "InvalidDiskId.OperationNotSupported")
    reads_golden(server, sharee, sharee.run_instance(image=own_copy))

    owner.delete_image(src, force=True)
    assert image(third, src) is None and image(owner, src) is None


def test_share_errors_and_limits(server):
    owner, other = server.tenant(), server.tenant()
    src, _ = golden_image(server, owner)

    def refused(**kw):
        return err(share, owner, src, **kw)

    assert refused(add=[owner.account_id]) == (404, "InvalidAccount.Forbbiden", "The specified Account does not yourself.")
    missing = (404, "InvalidAccount.NotFound",
               'The specified parameter "AddAccount.n" or "RemoveAccount.n" does not exist.')
    assert refused(add=["1234567890123456"]) == missing
    assert refused(remove=["1234567890123456"]) == missing
    assert refused(add=[other.account_id], is_public=True)[:2] == (400, "InvalidParameter")
    assert refused(add=[other.account_id], dry_run=True)[:2] == (400, "DryRunOperation")
    assert shares(owner, src)["TotalCount"] == 0, "refusals and dry runs change nothing"
    assert err(share, owner, "m-doesnotexist0000000", add=[other.account_id]) == (
        404, "InvalidImageId.NotFound", "The specified ImageId does not exist.")
    assert err(share, owner, "blank_x64_20G.vhd", add=[other.account_id])[:2] == (404, "InvalidImageId.NotFound")
    assert err(shares, owner, "m-doesnotexist0000000")[:2] == (404, "InvalidImageId.NotFound")
    assert err(shares, owner, src, page_size=101)[:2] == (400, "InvalidParameter")

    # Ten accounts per call at most (the rest are ignored), fifty per image.
    accounts = [server.tenant().account_id for _ in range(51)]
    owner.call("ModifyImageSharePermission", {"RegionId": REGION, "ImageId": src, **{
        f"AddAccount.{n + 1}": a for n, a in enumerate(accounts[:12])}})
    got = shares(owner, src, page_size=100)
    assert sorted(a["AliyunId"] for a in got["Accounts"]["Account"]) == sorted(accounts[:10])
    for start in range(10, 50, 10):
        share(owner, src, add=accounts[start:start + 10])
    assert shares(owner, src)["TotalCount"] == 50
    assert refused(add=[accounts[50]]) == (403, "QuotaExceed.ShareImageUser", "The shared Image user Quota exceeds.")
    share(owner, src, add=[accounts[50]], remove=[accounts[0]])
    assert shares(owner, src)["TotalCount"] == 50


def test_xml_shapes_of_copy_and_share_permission(server, tenant):
    src, _ = golden_image(server, tenant)
    other = server.tenant()
    share(tenant, src, add=[other.account_id])

    def xml(action, params):
        r = raw_v1(server, action, params, ak=tenant.ak, secret=tenant.secret, fmt="XML")
        assert r.status == 200, r.text
        root = ET.fromstring(r.body)
        assert root.tag == f"{action}Response" and root.findtext("RequestId")
        return root

    root = xml("DescribeImageSharePermission", {"RegionId": REGION, "ImageId": src})
    assert root.findtext("ImageId") == src and root.findtext("RegionId") == REGION
    assert (root.findtext("TotalCount"), root.findtext("PageNumber"), root.findtext("PageSize")) == ("1", "1", "10")
    assert [a.findtext("AliyunId") for a in root.findall("./Accounts/Account")] == [other.account_id]
    assert root.find("./ShareGroups") is not None and root.findall("./ShareGroups/ShareGroup") == []
    root = xml("CopyImage", {"RegionId": REGION, "ImageId": src})
    assert root.findtext("ImageId", "").startswith("m-")
    root = xml("DescribeImages", {"RegionId": REGION, "ImageId": src})
    img = root.find("./Images/Image")
    assert (img.findtext("IsSelfShared"), img.findtext("ImageOwnerId"), img.findtext("IsCopied")) == (
        "True", tenant.account_id, "false")
