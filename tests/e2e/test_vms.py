"""Instances that really run (issue 11): RunInstances boots a VM (qemu-system-x86_64, TCG) from
an image imported with ImportImage, on Snapdisk's disks over the NBD socket, and what the API
does is seen from inside the guest, through GetInstanceConsoleOutput and the official SDK.

The guest is tests/vm/build_image.py's tiny image (Debian's cloud kernel, busybox, syslinux);
its console protocol is at the top of tests/vm/guest/init: it counts boots on the system disk,
writes a pattern to the data disk, echoes its user data, and powers off on the ACPI button.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alibabacloud_ecs20140526 import models as ecs_models

from nbd_client import Nbd
from support import REGION, ZONE, _m, poll

REPO = Path(__file__).resolve().parents[2]
PREFIX = "SNAPDISK-GUEST "
ITYPE = "ecs.g7.large"
BOOT_SECONDS = 90  # one TCG boot takes about 3 s here; CI machines may be slower


@pytest.fixture(scope="module")
def guest_image() -> Path:
    out = subprocess.run([sys.executable, str(REPO / "tests/vm/build_image.py")],
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-4000:]
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def vm_server(make_server, guest_image, tmp_path_factory):
    bucket = tmp_path_factory.mktemp("oss-images")
    # A copy: a link out of the bucket is not an object of it.
    subprocess.run(["cp", "--sparse=always", str(guest_image), str(bucket / "guest.raw")], check=True)
    return make_server("vms", extra_args=[
        "--vms", "qemu", "--accel", "tcg", "--vm-max-vcpus", "1", "--vm-max-memory-mib", "256",
        "--vm-stop-timeout-ms", "30000", "--oss-bucket", f"images={bucket}", "--shutdown-grace-ms", "8000",
    ])


@pytest.fixture(scope="module")
def api(vm_server):
    return vm_server.tenant()


@pytest.fixture(scope="module")
def image(api) -> str:
    """ImportImage of the guest: Creating with a Progress, then Available."""
    req = ecs_models.ImportImageRequest(
        region_id=REGION, image_name="snapdisk-guest", architecture="x86_64", ostype="linux",
        disk_device_mapping=[ecs_models.ImportImageRequestDiskDeviceMapping(
            ossbucket="images", ossobject="guest.raw", format="RAW", disk_image_size=1)])
    body = _m(api.client.import_image(req))
    iid = body["ImageId"]
    assert body["RegionId"] == REGION and body["TaskId"]

    def state():
        r = api.client.describe_images(ecs_models.DescribeImagesRequest(
            region_id=REGION, image_id=iid, status="Creating,Available,CreateFailed"))
        return _m(r)["Images"]["Image"][0]

    img = poll(state, lambda i: i["Status"] != "Creating", timeout=60, interval=0.2, what="import")
    assert img["Status"] == "Available" and img["Progress"] == "100%", img
    assert img["DiskDeviceMappings"]["DiskDeviceMapping"][0]["ImportOSSObject"] == "guest.raw"
    return iid


def console(api, iid: str) -> list[str]:
    """The guest's own console lines (prefix stripped) of its latest start."""
    body = _m(api.client.get_instance_console_output(ecs_models.GetInstanceConsoleOutputRequest(
        region_id=REGION, instance_id=iid, remove_symbols=True)))
    assert body["InstanceId"] == iid
    text = base64.b64decode(body["ConsoleOutput"]).decode(errors="replace")
    return [line.strip()[len(PREFIX):] for line in text.splitlines() if line.strip().startswith(PREFIX)]


def wait_console(api, iid: str, pred, what: str, timeout: float = BOOT_SECONDS) -> list[str]:
    """Poll the console of a Running instance (the log of a start begins when its VM does:
    until the instance is Running, the console may still be the previous start's)."""
    wait_status(api, iid, "Running", timeout=timeout)
    return poll(lambda: console(api, iid), pred, timeout=timeout, interval=0.25, what=what)


def boots(lines: list[str]) -> list[int]:
    return [int(m.group(1)) for m in (re.fullmatch(r"boot=(\d+)", line) for line in lines) if m]


def ready(lines: list[str]) -> bool:
    return "ready" in lines


def value(lines: list[str], key: str) -> str:
    found = [line[len(key) + 1:] for line in lines if line.startswith(key + "=")]
    assert found, (key, lines)
    return found[-1]


