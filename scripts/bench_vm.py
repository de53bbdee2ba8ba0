#!/usr/bin/env python3
"""VM figures of issue 11 (a benchmark, not a test): in one run,

1. the time from StartInstance (signed, official SDK) to the guest's first console line and to
   its "ready" line, for the accelerator `--accel` picks (KVM where it works, else TCG);
2. the guest's own I/O rates (tests/vm/guest/iobench.c: 4 KiB random read and write, 1 MiB
   sequential read and write, queue depth 1, O_DIRECT, over 1 GiB of the data disk) on a
   Snapdisk disk (the instance's VM, NBD over the server's unix socket), beside the same VM
   (same qemu, accelerator, CPU, memory, virtio-blk in an I/O thread) on a local raw file, in
   matched pairs: Snapdisk `--cache none` (O_DIRECT) beside qemu `cache=none,aio=native`, and
   Snapdisk `--cache writeback` (page cache) beside qemu's default `cache=writeback`. Rounds
   alternate Snapdisk and the reference; medians and the spread are reported;
3. the same guest on raw files served by qemu-nbd (`--cache=none --aio=native`, a unix socket
   per disk, opened as Snapdisk's VMs open theirs), beside Snapdisk `--cache none` (issue 13).

Usage: scripts/bench-vm.sh [--rounds R] [--seconds S] [--boots B] [--accel auto|kvm|tcg]
  env SERVE_ARGS: further `snapdisk serve` flags for both servers (e.g. "--nbd-poll-max-us 0")
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from alibabacloud_ecs20140526 import models as ecs_models  # noqa: E402

from support import REGION, ZONE, Server, _m, poll  # noqa: E402

PREFIX = "SNAPDISK-GUEST "
PHASES = ["randread", "randwrite", "seqread", "seqwrite"]
UNIT = {"randread": "iops", "randwrite": "iops", "seqread": "mibps", "seqwrite": "mibps"}


def log(msg: str):
    print(msg, file=sys.stderr, flush=True)


def console(api, iid: str) -> list[str]:
    body = _m(api.client.get_instance_console_output(ecs_models.GetInstanceConsoleOutputRequest(
        region_id=REGION, instance_id=iid, remove_symbols=True)))
    text = base64.b64decode(body["ConsoleOutput"]).decode(errors="replace")
    return [x.strip() for x in text.splitlines() if x.strip()]


def guest(lines: list[str]) -> list[str]:
    return [x[len(PREFIX):] for x in lines if x.startswith(PREFIX)]


def iobench(lines: list[str]) -> dict:
    out = {}
    for x in guest(lines):
        m = re.match(r"iobench (\w+) ops=\d+ seconds=[\d.]+ iops=(\d+) mibps=([\d.]+)", x)
        if m:
            out[m.group(1)] = float(m.group(2)) if UNIT[m.group(1)] == "iops" else float(m.group(3))
        if x.startswith("error="):
            raise SystemExit(f"guest error: {x}")
    return out


def ud(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def boot_times(api, iid: str, boots: int) -> list[tuple[float, float]]:
    """(first console line, ready) seconds after StartInstance, `boots` times."""
    out = []
    for _ in range(boots):
        api.stop(iid, wait=False)
        api.wait_instance(iid, "Stopped", timeout=120)
        t0 = time.monotonic()
        api.start(iid, wait=False)
        first = None
        while True:
            status = api.instance_status(iid)
            lines = console(api, iid) if status == "Running" else []
            if lines and first is None:
                first = time.monotonic() - t0
            if "ready" in guest(lines):
                out.append((first, time.monotonic() - t0))
                break
            if time.monotonic() - t0 > 180:
                raise SystemExit(f"no boot within 180 s: {lines[-5:]}")
            time.sleep(0.02)
    return out


def snapdisk_round(api, image: str, seconds: int) -> dict:
    iid = api.run_instance(image=image, itype="ecs.g7.large", zone=ZONE,
                           user_data=ud(f"mode=iobench\niobench_seconds={seconds}"),
                           data_disks=[{"size": 20, "category": "cloud_essd"}])
    lines = poll(lambda: console(api, iid), lambda x: "iobench done" in guest(x) or any(
        y.startswith("error=") for y in guest(x)), timeout=seconds * 8 + 180, interval=0.5, what="iobench")
    api.delete_instance(iid, force=True)
    return iobench(lines)


def reference_round(qemu: str, accel: str, system: Path, work: Path, seconds: int, cache: str,
                    nbd: bool = False) -> dict:
    """The same VM on local raw files: the image's copy and a new sparse 20 GiB data disk. With
    `nbd`, each file is served by its own `qemu-nbd --cache=none --aio=native` on a unix socket
    and the VM opens it as Snapdisk's VMs open their disks (issue 13's guest comparison)."""
    sysdisk, data, logf, udf = (work / "ref-system.raw", work / "ref-data.raw", work / "ref-console.log",
                                work / "ref-user-data")
    subprocess.run(["cp", "--sparse=always", str(system), str(sysdisk)], check=True)
    if data.exists():
        data.unlink()
    with open(data, "wb") as f:
        f.truncate(20 << 30)
    udf.write_text(f"mode=iobench\niobench_seconds={seconds}\n")
    logf.write_bytes(b"")
    opts = {"writeback": "cache=writeback,aio=threads", "none": "cache=none,aio=native"}[cache]
    servers = []
    drives = [f"file={sysdisk},{opts}", f"file={data},{opts}"]
    if nbd:
        drives = []
        for i, f in enumerate((sysdisk, data)):
            sock = work / f"ref-nbd{i}.sock"
            sock.unlink(missing_ok=True)
            servers.append(subprocess.Popen(["qemu-nbd", "-f", "raw", "--cache=none", "--aio=native", "-k", str(sock),
                                             "-x", "d", "--persistent", str(f)], stderr=subprocess.DEVNULL))
            for _ in range(100):
                if sock.exists():
                    break
                time.sleep(0.05)
            drives.append(f"file.driver=nbd,file.server.type=unix,file.server.path={sock},file.export=d")
    cmd = [qemu, "-nodefaults", "-no-user-config", "-machine", "pc", "-accel", accel, "-smp", "1", "-m", "256M",
           "-display", "none", "-serial", f"file:{logf}",
           "-object", "iothread,id=io0",
           "-drive", f"if=none,id=disk0,format=raw,{drives[0]}",
           "-device", "virtio-blk-pci,drive=disk0,iothread=io0,bootindex=0",
           "-drive", f"if=none,id=disk1,format=raw,{drives[1]}",
           "-device", "virtio-blk-pci,drive=disk1,iothread=io0",
           "-fw_cfg", f"name=opt/com.snapdisk/user-data,file={udf}"]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + seconds * 8 + 180
        while True:
            lines = [x.strip() for x in logf.read_text(errors="replace").splitlines() if x.strip()]
            if "iobench done" in guest(lines) or any(y.startswith("error=") for y in guest(lines)):
                return iobench(lines)
            if p.poll() is not None:
                raise SystemExit(f"reference qemu exited: {p.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"reference guest did not finish: {lines[-5:]}")
            time.sleep(0.5)
    finally:
        p.kill()
        p.wait()
        for srv in servers:
            srv.terminate()
            srv.wait()
        for f in (sysdisk, data):
            f.unlink(missing_ok=True)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    return f"{min(xs):,.0f}–{max(xs):,.0f}" if max(xs) >= 100 else f"{min(xs):.1f}–{max(xs):.1f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--boots", type=int, default=5)
    ap.add_argument("--accel", default="auto")
    args = ap.parse_args()

    image = Path(subprocess.run([sys.executable, str(REPO / "tests/vm/build_image.py")], check=True,
                                capture_output=True, text=True).stdout.strip().splitlines()[-1])
    work = Path(tempfile.mkdtemp(prefix="bench-vm-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    bucket = work / "bucket"
    bucket.mkdir()
    subprocess.run(["cp", "--sparse=always", str(image), str(bucket / "guest.raw")], check=True)
    # Snapdisk in both data modes, each beside qemu's matching mode on a raw file:
    # --cache none (O_DIRECT) with cache=none,aio=native; --cache writeback (page cache) with
    # cache=writeback (qemu's default).
    servers = {}
    for cache in ("none", "writeback"):
        servers[cache] = Server(
            REPO / "target/release/snapdisk", work / f"data-{cache}", work / f"logs-{cache}", name=f"bench-vm-{cache}",
            extra_args=["--vms", "qemu", "--accel", args.accel, "--vm-max-vcpus", "1", "--vm-max-memory-mib", "256",
                        "--oss-bucket", f"images={bucket}", "--account-requests-per-second", "0", "--cache", cache, *os.environ.get("SERVE_ARGS", "").split()])
    try:
        apis, images = {}, {}
        for cache, srv in servers.items():
            srv.start()
            srv.admin("timings", DiskMs=0, InstanceMs=0, SnapshotMs=0)
            api = apis[cache] = srv.tenant()
            req = ecs_models.ImportImageRequest(region_id=REGION, image_name="bench", disk_device_mapping=[
                ecs_models.ImportImageRequestDiskDeviceMapping(ossbucket="images", ossobject="guest.raw", format="RAW")])
            img = images[cache] = _m(api.client.import_image(req))["ImageId"]
            poll(lambda: _m(api.client.describe_images(ecs_models.DescribeImagesRequest(
                region_id=REGION, image_id=img)))["Images"]["Image"], lambda x: bool(x), timeout=120, what="import")
        text = re.sub(r"\x1b\[[0-9;]*m", "", servers["none"].log_path.read_text(errors="replace"))
        accel = re.search(r'accel="?(\w+)"? reason=(.*)', text)
        if not accel:
            raise SystemExit("the server did not log its accelerator (is qemu-system-x86_64 installed?)")
        accel_name = accel.group(1)
        log(f"accelerator: {accel_name} ({accel.group(2).strip()})")

        api = apis["none"]
        iid = api.run_instance(image=images["none"], itype="ecs.g7.large", zone=ZONE)
        poll(lambda: guest(console(api, iid)), lambda x: "ready" in x, timeout=180, what="first boot")
        times = boot_times(api, iid, args.boots)
        api.delete_instance(iid, force=True)

        snap = {"none": [], "writeback": []}
        refs = {"none": [], "writeback": []}
        nbd_refs = []
        for r in range(args.rounds):
            for cache in ("none", "writeback"):
                log(f"round {r + 1}: Snapdisk --cache {cache}")
                snap[cache].append(snapdisk_round(apis[cache], images[cache], args.seconds))
                log(f"round {r + 1}: raw file, cache={cache}")
                refs[cache].append(reference_round("qemu-system-x86_64", accel_name, image, work, args.seconds, cache))
            log(f"round {r + 1}: raw file through qemu-nbd --cache=none --aio=native")
            nbd_refs.append(reference_round("qemu-system-x86_64", accel_name, image, work, args.seconds, "none",
                                            nbd=True))
    finally:
        for srv in servers.values():
            srv.stop(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    firsts, readys = [t[0] for t in times], [t[1] for t in times]
    print(f"\nStartInstance → guest console, {accel_name}, {len(times)} starts: first line median "
          f"{med(firsts):.2f} s ({min(firsts):.2f}–{max(firsts):.2f}), ready median {med(readys):.2f} s "
          f"({min(readys):.2f}–{max(readys):.2f})")
    print(f"\nGuest I/O, QD1, O_DIRECT in the guest, 1 GiB span, {args.seconds} s per phase, {args.rounds} rounds "
          f"(median, spread), {accel_name}")
    print("| metric | Snapdisk --cache none | raw file cache=none aio=native | ratio "
          "| Snapdisk --cache writeback | raw file cache=writeback | ratio |")
    print("|---|---|---|---|---|---|---|")
    for ph in PHASES:
        unit = "IOPS" if UNIT[ph] == "iops" else "MiB/s"
        cells = []
        for cache in ("none", "writeback"):
            a = [x[ph] for x in snap[cache]]
            b = [x[ph] for x in refs[cache]]
            cells += [f"{med(a):,.1f} ({spread(a)})", f"{med(b):,.1f} ({spread(b)})", f"{med(a) / med(b):.2f}"]
        print(f"| {ph} ({unit}) | " + " | ".join(cells) + " |")
    print("\nThe same guest on a raw file served by qemu-nbd --cache=none --aio=native over a unix socket "
          "(each disk its own qemu-nbd), beside Snapdisk --cache none")
    print("| metric | Snapdisk --cache none | qemu-nbd raw | ratio |")
    print("|---|---|---|---|")
    for ph in PHASES:
        unit = "IOPS" if UNIT[ph] == "iops" else "MiB/s"
        a = [x[ph] for x in snap["none"]]
        b = [x[ph] for x in nbd_refs]
        print(f"| {ph} ({unit}) | {med(a):,.1f} ({spread(a)}) | {med(b):,.1f} ({spread(b)}) | {med(a) / med(b):.2f} |")


if __name__ == "__main__":
    main()
