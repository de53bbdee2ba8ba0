"""Wire protocol: signatures (V1 HMAC-SHA1 and ACS3), replay, clock skew, keys, actions, versions,
formats, HTTP methods, tenant isolation, the legacy SDK and the admin interface's authentication."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET

import pytest

from support import (
    BOOT_AK,
    BOOT_SECRET,
    EMPTY_SHA256,
    MSG,
    Api,
    catch,
    expect_error,
    http,
    legacy_catch,
    legacy_client,
    legacy_do,
    legacy_request,
    make_rig,
    pct,
    raw_v1,
    raw_v3,
    row,
    sign_v1,
    utc_now,
    v1_string_to_sign,
    v3_authorization,
)

ERROR_FIELDS = {"RequestId", "HostId", "Code", "Message", "Recommend"}


def assert_json_error(resp, status, code, message=None):
    assert resp.status == status, (resp.status, resp.text)
    body = resp.json()
    assert ERROR_FIELDS <= set(body), body
    assert body["Code"] == code, body
    if message is not None:
        assert body["Message"] == message, body
    assert body["RequestId"]
    return body


# ----------------------------------------------------------------------------------------------
# the test's own signers agree with the documented vectors (guards the helpers, no server needed)


def test_v1_signer_vectors():
    a = {"Timestamp": "2016-02-23T12:46:24Z", "Format": "XML", "AccessKeyId": "testid",
         "Action": "DescribeRegions", "SignatureMethod": "HMAC-SHA1",
         "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf", "Version": "2014-05-26",
         "SignatureVersion": "1.0"}
    assert v1_string_to_sign("GET", a).startswith("GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions")
    assert sign_v1("GET", a, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
    b = {"Action": "ResetDisk", "Format": "JSON", "Version": "2014-05-26", "AccessKeyId": "testid",
         "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
         "SignatureNonce": "0123456789abcdef0123456789abcdef", "Timestamp": "2024-01-01T00:00:00Z",
         "DiskId": "d-bp199lyny9b3xxxx", "SnapshotId": "s-bp199lyny9b3xxxx"}
    assert sign_v1("GET", b, "testsecret") == "M7kEr82as9wQWNo70cWp0g20pYc="
    assert sign_v1("POST", b, "testsecret") == "Zu5GOBvJaCf0GhUQLMeqM21sYAU="
    assert pct("a b*~") == "a%20b%2A~"


def test_v3_signer_vector():
    headers = {"host": "ecs.cn-hangzhou.aliyuncs.com", "x-acs-action": "ResetDisk",
               "x-acs-version": "2014-05-26", "x-acs-date": "2024-01-01T00:00:00Z",
               "x-acs-signature-nonce": "0123456789abcdef0123456789abcdef",
               "x-acs-content-sha256": EMPTY_SHA256}
    auth = v3_authorization("POST", {"DiskId": "d-bp199lyny9b3xxxx", "SnapshotId": "s-bp199lyny9b3xxxx"},
                            headers, EMPTY_SHA256, "testid", "testsecret")
    assert auth == ("ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;x-acs-action;x-acs-content-sha256;"
                    "x-acs-date;x-acs-signature-nonce;x-acs-version,"
                    "Signature=c0bb1fc3c1ae38d652aff5f83085504af11aa4a738efa1987a4274be3661adc5")


# ----------------------------------------------------------------------------------------------
# request shapes


@pytest.mark.parametrize("method,in_body", [("GET", False), ("POST", False), ("POST", True)],
                         ids=["GET-query", "POST-query", "POST-form-body"])
def test_v1_methods_and_body(server, method, in_body):
    r = raw_v1(server, "DescribeRegions", method=method, in_body=in_body)
    assert r.status == 200, r.text
    body = r.json()
    assert "Code" not in body and body["RequestId"]
    assert {x["RegionId"] for x in body["Regions"]["Region"]} >= {"cn-hangzhou", "cn-shanghai"}


def test_v1_post_params_split_between_query_and_body(server):
    from support import v1_params

    p = v1_params("DescribeZones", {"RegionId": "cn-shanghai"}, BOOT_AK)
    p["Signature"] = sign_v1("POST", p, BOOT_SECRET)
    keys = list(p)
    q = {k: p[k] for k in keys[: len(keys) // 2]}
    b = {k: p[k] for k in keys[len(keys) // 2:]}
    qs = "&".join(f"{pct(k)}={pct(v)}" for k, v in q.items())
    bs = "&".join(f"{pct(k)}={pct(v)}" for k, v in b.items())
    status, _h, body = http("POST", f"{server.endpoint}/?{qs}", bs.encode(),
                            {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, body
    assert {z["ZoneId"] for z in json.loads(body)["Zones"]["Zone"]} >= {"cn-shanghai-e", "cn-shanghai-f"}


def test_v3_raw_request(server):
    r = raw_v3(server, "DescribeZones", {"RegionId": "cn-hangzhou"})
    assert r.status == 200, r.text
    assert {z["ZoneId"] for z in r.json()["Zones"]["Zone"]} >= {"cn-hangzhou-h", "cn-hangzhou-i"}


def test_special_characters_round_trip(server, sig_tenant):
    """Encoding rules (notes §8.3): a name with Unicode letters, ':' '.' '_' '-' is stored as sent, and
    filter values with space, '*', '!', quotes, parentheses and '~' verify under both signatures."""
    name = "数据盘:v1.0_a-b"
    did = sig_tenant.create_disk(size=20, name=name)
    assert sig_tenant.disk(did)["DiskName"] == name
    odd = "x y*z!'()~é"
    # the signature over these values verifies (the DiskName filter itself is not asserted here)
    sig_tenant.disks(disk_name=odd)
    sig_tenant.disks(disk_ids=json.dumps([did]), disk_name=name)
    for method, in_body in (("GET", False), ("POST", True)):
        r = raw_v1(server, "DescribeDisks", {"RegionId": "cn-hangzhou", "DiskIds": json.dumps([did]),
                                             "Description": odd},
                   ak=sig_tenant.ak, secret=sig_tenant.secret, method=method, in_body=in_body)
        assert r.status == 200, r.text
        assert r.json()["Disks"]["Disk"][0]["DiskName"] == name
        r = raw_v1(server, "DescribeDisks", {"RegionId": "cn-hangzhou", "DiskName": odd},
                   ak=sig_tenant.ak, secret=sig_tenant.secret, method=method, in_body=in_body)
        assert r.status == 200, r.text


# ----------------------------------------------------------------------------------------------
# replay and clock skew


def test_replayed_nonce_v1(server):
    nonce = uuid.uuid4().hex
    assert raw_v1(server, "DescribeRegions", nonce=nonce).status == 200
    r = raw_v1(server, "DescribeRegions", nonce=nonce)
    assert_json_error(r, 400, "SignatureNonceUsed", MSG["SignatureNonceUsed"])
    # also when the replay is a different request with the same nonce
    r = raw_v1(server, "DescribeZones", {"RegionId": "cn-hangzhou"}, nonce=nonce, method="POST", in_body=True)
    assert_json_error(r, 400, "SignatureNonceUsed", MSG["SignatureNonceUsed"])


def test_rejected_request_does_not_burn_nonce(server):
    """A request refused for its signature must not consume the nonce (else anyone could burn
    nonces); the nonce is only recorded for authenticated requests."""
    nonce = uuid.uuid4().hex
    r = raw_v1(server, "DescribeRegions", nonce=nonce, secret="wrong")
    assert_json_error(r, 400, "SignatureDoesNotMatch")
    assert raw_v1(server, "DescribeRegions", nonce=nonce).status == 200


def test_replayed_nonce_v3(server):
    nonce = uuid.uuid4().hex
    assert raw_v3(server, "DescribeRegions", nonce=nonce).status == 200
    r = raw_v3(server, "DescribeRegions", nonce=nonce)
    assert_json_error(r, 400, "SignatureNonceUsed", MSG["SignatureNonceUsed"])


@pytest.mark.parametrize("offset_min", [-16, 16, -60 * 24])
def test_timestamp_expired_v1(server, offset_min):
    r = raw_v1(server, "DescribeRegions", timestamp=utc_now(offset_min * 60))
    assert_json_error(r, 400, "InvalidTimeStamp.Expired", MSG["InvalidTimeStamp.Expired"])


@pytest.mark.parametrize("offset_min", [-16, 16])
def test_date_expired_v3(server, offset_min):
    r = raw_v3(server, "DescribeRegions", date=utc_now(offset_min * 60))
    assert_json_error(r, 400, "InvalidTimeStamp.Expired", MSG["InvalidTimeStamp.Expired"])


@pytest.mark.parametrize("offset_min", [-14, 14])
def test_small_skew_accepted(server, offset_min):
    assert raw_v1(server, "DescribeRegions", timestamp=utc_now(offset_min * 60)).status == 200
    assert raw_v3(server, "DescribeRegions", date=utc_now(offset_min * 60)).status == 200


# ----------------------------------------------------------------------------------------------
# keys and signatures


@pytest.mark.parametrize("v2", [False, True], ids=["acs3", "v2"])
def test_wrong_secret_sdk(server, v2):
    api = Api(server, BOOT_AK, BOOT_SECRET + "x", v2=v2)
    err = catch(api.disks)
    assert (err.status, err.code) == (400, "SignatureDoesNotMatch"), err.data
    assert err.message.startswith(MSG["SignatureDoesNotMatch.prefix"]), err.message


def test_wrong_secret_v1_echoes_string_to_sign(server):
    r = raw_v1(server, "DescribeRegions", secret="not-the-secret")
    body = assert_json_error(r, 400, "SignatureDoesNotMatch")
    assert body["Message"] == MSG["SignatureDoesNotMatch.prefix"] + r.string_to_sign


def test_wrong_secret_legacy_sdk(server):
    """The legacy SDK turns SignatureDoesNotMatch into InvalidAccessKeySecret when the server's
    string-to-sign (after the ':') equals its own -- which it does when the server echoes it."""
    client = legacy_client(server, BOOT_AK, "not-the-secret")
    err = legacy_catch(client, legacy_request("DescribeRegions"))
    assert (err.status, err.code) == (400, "InvalidAccessKeySecret"), err


@pytest.mark.parametrize("v2", [False, True], ids=["acs3", "v2"])
def test_unknown_access_key(server, v2):
    api = Api(server, "LTAInosuchkey0000000000", "whatever", v2=v2)
    expect_error((404, "InvalidAccessKeyId.NotFound", MSG["InvalidAccessKeyId.NotFound"]), api.disks)


def test_disabled_key(server, tenant):
    key = server.admin("key-create", AccountId=tenant.account_id)
    second = Api(server, key["AccessKeyId"], key["AccessKeySecret"], account_id=tenant.account_id)
    did = tenant.create_disk(size=20, wait=False)
    assert second.disk(did)["DiskId"] == did  # same account, same resources
    server.admin("key-disable", AccessKeyId=key["AccessKeyId"])
    for v2 in (False, True):
        api = Api(server, key["AccessKeyId"], key["AccessKeySecret"], v2=v2)
        expect_error((400, "InvalidAccessKeyId.Inactive", MSG["InvalidAccessKeyId.Inactive"]), api.disks)
    # the account's other key still works
    assert tenant.disk(did) is not None
    server.admin("key-enable", AccessKeyId=key["AccessKeyId"])
    assert second.disk(did)["DiskId"] == did


# ----------------------------------------------------------------------------------------------
# actions, versions


@pytest.mark.parametrize("v2", [False, True], ids=["acs3", "v2"])
def test_unknown_action(server, v2):
    api = Api(server, BOOT_AK, BOOT_SECRET, v2=v2)
    expect_error((404, "InvalidAction.NotFound", MSG["InvalidAction.NotFound"]),
                 api.call, "DescribeUnicorns", {"RegionId": "cn-hangzhou"})


def test_unknown_action_raw(server):
    r = raw_v1(server, "DescribeUnicorns")
    assert_json_error(r, 404, "InvalidAction.NotFound", MSG["InvalidAction.NotFound"])


@pytest.mark.parametrize("v2", [False, True], ids=["acs3", "v2"])
def test_invalid_version(server, v2):
    api = Api(server, BOOT_AK, BOOT_SECRET, v2=v2)
    expect_error((400, "InvalidVersion", MSG["InvalidVersion"]),
                 api.call, "DescribeRegions", {}, version="2016-01-01")


def test_invalid_version_raw(server):
    r = raw_v1(server, "DescribeRegions", version="2099-09-09")
    assert_json_error(r, 400, "InvalidVersion", MSG["InvalidVersion"])


# ----------------------------------------------------------------------------------------------
# formats and envelopes


def _xml(resp):
    text = resp.text
    assert text.lstrip().startswith("<"), text
    return ET.fromstring(resp.body)


def test_xml_success_and_error(server, tenant):
    rig = make_rig(tenant)
    ak, sk = tenant.ak, tenant.secret
    r = raw_v1(server, "ResetDisk", {"DiskId": rig.disk, "SnapshotId": rig.snapshot}, ak=ak, secret=sk,
               fmt="XML", method="POST")
    assert r.status == 200, r.text
    root = _xml(r)
    assert root.tag == "ResetDiskResponse"
    assert [c.tag for c in root] == ["RequestId"] and root.find("RequestId").text
    tenant.wait_disk(rig.disk, "In_use")

    r = raw_v1(server, "ResetDisk", {"DiskId": "d-bp1nosuchdisk000001", "SnapshotId": rig.snapshot},
               ak=ak, secret=sk, fmt="XML")
    assert r.status == 404, r.text
    root = _xml(r)
    assert root.tag == "Error"
    fields = {c.tag: c.text for c in root}
    assert ERROR_FIELDS <= set(fields), fields
    assert (fields["Code"], fields["Message"]) == ("InvalidDiskId.NotFound", MSG["InvalidDiskId.NotFound"])


def test_format_defaults_to_xml_for_v1(server):
    r = raw_v1(server, "DescribeRegions", fmt=None)
    assert r.status == 200
    assert _xml(r).tag == "DescribeRegionsResponse"
    r = raw_v1(server, "DescribeUnicorns", fmt=None)
    assert r.status == 404
    assert _xml(r).tag == "Error"


def test_format_case_insensitive(server):
    for fmt in ("json", "JSON", "Json"):
        r = raw_v1(server, "DescribeRegions", fmt=fmt)
        assert r.status == 200 and "Regions" in r.json()
    assert _xml(raw_v1(server, "DescribeRegions", fmt="xml")).tag == "DescribeRegionsResponse"


def test_xml_lists_are_double_wrapped(server):
    root = _xml(raw_v1(server, "DescribeRegions", fmt="XML"))
    regions = root.find("Regions")
    assert regions is not None and {r.findtext("RegionId") for r in regions.findall("Region")} >= {
        "cn-hangzhou", "cn-shanghai"}


def test_success_body_has_only_request_id(server, tenant):
    rig = make_rig(tenant)
    r = raw_v1(server, "ResetDisk", {"DiskId": rig.disk, "SnapshotId": rig.snapshot},
               ak=tenant.ak, secret=tenant.secret, method="POST")
    assert r.status == 200, r.text
    assert set(r.json()) == {"RequestId"}
    tenant.wait_disk(rig.disk, "In_use")


def test_error_body_json_envelope(server, tenant):
    r = raw_v1(server, "ResetDisk", {"DiskId": "d-bp1nosuchdisk000001", "SnapshotId": "s-x"},
               ak=tenant.ak, secret=tenant.secret)
    body = assert_json_error(r, 404, "InvalidDiskId.NotFound", MSG["InvalidDiskId.NotFound"])
    assert body["Recommend"] and body["HostId"]
    # MissingParameter through the raw path as well
    r = raw_v1(server, "ResetDisk", {"SnapshotId": "s-x"}, ak=tenant.ak, secret=tenant.secret)
    assert_json_error(r, 400, "MissingParameter", MSG["MissingParameter.DiskId"])


def test_request_ids_are_unique(server):
    ids = {raw_v1(server, "DescribeRegions").json()["RequestId"] for _ in range(5)}
    assert len(ids) == 5


# ----------------------------------------------------------------------------------------------
# isolation between accounts


def test_tenant_isolation(server, tenant):
    a = tenant
    rig = make_rig(a, running=True)
    b = server.tenant(v2=True)
    boot = Api(server, BOOT_AK, BOOT_SECRET)

    for other in (b, boot):
        assert rig.disk not in {d["DiskId"] for d in other.disks(page_size=100)["Disks"]["Disk"]}
        assert other.disk(rig.disk) is None
        assert other.instance(rig.instance) is None
        assert other.snapshot(rig.snapshot) is None
        assert rig.instance not in {i["InstanceId"] for i in other.instances(page_size=100)["Instances"]["Instance"]}

    expect_error(row("InvalidDiskId.NotFound"), b.reset, rig.disk, rig.snapshot)
    expect_error(row("InvalidInstanceId.NotFound"), b.stop, rig.instance, wait=False)
    err = catch(b.create_snapshot, rig.disk, wait=False)
    assert (err.status, err.code) == (404, "InvalidDiskId.NotFound"), err.data
    own = b.create_disk(size=20)
    err = catch(b.attach, own, rig.instance, wait=False)
    assert (err.status, err.code) == (404, "InvalidInstanceId.NotFound"), err.data
    err = catch(b.create_disk, size=None, snapshot_id=rig.snapshot, wait=False)
    assert (err.status, err.code) == (404, "InvalidSnapshotId.NotFound"), err.data
    # nothing changed for the owner
    assert a.instance_status(rig.instance) == "Running"
    assert a.disk_status(rig.disk) == "In_use"


# ----------------------------------------------------------------------------------------------
# legacy SDK


def test_legacy_sdk_flow(server, tenant):
    rig = make_rig(tenant)
    c = legacy_client(server, tenant.ak, tenant.secret)
    regions = legacy_do(c, legacy_request("DescribeRegions"))
    assert {r["RegionId"] for r in regions["Regions"]["Region"]} >= {"cn-hangzhou", "cn-shanghai"}
    disks = legacy_do(c, legacy_request("DescribeDisks", DiskIds=json.dumps([rig.disk])))
    assert [d["DiskId"] for d in disks["Disks"]["Disk"]] == [rig.disk]
    err = legacy_catch(c, legacy_request("ResetDisk", DiskId=rig.disk, SnapshotId=rig.snapshot, DryRun=True))
    assert err.triple == row("DryRunOperation")
    err = legacy_catch(c, legacy_request("ResetDisk", DiskId="d-bp1nosuchdisk000001", SnapshotId=rig.snapshot))
    assert err.triple == row("InvalidDiskId.NotFound")
    body = legacy_do(c, legacy_request("ResetDisk", DiskId=rig.disk, SnapshotId=rig.snapshot))
    assert set(body) == {"RequestId"}
    tenant.wait_disk(rig.disk, "In_use")
    legacy_do(c, legacy_request("StartInstance", InstanceId=rig.instance))
    tenant.wait_instance(rig.instance, "Running")


# ----------------------------------------------------------------------------------------------
# admin interface authentication


def test_admin_requires_token(server):
    status, _ = server.admin_raw("timings", {}, token="")
    assert status == 401
    status, _ = server.admin_raw("timings", {}, token="wrong-token")
    assert status == 401
    status, _ = server.admin_raw("timings", {}, token=BOOT_SECRET)
    assert status == 401
    status, body = server.admin_raw("no-such-command", {})
    assert status == 404, body
    assert "Error" in json.loads(body)


def test_admin_cli(server):
    """`snapdisk admin` (docs/operator.md): prints the JSON answer; a refused command exits 1."""
    import subprocess

    base = [str(server.binary), "admin", "--endpoint", server.endpoint, "--token", server.admin_token]
    out = subprocess.run(base + ["timings"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    timings = json.loads(out.stdout)
    assert {"DiskMs", "InstanceMs", "SnapshotMs"} <= set(timings), timings
    bad = [str(server.binary), "admin", "--endpoint", server.endpoint, "--token", "wrong", "timings"]
    out = subprocess.run(bad, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and out.stderr.strip(), (out.returncode, out.stdout, out.stderr)