def run(api, image: str, user_data: str | None = None, data_disk: bool = True) -> str:
    ud = base64.b64encode(user_data.encode()).decode() if user_data else None
    return api.run_instance(
        image=image, itype=ITYPE, zone=ZONE, user_data=ud,
        data_disks=[{"size": 20, "category": "cloud_essd"}] if data_disk else None)


def wait_status(api, iid: str, status: str, timeout: float = BOOT_SECONDS):
    return api.wait_instance(iid, status, timeout=timeout)


def test_reset_disk_is_seen_from_inside_the_guest(api, image, vm_server):
    """The seed's scenario, observed by the machine itself."""
    iid = run(api, image, user_data="pattern=hello\nmode=plain")
    lines = wait_console(api, iid, ready, "boot 1")
    assert boots(lines) == [1]
    assert value(lines, "userdata") == "pattern=hello"
    assert value(lines, "data-before") == ""
    assert "data-written" in lines
    sys_disk = api.system_disk(iid)["DiskId"]
    data_disk = api.data_disk_ids(iid)[0]

    api.stop(iid, wait=False)
    wait_status(api, iid, "Stopped")
    assert "poweroff" in console(api, iid), "the guest halted cleanly"
    snap_sys = api.create_snapshot(sys_disk)
    snap_data = api.create_snapshot(data_disk)

    api.start(iid, wait=False)
    wait_status(api, iid, "Running")
    lines = wait_console(api, iid, ready, "boot 2")
    assert boots(lines) == [2]
    assert value(lines, "data-before") == "SNAPDISK-PATTERN boot=1 pattern=hello"
    assert "data-written" in lines, lines

    api.stop(iid, wait=False)
    wait_status(api, iid, "Stopped")
    # What boot 2 wrote is on the data disk (read back through a snapshot's NBD export).
    check = api.create_snapshot(data_disk)
    with Nbd.open(0, check, unix=vm_server.nbd_socket) as n:
        assert n.read(0, 40).startswith(b"SNAPDISK-PATTERN boot=2 pattern=hello\n"), n.read(0, 64)
    api.reset(sys_disk, snap_sys)
    api.wait_disk(sys_disk, "In_use")
    api.start(iid, wait=False)
    lines = wait_console(api, iid, ready, "boot after the reset")
    assert boots(lines) == [2], "the system disk went back to the snapshot: boot 2 again, not 3"
    # The data disk was not reset: it holds what boot 2 wrote.
    assert value(lines, "data-before") == "SNAPDISK-PATTERN boot=2 pattern=hello"
    api.stop(iid, wait=False)
    wait_status(api, iid, "Stopped")
    api.reset(data_disk, snap_data)
    api.wait_disk(data_disk, "In_use")
    api.start(iid, wait=False)
    lines = wait_console(api, iid, ready, "boot after the data reset")
    assert boots(lines) == [3]
    assert value(lines, "data-before") == "SNAPDISK-PATTERN boot=1 pattern=hello"
    api.delete_instance(iid, force=True)


def test_reboot_resets_the_guest(api, image):
    iid = run(api, image, data_disk=False)
    wait_console(api, iid, ready, "boot 1")
    api.client.reboot_instance(ecs_models.RebootInstanceRequest(instance_id=iid))
    # A reset keeps the console of this start: boot 1, then boot 2.
    lines = wait_console(api, iid, lambda l: boots(l) == [1, 2] and l.count("ready") == 2, "reboot")
    assert value(lines, "userdata") == ""
    wait_status(api, iid, "Running")
    api.delete_instance(iid, force=True)


def vm_info(server, iid: str) -> dict:
    return server.admin("instance-vm", InstanceId=iid)


def test_force_stop_keeps_what_the_guest_flushed(api, image, vm_server):
    iid = run(api, image, user_data="mode=writer")
    lines = wait_console(api, iid, lambda l: any(x.startswith("flushed=") and int(x[8:]) >= 20 for x in l),
                         "the writer", timeout=BOOT_SECONDS + 30)
    data_disk = api.data_disk_ids(iid)[0]
    api.stop(iid, wait=False, force_stop=True)
    wait_status(api, iid, "Stopped", timeout=30)
    assert not vm_info(vm_server, iid)["Running"]
    # Everything reported flushed before the kill is on the disk (read through a snapshot).
    lines = console(api, iid)
    flushed = max(int(x[8:]) for x in lines if x.startswith("flushed="))
    assert flushed >= 20
    snap = api.create_snapshot(data_disk)
    with Nbd.open(0, snap, unix=vm_server.nbd_socket) as n:
        for k in range(1, flushed + 1):
            rec = n.read((1 << 20) + k * 4096, 16)
            assert rec.startswith(f"SEQ {k}\n".encode()), (k, rec)
    api.delete_instance(iid, force=True)


