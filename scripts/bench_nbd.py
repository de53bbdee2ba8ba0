#!/usr/bin/env python3
"""NBD benchmark (not a test): the same tools against Snapdisk and against qemu-nbd
--cache=none serving a raw file and a qcow2 file, in the same run, printed as one table.
The reference runs as its users run it for speed: qemu-nbd --cache=none with each AIO mode
this qemu has (threads, native, and io_uring when built in); every configuration tried is a
column, and each metric's reference is the best of them.

Usage: scripts/bench-nbd.sh [--quick] [--only=NAME,...] [--base=PATH]
  (builds the release binaries, then runs this)
  --only   run only these targets: none, writeback, raw, qcow2, base
  --base   also run another snapdisk binary (--cache none) as "Snapdisk base", to compare builds
Needs fio (with its nbd engine), qemu-nbd, qemu-img (bench) and nbdcopy.
"""
import json, os, shutil, signal, subprocess, sys, tempfile, time

QUICK = "--quick" in sys.argv
SIZE = "256M" if QUICK else "1G"
RUNTIME = 3 if QUICK else 5
ROUNDS = 1 if QUICK else 3
ARGS = dict(a[2:].split("=", 1) for a in sys.argv[1:] if "=" in a)
ONLY = set(ARGS["only"].split(",")) if "only" in ARGS else None
BASE = ARGS.get("base")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")


def settle():
    """Write back what any earlier run left dirty (the writeback target leaves a GiB), so that
    no target pays for another's page cache."""
    os.sync()
    time.sleep(0.5)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def fio(uri, rw, bs, depth):
    """MiB/s for 1 MiB requests, IOPS for 4 KiB ones (reads and writes together for the mixed
    70/30 load); every run lasts RUNTIME seconds (a pass over the working set alone is under a
    second at these speeds, too short to be steady)."""
    settle()
    args = ["fio", "--name=b", "--ioengine=nbd", f"--uri={uri}", f"--rw={rw}", f"--bs={bs}",
            f"--iodepth={depth}", f"--size={SIZE}", "--output-format=json", "--group_reporting",
            "--time_based", f"--runtime={RUNTIME}"] + (["--rwmixread=70"] if rw == "randrw" else [])
    out = run(args)
    job = json.loads(out[out.index("{"):])["jobs"][0]  # fio may print notes before the JSON
    if rw == "randrw":
        return job["read"]["iops"] + job["write"]["iops"]
    side = job["read"] if "read" in rw else job["write"]
    return side["bw_bytes"] / 2**20 if bs == "1M" else side["iops"]


def nbdcopy(uri, size_bytes, passes=3):
    settle()
    t = time.time()
    for _ in range(passes):
        run(["nbdcopy", uri, "null:"])
    return passes * size_bytes / 2**20 / (time.time() - t)


# In the order each target runs them: the sequential write fills the disk first.
METRICS = [
    ("seq write MiB/s (fio 1M QD8)", lambda uri, n: fio(uri, "write", "1M", 8)),
    ("seq read MiB/s (fio 1M QD8)", lambda uri, n: fio(uri, "read", "1M", 8)),
    ("seq read MiB/s (nbdcopy)", nbdcopy),
    ("4K randread IOPS QD1 (fio)", lambda uri, n: fio(uri, "randread", "4k", 1)),
    ("4K randwrite IOPS QD1 (fio)", lambda uri, n: fio(uri, "randwrite", "4k", 1)),
    ("4K randread IOPS QD32 (fio)", lambda uri, n: fio(uri, "randread", "4k", 32)),
    ("4K randwrite IOPS QD32 (fio)", lambda uri, n: fio(uri, "randwrite", "4k", 32)),
    ("4K randrw 70/30 IOPS QD1 (fio)", lambda uri, n: fio(uri, "randrw", "4k", 1)),
    ("4K randrw 70/30 IOPS QD32 (fio)", lambda uri, n: fio(uri, "randrw", "4k", 32)),
    ("4K read IOPS QD32 (qemu-img bench)", lambda uri, n: qemu_img_bench(uri, False)),
    ("4K write IOPS QD32 (qemu-img bench)", lambda uri, n: qemu_img_bench(uri, True)),
]


def qemu_img_bench(uri, write):
    """qemu-img bench: 4 KiB requests at consecutive offsets, 32 in flight."""
    count = 10000 if QUICK else 40000
    args = ["qemu-img", "bench", "-f", "raw", "-c", str(count), "-d", "32", "-s", "4096"] + (["-w"] if write else [])
    settle()
    out = run(args + [uri])
    secs = float(out.split("Run completed in")[1].split("seconds")[0])
    return count / secs


