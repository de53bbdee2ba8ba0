"""Fleet-scale API benchmark; see scripts/bench-fleet.sh. Three phases on one server: one
resource of each kind; then "one page" (every measured page full: 110 disks, 11 instances, a
disk with 10 snapshots); then the fleet. Prints Markdown tables of ratios (fleet / one
resource, fleet / one page, Snapdisk / ceiling), each the median of --rounds runs with the
spread (min-max) beside it, plus restart time, RSS and on-disk sizes. The ceiling is a
fixed-body axum server measured with the same client and the same signed request, twice: with
a small body, and with a captured DescribeDisks response so that the same bytes cross the wire."""

import argparse
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release"
AK, SECRET = "LTAIfleetbench", "fleetbenchsecret"
R = "RegionId=cn-hangzhou"


def start(cmd, marker, env=None):
    """Start a server; return (process, address from its `marker` line, seconds to that line)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    for line in p.stdout:
        if line.startswith(marker):
            return p, line.split(marker, 1)[1].strip(), time.monotonic() - t0
    raise SystemExit(f"{cmd[0]} exited before printing {marker!r}")


def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)


def load(ep, *args, threads=8, seconds=5):
    out = subprocess.run(
        [BIN / "snapdisk-load", "--endpoint", ep, "--ak", AK, "--secret", SECRET, "--json",
         "--threads", str(threads), "--seconds", str(seconds), *args],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def call(*params):
    args = ["--action", "call"]
    for p in params:
        args += ["--param", p]
    return args


def measurements(fx, disks_file, snap_disk):
    """(label, load arguments, threads) for every measured request."""
    d = lambda *p: call(R, *p) + ["--call", "DescribeDisks"]  # noqa: E731
    return [
        ("DescribeDisks PageSize=10", d("PageSize=10"), 8),
        ("DescribeDisks PageSize=100", d("PageSize=100"), 8),
        ("DescribeDisks PageSize=10, 32 connections", d("PageSize=10"), 32),
        ("DescribeDisks MaxResults=10 (NextToken style)", d("MaxResults=10"), 8),
        ("DescribeSnapshots by DiskId", call(R, f"DiskId={snap_disk}") + ["--call", "DescribeSnapshots"], 8),
        ("DescribeSnapshots account-wide", call(R) + ["--call", "DescribeSnapshots"], 8),
        ("DescribeInstances", call(R) + ["--call", "DescribeInstances"], 8),
        ("ResetDisk DryRun", call(f"DiskId={fx['DiskId']}", f"SnapshotId={fx['SnapshotId']}", "DryRun=true")
         + ["--call", "ResetDisk", "--expect", "400"], 8),
        ("CreateSnapshot", ["--action", "create-snapshots", "--count", "40", "--disks-file", str(disks_file)], 8),
    ]


def measure_all(ep, fx, disks_file, snap_disk, rounds, seconds):
    res = {}
    for label, args, threads in measurements(fx, disks_file, snap_disk):
        res[label] = [load(ep, *args, threads=threads, seconds=seconds) for _ in range(rounds)]
    return res


def seed(ep, disks=0, instances=0, snapshots_per_disk=0, threads=4):
    out = subprocess.run(
        [BIN / "snapdisk-load", "--endpoint", ep, "--ak", AK, "--secret", SECRET, "--action", "seed",
         "--disks", str(disks), "--instances", str(instances), "--snapshots-per-disk", str(snapshots_per_disk),
         "--threads", str(threads)], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def fresh_disks(ep, n, path):
    """n new disks (CreateSnapshot needs a disk per thread with quota left)."""
    path.write_text("\n".join(seed(ep, disks=n)["disks"]) + "\n")


def med(runs, key="rps"):
    return statistics.median(r[key] for r in runs)


def spread(runs, key="rps"):
    vals = [r[key] for r in runs]
    return f"{min(vals):,.0f}–{max(vals):,.0f}"


def du(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--disks", type=int, default=10_000)
    ap.add_argument("--instances", type=int, default=1_000)
    ap.add_argument("--snapshots-per-disk", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a small fleet and short runs, to try the script")
    a = ap.parse_args()
    if a.quick:
        a.disks, a.instances, a.snapshots_per_disk, a.seconds, a.rounds = 500, 50, 4, 2, 1

    data = Path(tempfile.mkdtemp(prefix="snapdisk-fleet-"))
    env = dict(os.environ, SNAPDISK_ACCESS_KEY_ID=AK, SNAPDISK_ACCESS_KEY_SECRET=SECRET, SNAPDISK_LOG="warn")
    serve = [BIN / "snapdisk", "serve", "--vms", "none", "--data-dir", str(data), "--listen", "127.0.0.1:0",
             "--nbd-listen", "127.0.0.1:0", "--nbd-insecure", "--transition-ms", "0",
             # One account drives the whole fleet at full speed: no request rate, and room
             # for every nonce of the run (the defaults protect a shared server instead).
             "--account-requests-per-second", "0", "--max-nonces", "50000000"]
    ceiling, cep, _ = start([BIN / "snapdisk-ceiling", "--listen", "127.0.0.1:0"], "ceiling listening on ")
    server, ep, _ = start(serve, "api listening on ", env)
    print(f"# {os.cpu_count()} cores; server {ep}, ceiling {cep}; data {data}", flush=True)
    try:
        fx = json.loads(subprocess.run(
            [BIN / "snapdisk-load", "--endpoint", ep, "--ak", AK, "--secret", SECRET, "--action", "fixture"],
            check=True, capture_output=True, text=True).stdout)
        small_file, page_file, fleet_file = data / "small-disks", data / "page-disks", data / "fleet-disks"
        fresh_disks(ep, 8, small_file)
        print("# one resource of each kind", flush=True)
        small = measure_all(ep, fx, small_file, fx["DiskId"], a.rounds, a.seconds)
        small_rss = rss_kib(server.pid)

        print("# one page: 100 more disks, 10 more instances, a disk with 10 snapshots", flush=True)
        seed(ep, disks=100, instances=10)
        snap_disk = seed(ep, disks=1, snapshots_per_disk=10)["disks"][0]
        fresh_disks(ep, 8, page_file)
        page = measure_all(ep, fx, page_file, snap_disk, a.rounds, a.seconds)

        print(f"# seeding {a.disks} disks, {a.instances} instances, {a.disks * a.snapshots_per_disk} snapshots",
              flush=True)
        t0 = time.monotonic()
        seeded = seed(ep, a.disks, a.instances, a.snapshots_per_disk, threads=8)
        seed_s = time.monotonic() - t0
        fresh_disks(ep, 8, fleet_file)
        print(f"# seeded in {seed_s:.0f} s: {json.dumps(seeded['rates'])}", flush=True)

        print("# measuring at fleet size", flush=True)
        fleet = measure_all(ep, fx, fleet_file, snap_disk, a.rounds, a.seconds)
        fleet_rss = rss_kib(server.pid)

        # The ceilings, now that a full DescribeDisks page can be captured.
        body = data / "describe-disks-page.json"
        body.write_text(subprocess.run(
            [BIN / "snapdisk-load", "--endpoint", ep, "--ak", AK, "--secret", SECRET, *call(R, "PageSize=10"),
             "--call", "DescribeDisks", "--dump"], check=True, capture_output=True, text=True).stdout)
        same, sep, _ = start([BIN / "snapdisk-ceiling", "--listen", "127.0.0.1:0", "--body-file", str(body)],
                             "ceiling listening on ")
        ceil = {}
        for name, where in (("small body", cep), (f"the same {body.stat().st_size:,} bytes", sep)):
            for conns in (8, 32):
                ceil[(name, conns)] = [load(where, *call(R, "PageSize=10"), "--call", "DescribeDisks",
                                            threads=conns, seconds=a.seconds) for _ in range(a.rounds)]
        stop(same)

        # Restart on the fleet's data dir: time to the API being up, then to a first answer.
        restarts = []
        for _ in range(max(3, a.rounds)):
            stop(server)
            server, ep, up = start(serve, "api listening on ", env)
            t0 = time.monotonic()
            load(ep, *call(R, "PageSize=10"), "--call", "DescribeDisks", threads=1, seconds=0)
            restarts.append((up, up + time.monotonic() - t0))
        restart_rss = rss_kib(server.pid)
    finally:
        stop(server)
        stop(ceiling)

    nd = a.disks + a.instances + 140
    ns = a.disks * a.snapshots_per_disk + 11 + 24 * 40
    store = data / "store"
    ckpt = sum((store / f).stat().st_size for f in ("meta.ckpt", "meta.log") if (store / f).exists())
    print()
    print(f"Fleet: {a.disks:,} disks made by CreateDisk (+{a.instances:,} system disks), {a.instances:,} instances, "
          f"{a.disks * a.snapshots_per_disk:,} snapshots; {a.rounds} rounds of {a.seconds} s, median (min–max).")
    print(f"Seeding through the API took {seed_s:.0f} s "
          f"({', '.join(f'{k} {v:,.0f}' for k, v in seeded['rates'].items())}).")
    print()
    print("| request | conns | one resource req/s | one page req/s | fleet req/s | fleet p99 ms "
          "| fleet / one resource | fleet / one page |")
    print("|---|---|---|---|---|---|---|---|")
    for label, _, threads in measurements(fx, small_file, "-"):
        o, p, f = small[label], page[label], fleet[label]
        print(f"| {label} | {threads} | {med(o):,.0f} ({spread(o)}) | {med(p):,.0f} ({spread(p)}) "
              f"| {med(f):,.0f} ({spread(f)}) | {med(f, 'p99_ms'):.2f} | {med(f) / med(o):.2f} "
              f"| {med(f) / med(p):.2f} |")
    print()
    print("| DescribeDisks PageSize=10, signed | conns | req/s | p99 ms | Snapdisk at fleet size / this |")
    print("|---|---|---|---|---|")
    for conns, label in ((8, "DescribeDisks PageSize=10"), (32, "DescribeDisks PageSize=10, 32 connections")):
        f = fleet[label]
        for (name, c), runs in ceil.items():
            if c == conns:
                print(f"| ceiling, {name} | {conns} | {med(runs):,.0f} ({spread(runs)}) "
                      f"| {med(runs, 'p99_ms'):.2f} | {med(f) / med(runs):.2f} |")
        print(f"| Snapdisk at fleet size | {conns} | {med(f):,.0f} ({spread(f)}) | {med(f, 'p99_ms'):.2f} | 1.00 |")
    print()
    ups = sorted(r[0] for r in restarts)
    firsts = sorted(r[1] for r in restarts)
    print(f"Restart at fleet size (SIGTERM, then serve on the same data dir), {len(restarts)} runs: "
          f"API listening after {ups[len(ups) // 2]:.2f} s ({ups[0]:.2f}–{ups[-1]:.2f}), "
          f"first answer after {firsts[len(firsts) // 2]:.2f} s ({firsts[0]:.2f}–{firsts[-1]:.2f}).")
    print(f"Server RSS: {small_rss / 1024:.0f} MiB with one resource, {fleet_rss / 1024:.0f} MiB at fleet size, "
          f"{restart_rss / 1024:.0f} MiB after the restart "
          f"({(restart_rss - small_rss) * 1024 / (nd + ns):.0f} B per disk or snapshot above the small server).")
    cat = du(data) - du(store)
    print(f"On disk: catalog {cat / 2**20:.1f} MiB ({cat / (nd + ns):.0f} B per disk or snapshot); "
          f"store metadata (meta.ckpt + meta.log) {ckpt / 2**20:.1f} MiB "
          f"({ckpt / nd:.0f} B per volume, {ckpt / ns:.0f} B per snapshot if all of it were snapshots).")
    subprocess.run(["rm", "-rf", str(data)])


if __name__ == "__main__":
    main()
