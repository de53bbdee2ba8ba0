"""Helpers shared by the Snapdisk end-to-end tests.

* ``Server``: runs ``snapdisk serve`` on a data dir, exposes ``ecs()`` (official Tea SDK client) and
  ``admin()`` (operator interface, ``POST /admin/<command>``).
* ``Api``: a thin layer over the Tea SDK client with waits, for one tenant.
* ``attached_disk`` / ``allocated_bytes``: data-plane set-up (see also ``nbd_client.py``).
* ``sign_v1`` / ``sign_v3`` / ``raw_v1`` / ``raw_v3``: hand-built signed requests (notes §2.3, §2.4)
  so the protocol tests control nonce, timestamp, Format, HTTP method and body placement.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import hashlib
import hmac
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi import utils_models as open_api_util_models
from alibabacloud_tea_openapi.utils import Utils as OpenApiUtils
from darabonba.exceptions import ResponseException
from darabonba.runtime import RuntimeOptions

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "snapdisk"

BOOT_AK = "LTAI5tSnapdiskBootKey01"
BOOT_SECRET = "SnapdiskBootSecret0123456789abcd"
ADMIN_TOKEN = "snapdisk-e2e-admin-token-0123456789"

REGION = "cn-hangzhou"
ZONE = "cn-hangzhou-h"
IMAGE = "blank_x64_20G.vhd"
ITYPE = "ecs.g7.large"

LISTEN_RE = re.compile(r"^api listening on http://127\.0\.0\.1:(\d+)\s*$")
NBD_LISTEN_RE = re.compile(r"^nbd listening on 127\.0\.0\.1:(\d+)\s*$")
NBD_SOCKET_RE = re.compile(r"^nbd socket (\S+)\s*$")

# Exact ResetDisk error messages (ResetDisk.txt / notes §1.4).
MSG = {
    "MissingParameter.DiskId": 'The input parameter "DiskId" that is mandatory for processing this request is not supplied.',
    "MissingParameter.SnapshotId": 'The input parameter "SnapshotId" that is mandatory for processing this request is not supplied.',
    "InvalidRegionId.MalFormed": "The specified RegionId is not valid",
    "DryRunOperation": "Request validation has been passed with DryRun flag set.",
    "DiskCategory.OperationNotSupported": "The operation is not supported to the specified disk due to its disk category",
    "IncorrectDiskStatus": "The current disk status does not support this operation.",
    "IncorrectInstanceStatus": "The current status of the resource does not support this operation.",
    "InstanceLockedForSecurity": "The instance is locked due to security.",
    "InvalidParameter.Mismatch": "The specified snapshot is not created from the specified disk.",
    "InvalidSnapshot.TooOld": "The snapshotId is created before 2013-07-15, it cannot be restored since the first time the disk detached.",
    "InstanceExpiredOrInArrears": "The specified operation is denied as your prepay instance is expired (prepay mode) or in arrears (afterpay mode).",
    "OperationDenied": "The specified snapshot dees not support ResetDisk.",
    "InvalidSnapshotId.NotReady": "The specified snapshot has not completed yet.",
    "InvalidAccountStatus.NotEnoughBalance": "Your account does not have enough balance.",
    "InvalidAccountStatus.SnapshotServiceUnavailable": "Snapshot service has not been opened yet.",
    "Operation.Conflict": "The operation may conflicts with others.",
    "UserNotInTheWhiteList": "The user is not in disk white list.",
    "InvalidParameter.KMSKeyId.CMKNotEnabled": "The CMK needs to be enabled.",
    "InvalidParameter.KMSKeyId.KMSUnauthorized": "ECS service have no right to access your KMS.",
    "InvalidParameter.KMSKeyId.NotFound": "The specified KMSKeyId does not exist.",
    "InvalidDiskId.NotFound": "The specified disk does not exist.",
    "Disk.NotFound": "The specified disk does not exist.",
    "InvalidSnapshotId.NotFound": "The specified SnapshotId does not exist.",
    "InvalidInstanceId.NotFound": "The specified InstanceId does not exist.",
    # protocol (notes §3.3)
    "SignatureNonceUsed": "Specified signature nonce was used already.",
    "InvalidTimeStamp.Expired": "Specified time stamp or date value is expired.",
    "SignatureDoesNotMatch.prefix": "Specified signature is not matched with our calculation. server string to sign is:",
    "InvalidAccessKeyId.NotFound": "Specified access key is not found.",
    "InvalidAccessKeyId.Inactive": "Specified access key is disabled.",
    "InvalidAction.NotFound": "Specified api is not found, please check your url and method.",
    "InvalidVersion": "Specified parameter Version is not valid.",
}
INTERNAL_ERROR_MSGS = (
    "The request processing has failed due to some unknown error.",
    "The request processing has failed due to some unknown error, exception or failure.",
)

# Error rows: (HTTP status, Code, Message)
def row(code: str, msg_key: str | None = None) -> tuple[int, str, str]:
    status = {
        "MissingParameter": 400,
        "InvalidRegionId.MalFormed": 400,
        "DryRunOperation": 400,
        "DiskCategory.OperationNotSupported": 400,
        "InvalidDiskId.NotFound": 404,
        "Disk.NotFound": 404,
        "InvalidSnapshotId.NotFound": 404,
        "InvalidInstanceId.NotFound": 404,
        "InvalidParameter.KMSKeyId.NotFound": 404,
        "InternalError": 500,
    }.get(code, 403)
    return (status, code, MSG[msg_key or code])


# --------------------------------------------------------------------------------------------
# polling


def poll(fn: Callable[[], Any], pred: Callable[[Any], bool], timeout: float = 15.0,
         interval: float = 0.05, what: str = "condition") -> Any:
    """Call fn until pred(value) holds; fail with the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if pred(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# errors


@dataclass
class ApiErr:
    status: int | None
    code: str | None
    message: str | None
    data: dict | None
    exc: BaseException | None = None

    @property
    def triple(self) -> tuple:
        return (self.status, self.code, self.message)


def catch(fn: Callable, *args, **kwargs) -> ApiErr:
    """Run an SDK call that must fail; return its status/code/raw message."""
    try:
        res = fn(*args, **kwargs)
    except ResponseException as e:  # Tea ClientException / ServerException
        data = dict(e.data) if isinstance(e.data, dict) else None
        msg = data.get("Message") if data else None
        return ApiErr(e.status_code, e.code, msg, data, e)
    body = getattr(res, "body", res)
    body = body.to_map() if hasattr(body, "to_map") else body
    raise AssertionError(f"expected an API error, got success: {body!r}")


def expect_error(expected: tuple, fn: Callable, *args, **kwargs) -> ApiErr:
    err = catch(fn, *args, **kwargs)
    assert err.triple == expected, f"error body: {err.data!r}"
    return err


# --------------------------------------------------------------------------------------------
# server process


class AdminError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"admin HTTP {status}: {body}")
        self.status = status
        self.body = body


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 30.0) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _NO_PROXY_OPENER.open(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


class Server:
    """A running `snapdisk serve` process."""

    def __init__(self, binary: Path, data_dir: Path, log_dir: Path, name: str = "server",
                 extra_args: list[str] | None = None, nbd_args: list[str] | None = None):
        self.binary = Path(binary)
        self.extra_args = list(extra_args or [])
        # Instances are catalog rows here unless a test asks for VMs (tests/e2e/test_vms.py).
        if not any(a.startswith("--vms") for a in self.extra_args):
            self.extra_args += ["--vms", "none"]
        # How NBD is served over TCP: by default in the clear on loopback, as the suite has
        # always used it (`--nbd-insecure`); test_nbd_tls.py passes TLS flags instead.
        self.nbd_args = ["--nbd-listen", "127.0.0.1:0", "--nbd-insecure"] if nbd_args is None else list(nbd_args)
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.nbd_port: int | None = None
        self.nbd_socket: str | None = None
        self.stdout_lines: list[str] = []
        self._reader: threading.Thread | None = None
        self._starts = 0
        self.access_key_id = BOOT_AK
        self.access_key_secret = BOOT_SECRET
        self.admin_token = ADMIN_TOKEN
        self._account_id: str | None = None

    # -- process control --------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self._starts}.stderr.log"

    def start(self, timeout: float = 30.0) -> "Server":
        assert self.proc is None, "already running"
        self._starts += 1
        self.port = self.nbd_port = self.nbd_socket = None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            SNAPDISK_ACCESS_KEY_ID=self.access_key_id,
            SNAPDISK_ACCESS_KEY_SECRET=self.access_key_secret,
            SNAPDISK_ADMIN_TOKEN=self.admin_token,
        )
        stderr = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0",
             *self.nbd_args, *self.extra_args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=env,
            text=True, bufsize=1,
        )
        stderr.close()
        lines: "queue.Queue[str | None]" = queue.Queue()
        proc = self.proc

        def drain():
            assert proc.stdout is not None
            for line in proc.stdout:
                self.stdout_lines.append(line)
                lines.put(line)
            lines.put(None)

        self._reader = threading.Thread(target=drain, name=f"{self.name}-stdout", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._kill()
                raise RuntimeError(f"{self.name}: no 'api/nbd listening on' lines within {timeout}s; "
                                   f"stdout={self.stdout_lines!r} stderr={self.stderr_tail()!r}")
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                rc = self.proc.wait()
                self.proc = None
                raise RuntimeError(f"{self.name}: exited with {rc} before listening; "
                                   f"stdout={self.stdout_lines!r} stderr={self.stderr_tail()!r}")
            m = LISTEN_RE.match(line.rstrip("\r\n"))
            if m:
                self.port = int(m.group(1))
            m = NBD_LISTEN_RE.match(line.rstrip("\r\n"))
            if m:
                self.nbd_port = int(m.group(1))
            m = NBD_SOCKET_RE.match(line.rstrip("\r\n"))
            if m:
                self.nbd_socket = m.group(1)
            wants_tcp = "--nbd-listen" in self.nbd_args
            if self.port is not None and self.nbd_socket is not None and (self.nbd_port is not None or not wants_tcp):
                return self

    def _kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        self.proc = None
        return rc

    def restart(self) -> "Server":
        self.stop()
        return self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # -- clients ----------------------------------------------------------------------
    def ecs(self, ak: str, secret: str, v2: bool = False, region_id: str = REGION) -> EcsClient:
        config = open_api_models.Config(
            access_key_id=ak,
            access_key_secret=secret,
            region_id=region_id,
            endpoint=f"127.0.0.1:{self.port}",
            protocol="http",
            signature_algorithm="v2" if v2 else None,
            read_timeout=30000,
            connect_timeout=5000,
        )
        return EcsClient(config)

    def admin_raw(self, command: str, body: dict | None = None, token: str | None = None,
                  raw_headers: dict | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        if token is None:
            token = self.admin_token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if raw_headers is not None:
            headers = raw_headers
        status, _h, data = http("POST", f"{self.endpoint}/admin/{command}",
                                json.dumps(body or {}).encode(), headers)
        return status, data

    def admin(self, command: str, **body) -> dict:
        status, data = self.admin_raw(command, body)
        if status != 200:
            raise AdminError(status, data.decode(errors="replace"))
        return json.loads(data) if data.strip() else {}

    # -- timings ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def timings(self, **kw):
        """Temporarily change admin timings (DiskMs / InstanceMs / SnapshotMs)."""
        before = self.admin("timings")
        self.admin("timings", **kw)
        try:
            yield
        finally:
            restore = {k: before[k] for k in ("DiskMs", "InstanceMs", "SnapshotMs") if k in before}
            self.admin("timings", **restore)

    # -- tenants --------------------------------------------------------------------------
    def new_account(self, name: str | None = None) -> dict:
        body = {"Name": name} if name else {}
        acct = self.admin("account-create", **body)
        for k in ("AccountId", "AccessKeyId", "AccessKeySecret"):
            assert acct.get(k), f"account-create answer lacks {k}: {acct!r}"
        return acct

    def tenant(self, v2: bool = False, name: str | None = None) -> "Api":
        acct = self.new_account(name)
        return Api(self, acct["AccessKeyId"], acct["AccessKeySecret"], v2=v2,
                   account_id=acct["AccountId"])


# --------------------------------------------------------------------------------------------
# ECS client wrapper


def _m(resp) -> dict:
    return resp.body.to_map()


class Api:
    """One tenant's view of the ECS API through the official Tea SDK."""

    def __init__(self, server: Server, ak: str, secret: str, v2: bool = False,
                 account_id: str | None = None):
        self.server = server
        self.ak = ak
        self.secret = secret
        self.v2 = v2
        self.account_id = account_id
        self._client = None
        self._client_port = None

    @property
    def client(self) -> EcsClient:
        # re-create after a restart (port may change)
        if self._client is None or self._client_port != self.server.port:
            self._client = self.server.ecs(self.ak, self.secret, self.v2)
            self._client_port = self.server.port
        return self._client

    # generic RPC call through the SDK (lets tests send parameters the typed models lack)
    def call(self, action: str, query: dict, version: str = "2014-05-26") -> dict:
        params = open_api_util_models.Params(
            action=action, version=version, protocol="HTTPS", pathname="/", method="POST",
            auth_type="AK", style="RPC", req_body_type="formData", body_type="json",
        )
        req = open_api_util_models.OpenApiRequest(query=OpenApiUtils.query(query))
        return self.client.call_api(params, req, RuntimeOptions())["body"]

    # ---- instances ----------------------------------------------------------------------
    def run_instances(self, amount: int | None = None, image: str = IMAGE, itype: str = ITYPE,
                      zone: str | None = ZONE, data_disks: list[dict] | None = None,
                      system_disk: dict | None = None, charge: str | None = None,
                      region: str = REGION, wait: bool = True, **extra) -> list[str]:
        req = ecs_models.RunInstancesRequest(
            region_id=region, image_id=image, instance_type=itype, zone_id=zone, amount=amount,
            instance_charge_type=charge,
            data_disk=[ecs_models.RunInstancesRequestDataDisk(**d) for d in data_disks] if data_disks else None,
            system_disk=ecs_models.RunInstancesRequestSystemDisk(**system_disk) if system_disk else None,
            **extra,
        )
        if charge == "PrePaid":
            req.period = req.period or 1
            req.period_unit = req.period_unit or "Month"
        body = _m(self.client.run_instances(req))
        ids = body["InstanceIdSets"]["InstanceIdSet"]
        if wait:
            for iid in ids:
                self.wait_instance(iid, "Running")
        return ids

    def run_instance(self, **kw) -> str:
        ids = self.run_instances(**kw)
        assert len(ids) == 1, ids
        return ids[0]

    def create_instance(self, image: str = IMAGE, itype: str = ITYPE, zone: str | None = ZONE,
                        region: str = REGION, **extra) -> str:
        req = ecs_models.CreateInstanceRequest(region_id=region, image_id=image,
                                               instance_type=itype, zone_id=zone, **extra)
        return _m(self.client.create_instance(req))["InstanceId"]

    def instances(self, region: str = REGION, **kw) -> dict:
        return _m(self.client.describe_instances(
            ecs_models.DescribeInstancesRequest(region_id=region, **kw)))

    def instance(self, iid: str, region: str = REGION) -> dict | None:
        items = self.instances(region=region, instance_ids=json.dumps([iid]))["Instances"]["Instance"]
        assert len(items) <= 1, items
        return items[0] if items else None

    def instance_status(self, iid: str) -> str | None:
        inst = self.instance(iid)
        return inst["Status"] if inst else None

    def wait_instance(self, iid: str, status: str | None, timeout: float = 15.0) -> dict | None:
        return poll(lambda: self.instance(iid),
                    lambda i: (i is None) if status is None else (i is not None and i["Status"] == status),
                    timeout=timeout, what=f"instance {iid} -> {status}")

    def stop(self, iid: str, wait: bool = True, **kw):
        self.client.stop_instance(ecs_models.StopInstanceRequest(instance_id=iid, **kw))
        if wait:
            self.wait_instance(iid, "Stopped")

    def start(self, iid: str, wait: bool = True, **kw):
        self.client.start_instance(ecs_models.StartInstanceRequest(instance_id=iid, **kw))
        if wait:
            self.wait_instance(iid, "Running")

    def delete_instance(self, iid: str, force: bool | None = None):
        self.client.delete_instance(ecs_models.DeleteInstanceRequest(instance_id=iid, force=force))

    # ---- disks -------------------------------------------------------------------------
    def create_disk(self, size: int | None = 20, zone: str = ZONE, category: str | None = None,
                    snapshot_id: str | None = None, name: str | None = None,
                    encrypted: bool | None = None, kms_key_id: str | None = None,
                    region: str = REGION, wait: bool = True) -> str:
        req = ecs_models.CreateDiskRequest(
            region_id=region, zone_id=zone, size=size, disk_category=category,
            snapshot_id=snapshot_id, disk_name=name, encrypted=encrypted, kmskey_id=kms_key_id)
        did = _m(self.client.create_disk(req))["DiskId"]
        if wait:
            self.wait_disk(did, "Available")
        return did

    def attach(self, did: str, iid: str, wait: bool = True, **kw):
        self.client.attach_disk(ecs_models.AttachDiskRequest(disk_id=did, instance_id=iid, **kw))
        if wait:
            self.wait_disk(did, "In_use")

    def detach(self, did: str, iid: str, wait: bool = True):
        self.client.detach_disk(ecs_models.DetachDiskRequest(disk_id=did, instance_id=iid))
        if wait:
            self.wait_disk(did, "Available")

    def delete_disk(self, did: str):
        self.client.delete_disk(ecs_models.DeleteDiskRequest(disk_id=did))

    def disks(self, region: str = REGION, **kw) -> dict:
        return _m(self.client.describe_disks(ecs_models.DescribeDisksRequest(region_id=region, **kw)))

    def disk(self, did: str, region: str = REGION) -> dict | None:
        items = self.disks(region=region, disk_ids=json.dumps([did]))["Disks"]["Disk"]
        assert len(items) <= 1, items
        return items[0] if items else None

    def disk_status(self, did: str) -> str | None:
        d = self.disk(did)
        return d["Status"] if d else None

    def wait_disk(self, did: str, status: str | None, timeout: float = 15.0) -> dict | None:
        return poll(lambda: self.disk(did),
                    lambda d: (d is None) if status is None else (d is not None and d["Status"] == status),
                    timeout=timeout, what=f"disk {did} -> {status}")

    def instance_disks(self, iid: str, disk_type: str | None = None) -> list[dict]:
        return self.disks(instance_id=iid, disk_type=disk_type, page_size=100)["Disks"]["Disk"]

    def data_disk_ids(self, iid: str) -> list[str]:
        ds = sorted(self.instance_disks(iid, "data"), key=lambda d: d.get("Device") or "")
        return [d["DiskId"] for d in ds]

    def system_disk(self, iid: str) -> dict:
        ds = self.instance_disks(iid, "system")
        assert len(ds) == 1, ds
        return ds[0]

    # ---- snapshots ---------------------------------------------------------------------
    def create_snapshot(self, did: str, name: str | None = None, wait: bool = True) -> str:
        sid = _m(self.client.create_snapshot(
            ecs_models.CreateSnapshotRequest(disk_id=did, snapshot_name=name)))["SnapshotId"]
        if wait:
            self.wait_snapshot(sid, "accomplished")
        return sid

    def snapshots(self, region: str = REGION, **kw) -> dict:
        return _m(self.client.describe_snapshots(
            ecs_models.DescribeSnapshotsRequest(region_id=region, **kw)))

    def snapshot(self, sid: str) -> dict | None:
        items = self.snapshots(snapshot_ids=json.dumps([sid]))["Snapshots"]["Snapshot"]
        assert len(items) <= 1, items
        return items[0] if items else None

    def wait_snapshot(self, sid: str, status: str, timeout: float = 15.0) -> dict:
        return poll(lambda: self.snapshot(sid), lambda s: s is not None and s["Status"] == status,
                    timeout=timeout, what=f"snapshot {sid} -> {status}")

    def delete_snapshot(self, sid: str):
        self.client.delete_snapshot(ecs_models.DeleteSnapshotRequest(snapshot_id=sid))

    # ---- reset ----------------------------------------------------------------------------
    def reset(self, did: str | None, sid: str | None, dry_run: bool | None = None) -> dict:
        return _m(self.client.reset_disk(
            ecs_models.ResetDiskRequest(disk_id=did, snapshot_id=sid, dry_run=dry_run)))

    # ---- images --------------------------------------------------------------------------
    def images(self, region: str = REGION, **kw) -> dict:
        return _m(self.client.describe_images(ecs_models.DescribeImagesRequest(region_id=region, **kw)))

    def create_image(self, sid: str, name: str, region: str = REGION) -> str:
        return _m(self.client.create_image(ecs_models.CreateImageRequest(
            region_id=region, snapshot_id=sid, image_name=name)))["ImageId"]

    def delete_image(self, image_id: str, region: str = REGION, force: bool | None = None):
        self.client.delete_image(ecs_models.DeleteImageRequest(region_id=region, image_id=image_id, force=force))


# --------------------------------------------------------------------------------------------
# A standard set-up for ResetDisk: a started instance with one data disk and an accomplished
# snapshot of that disk.


@dataclass
class Rig:
    api: Api
    instance: str
    disk: str
    snapshot: str
    extra_disks: list[str] = field(default_factory=list)


def make_rig(api: Api, running: bool = False, charge: str | None = None, encrypted_key: str | None = None,
             data_disks: int = 1, delete_with_instance: bool | None = None) -> Rig:
    dd = []
    for _ in range(data_disks):
        d = {"size": 20, "category": "cloud_essd"}
        if encrypted_key:
            d.update(encrypted="true", kmskey_id=encrypted_key)
        if delete_with_instance is not None:
            d["delete_with_instance"] = delete_with_instance
        dd.append(d)
    iid = api.run_instance(data_disks=dd, charge=charge)
    disks = api.data_disk_ids(iid)
    assert len(disks) == data_disks, disks
    for did in disks:
        api.wait_disk(did, "In_use")
    sid = api.create_snapshot(disks[0])
    if not running:
        api.stop(iid)
    return Rig(api, iid, disks[0], sid, disks[1:])


# --------------------------------------------------------------------------------------------
# Data plane (NBD): the raw client and the tool wrappers live in nbd_client.py


def attached_disk(api: Api, size: int = 20, iid: str | None = None) -> tuple[str, str]:
    """A data disk In_use on a Running instance (new unless `iid` is given): (instance, disk)."""
    if iid is None:
        iid = api.run_instance()
    did = api.create_disk(size=size)
    api.attach(did, iid)
    return iid, did


def allocated_bytes(path: Path) -> int:
    """Bytes the file system really holds for `path` (sparse files count their data only)."""
    return os.stat(path).st_blocks * 512


# --------------------------------------------------------------------------------------------
# Hand-made signatures


def pct(s: str) -> str:
    """RFC 3986 percent-encoding as ECS signs it (space %20, * %2A, ~ kept)."""
    return urllib.parse.quote(str(s), safe="~")


def v1_string_to_sign(method: str, params: dict) -> str:
    items = sorted((pct(k), pct(v)) for k, v in params.items() if k != "Signature")
    canon = "&".join(f"{k}={v}" for k, v in items)
    return f"{method}&{pct('/')}&{pct(canon)}"


def sign_v1(method: str, params: dict, secret: str) -> str:
    sts = v1_string_to_sign(method, params)
    mac = hmac.new((secret + "&").encode(), sts.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def utc_now(offset_s: float = 0) -> str:
    t = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=offset_s)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RawResp:
    status: int
    headers: dict
    body: bytes
    string_to_sign: str | None = None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> dict:
        return json.loads(self.body)


def v1_params(action: str | None, params: dict, ak: str, nonce: str | None = None,
              timestamp: str | None = None, fmt: str | None = "JSON",
              version: str | None = "2014-05-26") -> dict:
    p = {
        "AccessKeyId": ak,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": nonce or uuid.uuid4().hex,
        "Timestamp": timestamp or utc_now(),
    }
    if action is not None:
        p["Action"] = action
    if version is not None:
        p["Version"] = version
    if fmt is not None:
        p["Format"] = fmt
    p.update({k: str(v) for k, v in params.items() if v is not None})
    return p


def raw_v1(server: Server, action: str | None, params: dict | None = None, ak: str = BOOT_AK,
           secret: str = BOOT_SECRET, method: str = "GET", in_body: bool = False,
           nonce: str | None = None, timestamp: str | None = None, fmt: str | None = "JSON",
           version: str | None = "2014-05-26") -> RawResp:
    """HMAC-SHA1 RPC request. GET: all in query; POST+in_body: all in form body; POST: all in query."""
    p = v1_params(action, params or {}, ak, nonce, timestamp, fmt, version)
    sts = v1_string_to_sign(method, p)
    p["Signature"] = sign_v1(method, p, secret)
    encoded = "&".join(f"{pct(k)}={pct(v)}" for k, v in p.items())
    if method == "POST" and in_body:
        status, headers, body = http("POST", f"{server.endpoint}/", encoded.encode(),
                                     {"Content-Type": "application/x-www-form-urlencoded"})
    else:
        status, headers, body = http(method, f"{server.endpoint}/?{encoded}",
                                     b"" if method == "POST" else None)
    return RawResp(status, headers, body, sts)


def v3_authorization(method: str, query: dict, headers: dict, payload_hash: str, ak: str,
                     secret: str) -> str:
    cq = "&".join(f"{pct(k)}={pct(v)}" for k, v in sorted(query.items()))
    lower = {k.lower(): str(v).strip() for k, v in headers.items()}
    signed = sorted(lower)
    ch = "".join(f"{h}:{lower[h]}\n" for h in signed)
    sh = ";".join(signed)
    canonical = f"{method}\n/\n{cq}\n{ch}\n{sh}\n{payload_hash}"
    sts = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    sig = hmac.new(secret.encode(), sts.encode(), hashlib.sha256).hexdigest()
    return f"ACS3-HMAC-SHA256 Credential={ak},SignedHeaders={sh},Signature={sig}"


EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def raw_v3(server: Server, action: str, query: dict | None = None, ak: str = BOOT_AK,
           secret: str = BOOT_SECRET, nonce: str | None = None, date: str | None = None,
           version: str = "2014-05-26") -> RawResp:
    query = {k: str(v) for k, v in (query or {}).items() if v is not None}
    headers = {
        "host": f"127.0.0.1:{server.port}",
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": date or utc_now(),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "x-acs-content-sha256": EMPTY_SHA256,
    }
    auth = v3_authorization("POST", query, headers, EMPTY_SHA256, ak, secret)
    send = dict(headers)
    send["Host"] = send.pop("host")
    send["Authorization"] = auth
    send["Accept"] = "application/json"
    qs = "&".join(f"{pct(k)}={pct(v)}" for k, v in query.items())
    status, rh, body = http("POST", f"{server.endpoint}/" + (f"?{qs}" if qs else ""), b"", send)
    return RawResp(status, rh, body)


# --------------------------------------------------------------------------------------------
# Legacy SDK (aliyun-python-sdk-core + aliyun-python-sdk-ecs)


def legacy_client(server: Server, ak: str = BOOT_AK, secret: str = BOOT_SECRET,
                  region: str = REGION):
    from aliyunsdkcore.client import AcsClient

    return AcsClient(ak, secret, region, port=server.port, auto_retry=False, timeout=30)


def legacy_request(name: str, **params):
    """e.g. legacy_request('ResetDisk', DiskId=..., SnapshotId=...)."""
    import importlib

    mod = importlib.import_module(f"aliyunsdkecs.request.v20140526.{name}Request")
    req = getattr(mod, f"{name}Request")()
    req.set_endpoint("127.0.0.1")
    req.set_protocol_type("http")
    req.set_accept_format("json")
    for k, v in params.items():
        if v is not None:
            req.add_query_param(k, v)
    return req


def legacy_do(client, req) -> dict:
    return json.loads(client.do_action_with_exception(req))


def legacy_catch(client, req) -> ApiErr:
    from aliyunsdkcore.acs_exception.exceptions import ServerException

    try:
        body = client.do_action_with_exception(req)
    except ServerException as e:
        return ApiErr(e.get_http_status(), e.get_error_code(), e.get_error_msg(), None, e)
    raise AssertionError(f"expected an API error, got success: {body!r}")
