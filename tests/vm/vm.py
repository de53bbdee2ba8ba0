#!/usr/bin/env python3
"""Boot the Snapdisk test guest (tests/vm/build_image.py) under qemu and talk to it.

A library (Guest) and a small CLI for tests/vm/selftest.sh:

    vm.py boot --log LOG (--system IMG | --system-nbd SOCKET:EXPORT) [--data IMG]
               [--user-data FILE] (--powerdown | --kill-after-flushed N) [--timeout S]

prints "first-byte=<s> ready=<s> [ready-after-reset=<s>] exit=<s>" (seconds since qemu
started; ready-after-reset from the system_reset (--reset-once); exit from the powerdown, or
"killed") and exits 0 when the guest behaved. The guest's protocol is at
the top of tests/vm/guest/init.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

PREFIX = "SNAPDISK-GUEST "


class GuestError(Exception):
    pass


def drive_args(ident, path=None, nbd=None, bootindex=None):
    """-drive/-device for one virtio-blk disk: a raw file, or an NBD export (unix socket)."""
    if nbd:
        sock, _, export = nbd.partition(":")
        drive = (f"driver=nbd,server.type=unix,server.path={sock},export={export},"
                 f"if=none,id={ident},cache=none")
    else:
        drive = f"file={path},format=raw,if=none,id={ident},cache=none"
    dev = f"virtio-blk-pci,drive={ident}" + (f",bootindex={bootindex}" if bootindex is not None else "")
    return ["-drive", drive, "-device", dev]


class Guest:
    def __init__(self, log, system=None, system_nbd=None, data=None, user_data=None,
                 workdir=None, extra=()):
        self.log = log
        self.workdir = workdir or tempfile.mkdtemp(prefix="snapdisk-vm-")
        self.qmp_path = os.path.join(self.workdir, "qmp.sock")
        cmd = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-smp", "1",
               "-display", "none", "-nic", "none", "-no-user-config",
               "-serial", f"file:{log}",
               "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        cmd += drive_args("d0", system, system_nbd, bootindex=0)
        if data:
            cmd += drive_args("d1", data)
        if user_data:
            cmd += ["-fw_cfg", f"name=opt/com.snapdisk/user-data,file={user_data}"]
        self.cmd = cmd + list(extra)
        self.proc = None
        self.t0 = None
        self.first_byte = None
        self.lines = []  # (seconds since start, line without the prefix)
        self._pos = 0
        self._partial = b""

    def start(self):
        if os.path.exists(self.log):
            os.unlink(self.log)
        open(self.log, "wb").close()
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                     stderr=open(self.log + ".qemu-stderr", "wb"))
        return self

    def _poll(self):
        with open(self.log, "rb") as f:
            f.seek(self._pos)
            data = f.read()
        if not data:
            return
        now = time.monotonic() - self.t0
        if self.first_byte is None:
            self.first_byte = now
        self._pos += len(data)
        buf = self._partial + data
        *complete, self._partial = buf.split(b"\n")
        for raw in complete:
            line = raw.decode(errors="replace").rstrip("\r")
            if line.startswith(PREFIX):
                self.lines.append((now, line[len(PREFIX):]))

    def wait_line(self, pattern, timeout=60.0, start=0):
        """Waits for a guest line (from the start-th on) matching the regex pattern;
        returns (seconds since qemu started, match)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            self._poll()
            for t, line in self.lines[seen:]:
                m = rx.fullmatch(line)
                if m:
                    return t, m
            seen = len(self.lines)
            if self.proc.poll() is not None:
                self._poll()
                raise GuestError(f"qemu exited ({self.proc.returncode}) before {pattern!r}")
            if time.monotonic() > deadline:
                raise GuestError(f"no {pattern!r} within {timeout}s")
            time.sleep(0.01)

    def qmp(self, *commands):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.qmp_path)
        f = s.makefile("rw")
        json.loads(f.readline())  # greeting
        out = []
        for c in ("qmp_capabilities",) + commands:
            f.write(json.dumps({"execute": c}) + "\n")
            f.flush()
            while True:
                msg = json.loads(f.readline())
                if "return" in msg or "error" in msg:
                    break  # events ({"event": ...}) are skipped
            if "error" in msg:
                raise GuestError(f"QMP {c}: {msg['error']}")
            out.append(msg["return"])
        s.close()
        return out

    def powerdown(self, timeout=20.0):
        """system_powerdown; returns the seconds until qemu exited."""
        t = time.monotonic()
        self.qmp("system_powerdown")
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise GuestError(f"qemu did not exit within {timeout}s of system_powerdown")
        self._poll()
        if rc != 0:
            raise GuestError(f"qemu exited {rc}")
        return time.monotonic() - t

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._poll()

    def guest_lines(self):
        self._poll()
        return [l for _, l in self.lines]


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("boot")
    b.add_argument("--log", required=True)
    g = b.add_mutually_exclusive_group(required=True)
    g.add_argument("--system")
    g.add_argument("--system-nbd", metavar="SOCKET:EXPORT")
    b.add_argument("--data")
    b.add_argument("--user-data")
    w = b.add_mutually_exclusive_group(required=True)
    w.add_argument("--powerdown", action="store_true")
    w.add_argument("--kill-after-flushed", type=int, metavar="N")
    b.add_argument("--reset-once", action="store_true",
                   help="system_reset after the first 'ready', then wait for 'ready' again")
    b.add_argument("--timeout", type=float, default=60.0, help="for each line waited for")
    a = ap.parse_args()

    guest = Guest(a.log, system=a.system, system_nbd=a.system_nbd, data=a.data,
                  user_data=a.user_data).start()
    try:
        t_ready, _ = guest.wait_line("ready", a.timeout)
        if a.reset_once:
            seen = len(guest.guest_lines())
            guest.qmp("system_reset")
            t_reset = time.monotonic() - guest.t0
            t2, _ = guest.wait_line("ready", a.timeout, start=seen)
            reset = f" ready-after-reset={t2 - t_reset:.2f}"
        else:
            reset = ""
        if a.powerdown:
            t_exit = f"{guest.powerdown():.2f}"
            if "poweroff" not in guest.guest_lines():
                raise GuestError("no 'poweroff' line")
        else:
            guest.wait_line(f"flushed={a.kill_after_flushed}", a.timeout)
            guest.kill()
            t_exit = "killed"
    except GuestError as e:
        guest.kill()
        print(f"FAIL: {e}; guest lines: {guest.guest_lines()}", file=sys.stderr)
        sys.exit(1)
    print(f"first-byte={guest.first_byte:.2f} ready={t_ready:.2f}{reset} exit={t_exit}")


if __name__ == "__main__":
    main()
