#!/usr/bin/env python3
"""NBD over TLS beside plain NBD, in the same run (not a test); see scripts/bench-nbd-tls.sh.

Two release Snapdisk servers on loopback TCP, the same binary and flags but for NBD security:
"TLS" (`--nbd-tls-cert/--nbd-tls-key` from `snapdisk nbd-tls-init`; the client presents a
certificate issued by `nbd-credential-issue` for the disk's account) and "plain"
(`--nbd-insecure`). On each, a 40 GiB data disk of a Running instance. fio's nbd engine
(libnbd) measures, on both, 1 MiB sequential write and read (MiB/s, QD8) and 4 KiB random read
and write (IOPS, QD1 and QD32). Each metric runs on both targets back to back, the first of
the two alternating from round to round; each figure is the median of the rounds with the
spread (min–max), and the cost is TLS / plain.

fio's nbd engine does not let a URI name its certificates (`tls-certificates=` needs
nbd_set_uri_allow_local_file, which fio does not call), so fio runs as an unprivileged user
(uid 65534) whose HOME holds them where libnbd looks by default: `$HOME/.pki/libnbd`. The
plain runs use the same user, so both sides differ only in TLS.

Usage: scripts/bench-nbd-tls.sh [--quick] [--rounds N] [--runtime S] [--size 1G]
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release"
AK, SECRET = "LTAItlsbench", "tlsbenchsecret"
NOBODY = 65534

# (label, fio rw, block size, queue depth), in the order they run: the sequential write fills
# the working set first.
METRICS = [
    ("seq write MiB/s (1 MiB, QD8)", "write", "1M", 8),
    ("seq read MiB/s (1 MiB, QD8)", "read", "1M", 8),
    ("4K randread IOPS QD1", "randread", "4k", 1),
    ("4K randwrite IOPS QD1", "randwrite", "4k", 1),
    ("4K randread IOPS QD32", "randread", "4k", 32),
    ("4K randwrite IOPS QD32", "randwrite", "4k", 32),
]


def die(msg):
    raise SystemExit(f"bench-nbd-tls: {msg}")


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        die(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{(p.stdout + p.stderr).strip()[-2000:]}")
    return p.stdout


def start_server(data, nbd_args, env):
    """(process, API endpoint, NBD host:port, bootstrap account id)."""
    log = open(data.parent / f"{data.name}.stderr.log", "wb")
    p = subprocess.Popen([str(BIN / "snapdisk"), "serve", "--vms", "none", "--data-dir", str(data), "--listen", "127.0.0.1:0",
                          "--transition-ms", "10", *nbd_args], stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    api = nbd = account = None
    for line in p.stdout:
        if line.startswith("api listening on "):
            api = line.split()[-1]
        elif line.startswith("nbd listening on "):
            nbd = line.split()[-1]
        elif line.startswith("account "):
            account = line.split()[1]
        elif line.startswith("admin token in "):
            break
    if not (api and nbd and account):
        die(f"snapdisk serve did not start; see {log.name}")
    return p, api, nbd, account


def admin(data, api, command, *kv):
    return json.loads(run([str(BIN / "snapdisk"), "admin", "--endpoint", api, "--data-dir", str(data), command, *kv]))


def settle():
    """Write back what an earlier run left dirty, so no run pays for another's."""
    os.sync()
    time.sleep(0.5)


