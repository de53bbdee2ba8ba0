"""SSH key pairs through the official SDK (issue 10): CreateKeyPair makes a real RSA pair whose
fingerprint is what `ssh-keygen -l -E md5` prints, ImportKeyPair checks and fingerprints a
public key, DescribeKeyPairs filters and pages, Attach/DetachKeyPair change what
DescribeInstances shows, DeleteKeyPairs refuses pairs still bound; every documented error row
implemented; one account never sees another's pairs."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from alibabacloud_ecs20140526 import models as ecs_models

from support import REGION, _m, catch, raw_v1

KEYGEN = shutil.which("ssh-keygen")


def create(api, name, tags=None):
    tag = [ecs_models.CreateKeyPairRequestTag(key=k, value=v) for k, v in (tags or {}).items()] or None
    return _m(api.client.create_key_pair(ecs_models.CreateKeyPairRequest(
        region_id=REGION, key_pair_name=name, tag=tag)))


def import_(api, name, body):
    return _m(api.client.import_key_pair(ecs_models.ImportKeyPairRequest(
        region_id=REGION, key_pair_name=name, public_key_body=body)))


def describe(api, **kw):
    return _m(api.client.describe_key_pairs(ecs_models.DescribeKeyPairsRequest(region_id=REGION, **kw)))


def names(body):
    return [k["KeyPairName"] for k in body["KeyPairs"]["KeyPair"]]


def attach(api, name, ids):
    return _m(api.client.attach_key_pair(ecs_models.AttachKeyPairRequest(
        region_id=REGION, key_pair_name=name, instance_ids=json.dumps(ids))))


def detach(api, name, ids):
    return _m(api.client.detach_key_pair(ecs_models.DetachKeyPairRequest(
        region_id=REGION, key_pair_name=name, instance_ids=json.dumps(ids))))


def delete(api, names_):
    return _m(api.client.delete_key_pairs(ecs_models.DeleteKeyPairsRequest(
        region_id=REGION, key_pair_names=json.dumps(names_))))


def keygen(tmp_path, kind="ed25519"):
    path = tmp_path / f"id_{kind}"
    subprocess.run([KEYGEN, "-q", "-t", kind, "-N", "", "-C", "me@host", "-f", str(path)], check=True)
    return path


def md5(tmp_path, public_line):
    p = tmp_path / "check.pub"
    p.write_text(public_line + "\n")
    out = subprocess.run([KEYGEN, "-l", "-E", "md5", "-f", str(p)], check=True, capture_output=True, text=True)
    return out.stdout.split()[1].removeprefix("MD5:")


@pytest.mark.skipif(KEYGEN is None, reason="needs ssh-keygen")
def test_create_and_import_answer_real_keys_and_fingerprints(tenant, tmp_path):
    made = create(tenant, "web-key", tags={"env": "prod"})
    assert made["KeyPairName"] == "web-key" and made["KeyPairId"].startswith("skp-")
    pem = made["PrivateKeyBody"]
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
    priv = tmp_path / "web-key.pem"
    priv.write_text(pem)
    priv.chmod(0o600)
    public = subprocess.run([KEYGEN, "-y", "-f", str(priv)], check=True, capture_output=True, text=True).stdout.strip()
    assert public.startswith("ssh-rsa ")
    assert made["KeyPairFingerPrint"] == md5(tmp_path, public), "MD5 of the public key blob"
    bits = subprocess.run([KEYGEN, "-l", "-f", str(priv)], check=True, capture_output=True, text=True).stdout
    assert bits.startswith("2048 ")

    mine = keygen(tmp_path)
    line = mine.with_suffix(".pub").read_text().strip()
    imported = import_(tenant, "laptop", line)
    assert imported["KeyPairName"] == "laptop"
    assert imported["KeyPairFingerPrint"] == md5(tmp_path, line)
    assert "PrivateKeyBody" not in imported

    body = describe(tenant)
    assert names(body) == ["web-key", "laptop"] and body["TotalCount"] == 2
    assert (body["PageNumber"], body["PageSize"]) == (1, 10)
    assert all("PublicKey" not in k for k in body["KeyPairs"]["KeyPair"])
    web = body["KeyPairs"]["KeyPair"][0]
    assert web["KeyPairFingerPrint"] == made["KeyPairFingerPrint"] and web["CreationTime"].endswith("Z")
    assert web["Tags"]["Tag"] == [{"TagKey": "env", "TagValue": "prod"}]
    full = describe(tenant, include_public_key=True, key_pair_name="laptop")
    assert full["KeyPairs"]["KeyPair"][0]["PublicKey"] == line.rsplit(" ", 1)[0], "stored without its comment"

    # Filters, in SQL: exact name, wildcards, fingerprint, tags.
    assert names(describe(tenant, key_pair_name="web")) == []
    assert names(describe(tenant, key_pair_name="web*")) == ["web-key"]
    assert names(describe(tenant, key_pair_name="*top")) == ["laptop"]
    assert names(describe(tenant, key_pair_name="*-*")) == ["web-key"]
    assert names(describe(tenant, key_pair_finger_print=imported["KeyPairFingerPrint"])) == ["laptop"]
    tag = [ecs_models.DescribeKeyPairsRequestTag(key="env", value="prod")]
    assert names(describe(tenant, tag=tag)) == ["web-key"]

    delete(tenant, ["web-key", "laptop"])
    assert describe(tenant)["TotalCount"] == 0
    create(tenant, "web-key")  # the name is free again


def test_key_pairs_are_per_account(server, tenant):
    other = server.tenant()
    create(tenant, "shared-name")
    assert describe(other)["TotalCount"] == 0
    create(other, "shared-name")  # names are unique per account, not across accounts
    assert describe(tenant)["TotalCount"] == 1
    err = catch(delete, other, ["shared-name", "only-mine"])
    assert (err.status, err.code) == (404, "InvalidKeyPair.NotFound")
    assert describe(other)["TotalCount"] == 1, "all or nothing"
    iid = tenant.run_instance()
    err = catch(attach, other, "shared-name", [iid])
    assert (err.status, err.code) == (400, "InvalidInstanceIds.ValueNotSupported"), "not the other's instance"
    err = catch(tenant.run_instance, key_pair_name="only-theirs")
    assert err.triple == (404, "InvalidKeyPairName.NotFound",
                          'The specified parameter "KeyPairName" does not exist in our records.')


def test_describe_pages_by_number(tenant, tmp_path):
    for n in range(5):
        create(tenant, f"k{n}")
    seen = []
    for page in (1, 2, 3):
        body = describe(tenant, page_number=page, page_size=2)
        assert body["TotalCount"] == 5 and (body["PageNumber"], body["PageSize"]) == (page, 2)
        seen += names(body)
    assert seen == [f"k{n}" for n in range(5)]
    assert names(describe(tenant, page_number=4, page_size=2)) == []
    assert len(names(describe(tenant, page_size=50))) == 5
    err = catch(describe, tenant, page_size=51)
    assert err.triple == (400, "InvalidParameter", 'The specified parameter "PageSize" is not valid.')


def test_run_attach_detach_and_what_instances_show(tenant):
    create(tenant, "boot-key")
    create(tenant, "other-key")
    a = tenant.run_instance(key_pair_name="boot-key")
    b = tenant.run_instance()
    assert tenant.instance(a)["KeyPairName"] == "boot-key"
    assert tenant.instance(b)["KeyPairName"] == ""
    assert [i["InstanceId"] for i in tenant.instances(key_pair_name="boot-key")["Instances"]["Instance"]] == [a]

    # Running and Stopped instances both take a pair; a new one replaces the old.
    tenant.stop(b)
    out = attach(tenant, "other-key", [a, b])
    assert (out["KeyPairName"], out["TotalCount"], out["FailCount"]) == ("other-key", "2", "0")
    assert [r["InstanceId"] for r in out["Results"]["Result"]] == [a, b]
    assert all((r["Success"], r["Code"], r["Message"]) == ("true", "200", "successful")
               for r in out["Results"]["Result"])
    for iid in (a, b):
        assert tenant.instance(iid)["KeyPairName"] == "other-key"
    # (The SDK's DescribeInstanceAttribute model has no KeyPairName; the raw body does.)
    assert tenant.call("DescribeInstanceAttribute", {"InstanceId": a})["KeyPairName"] == "other-key"

    # Bound pairs are not deleted.
    err = catch(delete, tenant, ["other-key"])
    assert err.triple == (400, "InvalidParameter.KeypairAlreadyAttachedInstance",
                          'The specified parameter "KeyPairNames" attached to instances can not be deleted.')

    # Detach: an instance the pair is not bound to is a failed result, the rest succeed.
    c = tenant.run_instance(key_pair_name="boot-key")
    out = detach(tenant, "other-key", [a, c])
    assert (out["TotalCount"], out["FailCount"]) == ("2", "1")
    res = {r["InstanceId"]: r for r in out["Results"]["Result"]}
    assert res[a]["Success"] == "true"
    assert (res[c]["Success"], res[c]["Code"]) == ("false", "InvalidKeyPairName.NotFound")
    assert tenant.instance(a)["KeyPairName"] == "" and tenant.instance(c)["KeyPairName"] == "boot-key"

    # A transitional instance is refused per instance.
    tenant.server.timings(InstanceMs=3000)
    try:
        tenant.start(b, wait=False)
        out = detach(tenant, "other-key", [b])
        r = out["Results"]["Result"][0]
        assert (out["FailCount"], r["Success"], r["Code"]) == ("1", "false", "IncorrectInstanceStatus")
    finally:
        tenant.server.timings(InstanceMs=50)
    tenant.wait_instance(b, "Running")
    detach(tenant, "other-key", [b])
    delete(tenant, ["other-key"])


def test_documented_error_rows(tenant, tmp_path):
    create(tenant, "taken")
    err = catch(create, tenant, "taken")
    assert err.triple == (400, "KeyPair.AlreadyExist", "The key pair already exist.")
    for bad in ("1starts-with-digit", "x", "http://key", "has space"):
        err = catch(create, tenant, bad)
        assert err.triple == (400, "InvalidKeyPairName.Malformed", "Specified Key Pair name is not valid."), bad
    for body in ("ssh-rsa not-base64!", "hello", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCewFKmlpnSMYSTIb4+"):
        err = catch(import_, tenant, "imp", body)
        assert err.triple == (400, "InvalidPublicKeyBody.Malformed", "The PublicKeyBody format is not supported.")
    err = catch(tenant.call, "ImportKeyPair", {"RegionId": REGION, "KeyPairName": "imp"})
    assert err.triple == (400, "MissingParameter",
                          'The input parameter "PublicKeyBody" that is mandatory for processing this request is not supplied.')
    iid = tenant.run_instance()
    err = catch(attach, tenant, "no-such-key", [iid])
    assert err.triple == (400, "InvalidKeyPairName.NotFound", "The specified KeyPairName does not exist in our records.")
    err = catch(attach, tenant, "taken", ["i-nope"])
    assert err.triple == (400, "InvalidInstanceIds.ValueNotSupported", "The specified parameter InstanceIds is not valid.")
    err = catch(tenant.call, "AttachKeyPair", {"RegionId": REGION, "KeyPairName": "taken", "InstanceIds": "[\"i-1\""})
    assert err.code == "InvalidInstanceIds.ValueNotSupported"
    err = catch(attach, tenant, "taken", [f"i-{n}" for n in range(51)])
    assert err.triple == (403, "InstanceKeyPairLimitExceeded", "The specified instances are beyond the permitted range.")
    err = catch(tenant.call, "DeleteKeyPairs", {"RegionId": REGION, "KeyPairNames": "[\"taken\""})
    assert err.triple == (400, "InvalidKeyPairNames.ValueNotSupported",
                          'The specified parameter "KeyPairNames" is not valid.')
    err = catch(delete, tenant, [f"k{n}" for n in range(101)])
    assert err.triple == (403, "InstanceKeyPairLimitExceeded",
                          "Exceeding the allowed amount of instance which will be deleted.")
    err = catch(delete, tenant, ["ghost"])
    assert (err.status, err.code) == (404, "InvalidKeyPair.NotFound")
    err = catch(tenant.call, "CreateKeyPair", {"KeyPairName": "nore"})
    assert (err.status, err.code) == (400, "MissingParameter")


def test_xml_shapes(server, tenant):
    create(tenant, "xml-key", tags={"team": "a"})
    iid = tenant.run_instance()
    r = raw_v1(server, "DescribeKeyPairs", {"RegionId": REGION, "IncludePublicKey": "true"},
               ak=tenant.ak, secret=tenant.secret, fmt="XML")
    assert r.status == 200, r.text
    root = ET.fromstring(r.body)
    assert root.tag == "DescribeKeyPairsResponse" and root.findtext("RequestId")
    kp = root.findall("./KeyPairs/KeyPair")
    assert len(kp) == 1 and kp[0].findtext("KeyPairName") == "xml-key"
    assert kp[0].findtext("KeyPairFingerPrint").count(":") == 15
    assert kp[0].findtext("PublicKey").startswith("ssh-rsa ")
    assert [(t.findtext("TagKey"), t.findtext("TagValue")) for t in kp[0].findall("./Tags/Tag")] == [("team", "a")]
    assert (root.findtext("TotalCount"), root.findtext("PageNumber"), root.findtext("PageSize")) == ("1", "1", "10")

    r = raw_v1(server, "AttachKeyPair", {"RegionId": REGION, "KeyPairName": "xml-key", "InstanceIds": json.dumps([iid])},
               ak=tenant.ak, secret=tenant.secret, fmt="XML")
    assert r.status == 200, r.text
    root = ET.fromstring(r.body)
    assert root.tag == "AttachKeyPairResponse"
    res = root.findall("./Results/Result")
    assert [(x.findtext("InstanceId"), x.findtext("Success"), x.findtext("Code")) for x in res] == [(iid, "true", "200")]
    assert (root.findtext("TotalCount"), root.findtext("FailCount")) == ("1", "0")


@pytest.mark.skipif(KEYGEN is None, reason="needs ssh-keygen")
def test_five_hundred_pairs_a_region(tenant, tmp_path):
    line = keygen(tmp_path).with_suffix(".pub").read_text().strip()
    for n in range(500):
        import_(tenant, f"k{n}", line)
    err = catch(import_, tenant, "k500", line)
    assert err.triple == (403, "QuotaExceed.KeyPair", "The key pair quota exceeds.")
    err = catch(create, tenant, "k500")
    assert err.code == "QuotaExceed.KeyPair"
    body = describe(tenant, page_number=50, page_size=10)
    assert body["TotalCount"] == 500 and names(body) == [f"k{n}" for n in range(490, 500)]