def test_a_vm_that_dies_leaves_the_instance_stopped(api, image, vm_server):
    iid = run(api, image, data_disk=False)
    wait_console(api, iid, ready, "boot 1")
    info = vm_info(vm_server, iid)
    assert info["Running"] and info["SshHost"] == "127.0.0.1" and info["SshPort"] > 0
    os.kill(info["Pid"], signal.SIGKILL)
    wait_status(api, iid, "Stopped", timeout=10)
    # The reason is logged: qemu was killed by a signal (not an orderly power-off).
    log = poll(lambda: vm_server.log_path.read_text(errors="replace"),
               lambda t: iid in t and "the VM died" in t, timeout=5, what="the crash in the log")
    died = [line for line in log.splitlines() if "the VM died" in line and iid in line]
    assert "SIGKILL" in died[-1], died
    # It starts again as usual.
    api.start(iid, wait=False)
    lines = wait_console(api, iid, ready, "boot after the crash")
    assert boots(lines) == [2]
    api.delete_instance(iid, force=True)
    poll(lambda: vm_info(vm_server, iid)["Running"], lambda r: not r, timeout=10, what="VM gone")


def test_server_restart_brings_running_instances_back(api, image, vm_server):
    iid = run(api, image, data_disk=False)
    wait_console(api, iid, ready, "boot 1")
    old_pid = vm_info(vm_server, iid)["Pid"]
    t0 = time.monotonic()
    vm_server.stop(timeout=60)
    # The server's shutdown powered the guest off (it flushed and halted) before NBD closed.
    assert not Path(f"/proc/{old_pid}").exists() or ") Z " in Path(f"/proc/{old_pid}/stat").read_text()
    assert time.monotonic() - t0 < 20
    vm_server.start()
    api2 = api  # same account, same key: the catalog survived
    # Recorded Running, the instance is Starting until its new VM runs, then Running again.
    assert api2.instance_status(iid) in ("Starting", "Running")
    lines = wait_console(api2, iid, ready, "boot after the server restart")
    assert boots(lines) == [2]
    pid = vm_info(vm_server, iid)["Pid"]
    assert pid != old_pid
    # kill -9 of the server: its VMs die with it (no VM outlives the NBD server that was its
    # disks' writer), and the next server starts them again.
    os.kill(vm_server.proc.pid, signal.SIGKILL)
    vm_server.proc.wait()
    vm_server.proc = None
    poll(lambda: Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}").exists() else "gone",
         lambda t: t == "gone" or ") Z " in t, timeout=10, what="the VM of a killed server to die")
    vm_server.start()
    lines = wait_console(api2, iid, ready, "boot after the server was killed")
    assert boots(lines) == [3]
    api2.delete_instance(iid, force=True)


def test_replace_system_disk_boots_the_new_image(api, image, vm_server):
    """An instance from the blank image (no OS: its VM is killed at once on StopInstance) gets the
    guest image with ReplaceSystemDisk and boots it; the old system disk is released."""
    iid = api.run_instance(image="blank_x64_20G.vhd", itype=ITYPE, zone=ZONE)
    old = api.system_disk(iid)["DiskId"]
    t0 = time.monotonic()
    api.stop(iid, wait=False)
    wait_status(api, iid, "Stopped", timeout=20)
    assert time.monotonic() - t0 < 10, "no guest to wait for"
    body = _m(api.client.replace_system_disk(ecs_models.ReplaceSystemDiskRequest(
        instance_id=iid, image_id=image, system_disk=ecs_models.ReplaceSystemDiskRequestSystemDisk(size=20))))
    new = body["DiskId"]
    assert new != old and api.disk(old) is None
    assert api.system_disk(iid)["DiskId"] == new
    assert api.instance(iid)["ImageId"] == image
    api.wait_disk(new, "In_use")
    api.start(iid, wait=False)
    lines = wait_console(api, iid, ready, "boot of the new system disk")
    assert boots(lines) == [1]
    api.delete_instance(iid, force=True)
