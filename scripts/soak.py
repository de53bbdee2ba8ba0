#!/usr/bin/env python3
"""Soak under abuse (issue 14; not a timed test). See scripts/soak.sh, which builds the release
binaries and runs this.

One release `snapdisk serve` on a temporary data dir, default flags except where said (API
and NBD on loopback TCP; NBD TLS-only with a server certificate from `snapdisk nbd-tls-init`,
or `--nbd-insecure` with --insecure-nbd). For --minutes, all of these run together:

- slowloris: --slowloris HTTP connections (half send a request's headers a byte a second,
  half send nothing), reopened whenever the server closes them;
- idle NBD: --idle-nbd TCP connections to NBD that never negotiate, reopened likewise;
- no-read NBD: --no-read clients of account C that negotiate an export (STARTTLS with C's
  client certificate, then NBD_OPT_GO), send 64 NBD_CMD_READs of 16 MiB and never read a
  reply; reconnected when the server gives up on them;
- greedy tenant A: --greedy-disks disks seeded through the API, then DescribeDisks
  PageSize=100 from 4 threads as fast as they go (`snapdisk-load --tally`); its
  Throttling.User answers are the documented throttling and are counted apart;
- measured tenant B: 5 disks, DescribeDisks at 20 a second from one thread, every latency
  recorded (`snapdisk-load --rate 20 --tally`).

Attackers connect from 127.0.0.2 (B and A from 127.0.0.1, so per-address caps see them as
other peers). The server's VmRSS, VmHWM, threads and open descriptors are sampled every 0.5 s
from /proc. At the end, SIGTERM is sent while the attackers are still connected, and the time
to exit is reported. Prints a Markdown summary with PASS/FAIL per goal; exits 1 on any FAIL.

Usage: scripts/soak.sh [--minutes 5] [--quick] [--insecure-nbd] [--serve-arg=--flag=value ...]
"""

import argparse
import json
import os
import resource
import selectors
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release"
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import nbd_client  # noqa: E402  (the e2e suite's raw NBD client, written from the spec)

ATTACKER_IP = "127.0.0.2"
REGION = "cn-hangzhou"
B_RATE = 20
READ_SIZE, READS = 16 << 20, 64
TCP_ESTABLISHED = "01"  # the st column of /proc/net/tcp


def die(msg):
    raise SystemExit(f"soak: {msg}")


# ---- the server ------------------------------------------------------------------------------