def fio(home, uri, rw, bs, depth, size, runtime):
    settle()
    cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
           "env", f"HOME={home}", "fio", "--name=b", "--ioengine=nbd", f"--uri={uri}", f"--rw={rw}", f"--bs={bs}",
           f"--iodepth={depth}", f"--size={size}", "--output-format=json", "--group_reporting",
           "--time_based", f"--runtime={runtime}"]
    out = run(cmd, cwd=home)
    job = json.loads(out[out.index("{"):])["jobs"][0]  # fio may print notes before the JSON
    if job.get("error"):
        die(f"fio {rw} on {uri}: error {job['error']}")
    side = job["read"] if "read" in rw else job["write"]
    return side["bw_bytes"] / 2**20 if bs == "1M" else side["iops"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 round of 3 s runs on 256 MiB, to try the script")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runtime", type=int, default=5, help="seconds per fio run")
    ap.add_argument("--size", default="1G", help="fio working set")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.runtime, a.size = 1, 3, "256M"
    for tool in ("fio", "setpriv"):
        if not shutil.which(tool):
            die(f"{tool} is not installed (apt-get install fio util-linux)")
    if "nbd" not in run(["fio", "--enghelp"]):
        die("this fio has no nbd engine (it needs fio built with libnbd)")
    if os.geteuid() != 0:
        die("run as root: fio is run as uid 65534 with its own HOME holding the client certificate")

    work = Path(tempfile.mkdtemp(prefix="snapdisk-nbd-tls-"))
    env = dict(os.environ, SNAPDISK_ACCESS_KEY_ID=AK, SNAPDISK_ACCESS_KEY_SECRET=SECRET, SNAPDISK_LOG="warn")
    procs = []
    try:
        tls_data = work / "tls"
        run([str(BIN / "snapdisk"), "nbd-tls-init", "--data-dir", str(tls_data)])
        certs = tls_data / "nbd-tls"
        p, tls_api, tls_nbd, tls_account = start_server(
            tls_data, ["--nbd-listen", "127.0.0.1:0", "--nbd-tls-cert", str(certs / "server-cert.pem"),
                       "--nbd-tls-key", str(certs / "server-key.pem")], env)
        procs.append(p)
        plain_data = work / "plain"
        plain_data.mkdir()
        p, plain_api, plain_nbd, _ = start_server(plain_data, ["--nbd-listen", "127.0.0.1:0", "--nbd-insecure"], env)
        procs.append(p)

        # fio's user and its certificates, where libnbd looks when the URI names none.
        home = work / "fio-home"
        pki = home / ".pki" / "libnbd"
        pki.mkdir(parents=True)
        cred = admin(tls_data, tls_api, "nbd-credential-issue", f"AccountId={tls_account}")
        (pki / "ca-cert.pem").write_text(cred["CaCertificatePem"])
        (pki / "client-cert.pem").write_text(cred["CertificatePem"])
        (pki / "client-key.pem").write_text(cred["PrivateKeyPem"])
        (pki / "client-key.pem").chmod(0o600)
        work.chmod(0o755)
        for d, _, files in os.walk(home):
            os.chown(d, NOBODY, NOBODY)
            for f in files:
                os.chown(os.path.join(d, f), NOBODY, NOBODY)

        disk = {name: run([str(BIN / "snapdisk-load"), "--endpoint", api, "--action", "running-disk"], env=env).strip()
                for name, api in (("TLS", tls_api), ("plain", plain_api))}
        targets = {"TLS": f"nbds://{tls_nbd}/{disk['TLS']}", "plain": f"nbd://{plain_nbd}/{disk['plain']}"}
        # Both paths work, and TLS is really required on the TLS one.
        for name, uri in targets.items():
            run(["nbdinfo", "--size", uri], env=dict(os.environ, HOME=str(home)), user=NOBODY, group=NOBODY)
        refused = subprocess.run(["nbdinfo", "--size", f"nbd://{tls_nbd}/{disk['TLS']}"], capture_output=True)
        if refused.returncode == 0:
            die("the TLS server answered a plaintext client")
        print(f"# {os.cpu_count()} cores; TLS {targets['TLS']}, plain {targets['plain']}; "
              f"{a.rounds} round(s) of {a.runtime} s on {a.size}", flush=True)

        samples = {(m[0], t): [] for m in METRICS for t in targets}
        for r in range(a.rounds):
            order = ["TLS", "plain"] if r % 2 == 0 else ["plain", "TLS"]
            for label, rw, bs, depth in METRICS:
                for t in order:
                    v = fio(home, targets[t], rw, bs, depth, a.size, a.runtime)
                    samples[(label, t)].append(v)
                    print(f"# round {r + 1} {label} {t}: {v:,.0f}", flush=True)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    def fmt(vals):
        med = statistics.median(vals)
        return med, f"{med:,.0f} ({min(vals):,.0f}–{max(vals):,.0f})" if len(vals) > 1 else f"{med:,.0f}"

    print()
    print(f"NBD over loopback TCP, TLS vs plain, {os.cpu_count()} cores, fio nbd engine (libnbd), "
          f"{a.size} working set, {a.runtime} s runs, median of {a.rounds} round(s) (min–max)"
          + (" — quick mode" if a.quick else ""))
    print()
    print("| metric | TLS | plain | TLS / plain (cost) |")
    print("|---|---|---|---|")
    for label, *_ in METRICS:
        tv, ts = fmt(samples[(label, "TLS")])
        pv, ps = fmt(samples[(label, "plain")])
        print(f"| {label} | {ts} | {ps} | {tv / pv:.2f}× |")


if __name__ == "__main__":
    main()