def wait_port(proc, pattern, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        line = proc.stdout.readline()
        if line.startswith(pattern):
            return line[len(pattern):].strip()
    raise SystemExit(f"no '{pattern}' from {proc.args}")


def free_port():
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    return p


def qemu_nbd(path, fmt, aio):
    """qemu-nbd --cache=none with the AIO mode `aio`; None when this qemu cannot run it."""
    port = free_port()
    p = subprocess.Popen(["qemu-nbd", "-f", fmt, "--cache=none", f"--aio={aio}", "-b", "127.0.0.1",
                          "-p", str(port), "-x", "bench", "--persistent", "--shared=16", path],
                         stderr=subprocess.DEVNULL)
    for _ in range(100):
        if p.poll() is not None:
            return None  # e.g. io_uring not built into this qemu
        try:
            run(["nbdinfo", "--size", f"nbd://127.0.0.1:{port}/bench"])
            return p, f"nbd://127.0.0.1:{port}/bench"
        except subprocess.CalledProcessError:
            time.sleep(0.1)
    p.kill()
    return None


def wanted(short):
    return ONLY is None or short in ONLY


def start_snapdisk(work, cache, env, binary=None):
    binary = binary or os.path.join(BIN, "snapdisk")
    # No VMs: "running-disk" makes a Running instance, whose guest would take CPU from the
    # run (a --base binary older than VMs has no --vms and runs none anyway).
    has_vms = "--vms" in run([binary, "serve", "--help"])
    srv = subprocess.Popen([binary, "serve", *(["--vms", "none"] if has_vms else []), "--data-dir", os.path.join(work, cache + ("-base" if binary != os.path.join(BIN, "snapdisk") else "")),
                            "--listen", "127.0.0.1:0", "--nbd-listen", "127.0.0.1:0", "--nbd-insecure", "--transition-ms", "10",
                            "--cache", cache], stdout=subprocess.PIPE, text=True, env=env)
    api = wait_port(srv, "api listening on ")
    nbd = wait_port(srv, "nbd listening on ")
    disk = run([os.path.join(BIN, "snapdisk-load"), "--endpoint", api, "--action", "running-disk"], env=env).strip()
    return srv, f"nbd://{nbd}/{disk}"


def main():
    size_bytes = int(SIZE[:-1]) * (2**30 if SIZE.endswith("G") else 2**20)
    work = tempfile.mkdtemp(prefix="snapdisk-bench-")
    env = dict(os.environ, SNAPDISK_ACCESS_KEY_ID="LTAIbench", SNAPDISK_ACCESS_KEY_SECRET="benchsecret",
               SNAPDISK_LOG="warn")
    targets, procs = {}, []
    try:
        for cache in ("none", "writeback"):
            if wanted(cache):
                srv, uri = start_snapdisk(work, cache, env)
                procs.append(srv)
                targets[f"Snapdisk {cache}"] = uri
        if BASE:
            srv, uri = start_snapdisk(work, "none", env, BASE)
            procs.append(srv)
            targets["Snapdisk base"] = uri
        for fmt in ("raw", "qcow2"):
            if not wanted(fmt):
                continue
            for aio in ("threads", "native", "io_uring"):
                path = os.path.join(work, f"ref-{aio}.{fmt}")
                run(["qemu-img", "create", "-f", fmt, path, "40G"])
                started = qemu_nbd(path, fmt, aio)
                if started is None:
                    print(f"# qemu-nbd --aio={aio} does not run here: not measured", flush=True)
                    continue
                procs.append(started[0])
                targets[f"qemu-nbd {fmt} {aio}"] = started[1]
        # Each metric runs on every target back to back, so the targets it compares are
        # measured within seconds of each other, and each figure is the median of its rounds:
        # drift in the machine (the host's disk, other load) favours no one.
        samples = {t: {} for t in targets}
        for _ in range(ROUNDS):
            for k, measure in METRICS:
                for t, uri in targets.items():
                    samples[t].setdefault(k, []).append(measure(uri, size_bytes))
        results = {t: {k: sorted(v)[len(v) // 2] for k, v in m.items()} for t, m in samples.items()}
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM); p.wait()
        shutil.rmtree(work, ignore_errors=True)
    cols = list(results)
    refs = {fmt: [c for c in cols if c.startswith(f"qemu-nbd {fmt} ")] for fmt in ("raw", "qcow2")}
    print(f"\nNBD over loopback, {os.cpu_count()} cores, {SIZE} working set, random runs {RUNTIME} s, "
          f"median of {ROUNDS} round(s); every configuration tried, and each Snapdisk column against the "
          f"best qemu-nbd configuration of each format for that metric\n")
    mine = [c for c in cols if c.startswith("Snapdisk")]
    ratio_cols = [f"{m} / best {fmt}" for m in mine for fmt in refs if refs[fmt]]
    print("| metric | " + " | ".join(cols) + " | best raw | best qcow2 | " + " | ".join(ratio_cols) + " |")
    print("|---|" + "---|" * (len(cols) + 2 + len(ratio_cols)))
    for k in results[cols[0]]:
        best = {}
        for fmt, names in refs.items():
            if names:
                name = max(names, key=lambda c: results[c][k])
                best[fmt] = (name.split()[-1], results[name][k])
        cells = [f"{results[c][k]:,.0f}" for c in cols]
        cells += [f"{best[f][1]:,.0f} ({best[f][0]})" if f in best else "–" for f in ("raw", "qcow2")]
        cells += [f"{results[m][k] / best[f][1]:.2f}×" for m in mine for f in refs if refs[f]]
        print(f"| {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