class Server:
    def __init__(self, data, nbd_args, extra):
        self.data = data
        self.log = data / "serve.stderr.log"
        cmd = [str(BIN / "snapdisk"), "serve", "--vms", "none", "--data-dir", str(data), "--listen", "127.0.0.1:0",
               "--transition-ms", "0", *nbd_args, *extra]
        self.cmd = cmd
        env = dict(os.environ, SNAPDISK_LOG="warn")
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        self.api = self.nbd = None
        for line in self.proc.stdout:
            if line.startswith("api listening on "):
                self.api = line.split()[-1]
            elif line.startswith("nbd listening on "):
                host, port = line.split()[-1].rsplit(":", 1)
                self.nbd = (host, int(port))
            elif line.startswith("admin token in "):
                break
        if self.api is None or self.nbd is None:
            die(f"snapdisk serve did not start; see {self.log}:\n{self.log.read_text()[-2000:]}")
        # Keep reading stdout so the server never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        self.token = (data / "admin-token").read_text().strip()

    def admin(self, command, **body):
        req = urllib.request.Request(f"{self.api}/admin/{command}", data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            die(f"admin {command} {body}: HTTP {e.code} {e.read().decode(errors='replace')}")

    def load(self, account, *args):
        """Run snapdisk-load as `account`; its last JSON line (or raw stdout when not JSON)."""
        p = subprocess.run([str(BIN / "snapdisk-load"), "--endpoint", self.api, "--ak", account["AccessKeyId"],
                            "--secret", account["AccessKeySecret"], *args], capture_output=True, text=True)
        if p.returncode != 0:
            die(f"snapdisk-load {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
        return p.stdout

    def stop(self, timeout=120):
        """SIGTERM; seconds until the process exited, and its exit status."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = f"killed: still running {timeout} s after SIGTERM"
        return time.monotonic() - t0, rc


class Sampler(threading.Thread):
    """Peak VmRSS, threads and open descriptors of a process, every 0.5 s."""

    def __init__(self, pid, stop):
        super().__init__(daemon=True)
        self.pid, self.stop = pid, stop
        self.rss_kib = self.hwm_kib = self.threads = self.fds = 0
        self.samples = 0

    def run(self):
        while not self.stop.wait(0.5):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
                fds = len(os.listdir(f"/proc/{self.pid}/fd"))
            except (FileNotFoundError, ProcessLookupError):
                return
            f = {k: v.split()[0] for k, v in (line.split(":", 1) for line in status.splitlines()) if v.split()}
            self.rss_kib = max(self.rss_kib, int(f.get("VmRSS", 0)))
            self.hwm_kib = max(self.hwm_kib, int(f.get("VmHWM", 0)))
            self.threads = max(self.threads, int(f.get("Threads", 0)))
            self.fds = max(self.fds, fds)
            self.samples += 1


def fd_limit(pid):
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return 0


# ---- attackers -------------------------------------------------------------------------------

class Herd:
    """Many connections of one kind, reopened when the server closes them. `drip` sends one more
    byte of an endless HTTP request every second; otherwise the connection sends nothing (what
    the server sends, such as the NBD greeting, is read and dropped)."""

    DRIP = b"GET / HTTP/1.1\r\nHost: soak\r\n" + b"X-Slow: loris\r\n" * 100_000

    def __init__(self, name, addr, count, drip):
        self.name, self.addr, self.count, self.drip = name, addr, count, drip
        self.opened = self.timed_out = self.closed_at_once = self.connect_errors = 0
        self.lifetimes = []
        self.live = {}  # socket -> (opened at, bytes sent)

    def top_up(self, sel):
        while len(self.live) < self.count:
            s = socket.socket()
            try:
                s.bind((ATTACKER_IP, 0))
                s.settimeout(2)
                s.connect(self.addr)
                s.setblocking(False)
            except OSError:
                s.close()
                self.connect_errors += 1
                return
            self.opened += 1
            self.live[s] = [time.monotonic(), 0]
            sel.register(s, selectors.EVENT_READ, self)

    def tick(self):
        if not self.drip:
            return
        for s, st in self.live.items():
            try:
                st[1] += s.send(self.DRIP[st[1]:st[1] + 1])
            except (BlockingIOError, OSError):
                pass  # a closed one is noticed by the selector

    def readable(self, s, sel):
        try:
            if s.recv(65536):
                return  # the greeting, or an error page: the connection is still open
        except BlockingIOError:
            return
        except OSError:
            pass
        life = time.monotonic() - self.live.pop(s)[0]
        sel.unregister(s)
        s.close()
        # Closed within a second: refused by a cap, not by a time limit.
        if life < 1:
            self.closed_at_once += 1
        else:
            self.timed_out += 1
            self.lifetimes.append(life)

    def counts(self):
        return dict(opened=self.opened, timed_out=self.timed_out, closed_at_once=self.closed_at_once,
                    connect_errors=self.connect_errors, lifetimes=list(self.lifetimes), oldest=self.oldest())

    def oldest(self):
        now = time.monotonic()
        return max((now - t for t, _ in self.live.values()), default=0)

    def close_all(self):
        for s in self.live:
            s.close()


def run_herds(herds, stop):
    sel = selectors.DefaultSelector()
    next_tick = 0
    while not stop.is_set():
        now = time.monotonic()
        if now >= next_tick:
            for h in herds:
                h.top_up(sel)
                h.tick()
            next_tick = now + 1
        for key, _ in sel.select(timeout=0.2):
            key.data.readable(key.fileobj, sel)
    for h in herds:
        h.close_all()


class NoReader(threading.Thread):
    """An NBD client that asks for READS reads of READ_SIZE and never reads a reply."""

    def __init__(self, nbd, export, tls_ctx, stop):
        super().__init__(daemon=True)
        self.nbd, self.export, self.tls_ctx, self.stop = nbd, export, tls_ctx, stop
        self.opened = self.closed = 0
        self.errors = {}
        self.lifetimes = []

    def connect(self):
        c = nbd_client.Nbd(self.nbd[1], host=self.nbd[0], timeout=10)
        try:
            c.handshake()
            if self.tls_ctx:
                c.option(nbd_client.OPT_STARTTLS)
                c.sock = self.tls_ctx.wrap_socket(c.sock, server_hostname=self.nbd[0])
            c.go(self.export)
        except BaseException:
            c.close()
            raise
        return c

    def run(self):
        while not self.stop.is_set():
            try:
                c = self.connect()
                for i in range(READS):
                    c.send_request(nbd_client.CMD_READ, (i * READ_SIZE) % (c.size - READ_SIZE), READ_SIZE)
            except Exception as e:  # noqa: BLE001 - any failure is counted and retried
                key = type(e).__name__ + (f": {e}" if len(str(e)) < 80 else "")
                self.errors[key] = self.errors.get(key, 0) + 1
                self.stop.wait(1)
                continue
            self.opened += 1
            t0 = time.monotonic()
            mine = c.sock.getsockname()[1]
            while not self.stop.wait(0.5):
                if server_closed(self.nbd[1], mine):
                    self.closed += 1
                    self.lifetimes.append(time.monotonic() - t0)
                    break
            c.close()


def server_closed(server_port, client_port):
    """Whether the server's end of a loopback connection has left ESTABLISHED. Seen from the
    server's side in /proc/net/tcp: a client that reads nothing never receives the FIN, which
    waits behind the unread replies in the server's send queue."""
    want = (f"{server_port:04X}", f"{client_port:04X}")
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if (f[1].rsplit(":", 1)[1], f[2].rsplit(":", 1)[1]) == want:
            return f[3] != TCP_ESTABLISHED
    return True  # gone altogether


# ---- helpers ---------------------------------------------------------------------------------

def write_creds(cred, where):
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    (where / "ca-cert.pem").write_text(cred["CaCertificatePem"])
    (where / "client-cert.pem").write_text(cred["CertificatePem"])
    key = where / "client-key.pem"
    key.write_text(cred["PrivateKeyPem"])
    key.chmod(0o600)
    return where


def tls_context(creds):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(creds / "ca-cert.pem"))
    ctx.load_cert_chain(str(creds / "client-cert.pem"), str(creds / "client-key.pem"))
    return ctx


def describe_disks(srv, account, seconds, threads, rate=0, page_size=10):
    args = ["--action", "call", "--call", "DescribeDisks", "--param", f"RegionId={REGION}",
            "--param", f"PageSize={page_size}", "--threads", str(threads), "--seconds", str(seconds),
            "--tally", "--json"]
    if rate:
        args += ["--rate", str(rate)]
    return json.loads(srv.load(account, *args).strip().splitlines()[-1])


def life(lifetimes):
    if not lifetimes:
        return "none closed"
    return f"after {statistics.median(lifetimes):.1f} s (median; {min(lifetimes):.1f}–{max(lifetimes):.1f})"


def verdict(ok):
    return "PASS" if ok else "**FAIL**"


# ---- the run ---------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--quick", action="store_true", help="1 minute and 2,000 disks for A, to try the script")
    ap.add_argument("--insecure-nbd", action="store_true", help="NBD in the clear (--nbd-insecure), not TLS")
    ap.add_argument("--slowloris", type=int, default=300)
    ap.add_argument("--idle-nbd", type=int, default=500)
    ap.add_argument("--no-read", type=int, default=4)
    ap.add_argument("--greedy-disks", type=int, default=5000)
    ap.add_argument("--greedy-threads", type=int, default=4)
    ap.add_argument("--serve-arg", action="append", default=[],
                    help="an extra `snapdisk serve` flag, e.g. --serve-arg=--nbd-reply-memory-mib=256")
    ap.add_argument("--keep", action="store_true", help="keep the data dir")
    a = ap.parse_args()
    if a.quick:
        a.minutes, a.greedy_disks = 1, 2000
    seconds = max(1, round(a.minutes * 60))
    for b in ("snapdisk", "snapdisk-load"):
        if not (BIN / b).exists():
            die(f"{BIN / b} is missing: run scripts/soak.sh (it builds the release binaries)")
    probe = socket.socket()
    try:
        probe.bind((ATTACKER_IP, 0))
    except OSError as e:
        die(f"cannot bind {ATTACKER_IP} for the attackers: {e}")
    finally:
        probe.close()
    # Our own descriptors: every attacker connection is one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = a.slowloris + a.idle_nbd + a.no_read + 256
    if soft < need:
        if hard < need:
            die(f"open-file limit {hard} is below the {need} connections this run opens")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    data = Path(tempfile.mkdtemp(prefix="snapdisk-soak-"))
    if a.insecure_nbd:
        nbd_args = ["--nbd-listen", "127.0.0.1:0", "--nbd-insecure"]
    else:
        init = subprocess.run([str(BIN / "snapdisk"), "nbd-tls-init", "--data-dir", str(data)],
                              capture_output=True, text=True)
        if init.returncode != 0:
            die(f"snapdisk nbd-tls-init failed: {init.stderr.strip()}")
        tls = data / "nbd-tls"
        nbd_args = ["--nbd-listen", "127.0.0.1:0", "--nbd-tls-cert", str(tls / "server-cert.pem"),
                    "--nbd-tls-key", str(tls / "server-key.pem")]
    srv = Server(data, nbd_args, a.serve_arg)
    ok = True
    try:
        print(f"# data {data}; server pid {srv.proc.pid}: {' '.join(srv.cmd[1:])}", flush=True)
        srv_fd_limit = fd_limit(srv.proc.pid)
        acct = {n: srv.admin("account-create", Name=n) for n in ("greedy-a", "measured-b", "nbd-c")}
        A, B, C = acct["greedy-a"], acct["measured-b"], acct["nbd-c"]

        print(f"# seeding {a.greedy_disks} disks for A (its request rate lifted meanwhile)", flush=True)
        limits = srv.admin("account-limits", AccountId=A["AccountId"])
        srv.admin("account-limits", AccountId=A["AccountId"], RequestsPerSecond=0)
        srv.load(A, "--action", "seed", "--disks", str(a.greedy_disks), "--threads", "4")
        srv.admin("account-limits", AccountId=A["AccountId"], RequestsPerSecond=limits["RequestsPerSecond"],
                  Burst=limits["Burst"])
        srv.load(B, "--action", "seed", "--disks", "5", "--threads", "1")
        export = srv.load(C, "--action", "running-disk").strip()
        tls_ctx = None
        if not a.insecure_nbd:
            tls_ctx = tls_context(write_creds(srv.admin("nbd-credential-issue", AccountId=C["AccountId"]),
                                              data / "creds-c"))
        # Check the NBD path before relying on it.
        NoReader(srv.nbd, export, tls_ctx, threading.Event()).connect().close()

        print("# B alone for 5 s (baseline)", flush=True)
        base = describe_disks(srv, B, 5, 1, rate=B_RATE)

        print(f"# soak: {seconds} s", flush=True)
        stop = threading.Event()
        sampler = Sampler(srv.proc.pid, stop)
        sampler.start()
        api = srv.api.removeprefix("http://").rsplit(":", 1)
        api = (api[0], int(api[1]))
        herds = [Herd("HTTP slowloris (a header byte a second)", api, a.slowloris // 2, True),
                 Herd("HTTP idle (nothing sent)", api, a.slowloris - a.slowloris // 2, False),
                 Herd("NBD idle (never negotiates)", srv.nbd, a.idle_nbd, False)]
        herd_thread = threading.Thread(target=run_herds, args=(herds, stop), daemon=True)
        herd_thread.start()
        readers = [NoReader(srv.nbd, export, tls_ctx, stop) for _ in range(a.no_read)]
        for r in readers:
            r.start()
        time.sleep(2)  # every attacker connected before the tenants start
        results = {}

        def tenant(name, *args, **kw):
            results[name] = describe_disks(srv, *args, **kw)

        tenants = [threading.Thread(target=tenant, args=("A", A, seconds, a.greedy_threads), kwargs={"page_size": 100}),
                   threading.Thread(target=tenant, args=("B", B, seconds, 1), kwargs={"rate": B_RATE})]
        for t in tenants:
            t.start()
        for t in tenants:
            t.join()
        if set(results) != {"A", "B"}:
            die("a tenant's load run failed (see above)")
        # The attackers' figures up to now: what follows is the shutdown.
        seen = {h.name: h.counts() for h in herds}
        oldest = {n: c["oldest"] for n, c in seen.items()}
        no_read = [(r.opened, list(r.lifetimes), dict(r.errors)) for r in readers]
        # SIGTERM while every attacker is still connected.
        stop_s, rc = srv.stop()
        stop.set()
        herd_thread.join(10)
        for r in readers:
            r.join(10)
    except BaseException:
        if srv.proc.poll() is None:
            srv.proc.kill()
        print(f"# server log: {srv.log}", file=sys.stderr)
        raise

    ra, rb = results["A"], results["B"]
    b_bad = {k: v for k, v in (rb["answers"] or {}).items() if k != "OK"}
    a_other = {k: v for k, v in (ra["answers"] or {}).items() if k not in ("OK", "Throttling.User")}
    rss = sampler.rss_kib / 1024
    hwm = sampler.hwm_kib / 1024
    header_limit = 10  # --http-header-timeout-ms and --nbd-negotiation-timeout-ms defaults, seconds
    over = {n: t for n, t in oldest.items() if t > header_limit + 5}
    extra = a.serve_arg
    checks = [
        (f"B's DescribeDisks p99 < 10 ms ({B_RATE}/s, {rb['requests']:,} requests)",
         f"p99 {rb['p99_ms']:.2f} ms (p50 {rb['p50_ms']:.2f}, max {rb['max_ms']:.2f}); "
         f"alone before: p99 {base['p99_ms']:.2f} ms (p50 {base['p50_ms']:.2f})", rb["p99_ms"] < 10),
        ("no refused legitimate request: every B request answered",
         f"{rb['answers'].get('OK', 0):,} OK" + (f", refused {b_bad}" if b_bad else ", 0 refused"), not b_bad),
        ("no refusal of A beyond documented throttling (Throttling.User)",
         f"{ra['answers'].get('OK', 0):,} answered, {ra['answers'].get('Throttling.User', 0):,} Throttling.User "
         f"({ra['rps']:,.0f} req/s)" + (f", other {a_other}" if a_other else ", 0 other"), not a_other),
        ("server peak RSS < 512 MiB", f"{rss:.0f} MiB sampled (VmHWM {hwm:.0f} MiB)", hwm < 512),
        (f"no slowloris/idle connection outlives its time limit ({header_limit} s) + 5 s",
         "oldest at the end: " + ", ".join(f"{t:.1f} s" for t in oldest.values()), not over),
    ]
    ok = all(c[2] for c in checks)
    mode = "quick mode, " if a.quick else ""
    print()
    print(f"## Soak: {seconds} s ({mode}{os.cpu_count()} cores), NBD {'in the clear' if a.insecure_nbd else 'TLS'}"
          + (f", extra serve flags {' '.join(extra)}" if extra else ""))
    print()
    print("| goal | measured | result |")
    print("|---|---|---|")
    for goal, got, passed in checks:
        print(f"| {goal} | {got} | {verdict(passed)} |")
    print()
    print("| server | |")
    print("|---|---|")
    print(f"| peak open descriptors | {sampler.fds:,} (limit {srv_fd_limit:,}) |")
    print(f"| peak threads | {sampler.threads:,} |")
    print(f"| samples (every 0.5 s) | {sampler.samples} |")
    print(f"| SIGTERM with attackers connected | exited after {stop_s:.1f} s, status {rc} |")
    print()
    print("| attacker (until SIGTERM) | connections | opened | closed by the server's time limits | closed at once (caps) "
          "| connect failures |")
    print("|---|---|---|---|---|---|")
    for h in herds:
        c = seen[h.name]
        print(f"| {h.name} | {h.count} | {c['opened']:,} | {c['timed_out']:,} {life(c['lifetimes'])} "
              f"| {c['closed_at_once']:,} | {c['connect_errors']:,} |")
    opened = sum(n for n, _, _ in no_read)
    closed = [x for _, lifetimes, _ in no_read for x in lifetimes]
    errors = {}
    for _, _, errs in no_read:
        for k, v in errs.items():
            errors[k] = errors.get(k, 0) + v
    print(f"| NBD no-read ({READS} × {READ_SIZE >> 20} MiB reads each) | {a.no_read} | {opened:,} "
          f"| {len(closed):,} {life(closed)} | – | {sum(errors.values()):,} {errors or ''} |")
    if a.keep:
        print(f"\n(data dir kept: {data})")
    else:
        subprocess.run(["rm", "-rf", str(data)])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
