#!/usr/bin/env python3
"""Build (or reuse) the tiny bootable x86 disk image that the e2e tests boot under qemu.

    python3 tests/vm/build_image.py [--out DIR] [--force]

Prints the path of the raw image as the last line of stdout; progress goes to stderr.

The image (64 MiB, raw): syslinux's MBR; partition 1, FAT16, bootable, from 1 MiB to the end,
holding syslinux (ldlinux.sys, ldlinux.c32), syslinux.cfg, Debian's cloud kernel (vmlinuz) and
an initramfs (initrd.gz: busybox-static with its applet links, the kernel modules the guest
needs, and tests/vm/guest/init as /init). The guest's protocol is documented at the top of
tests/vm/guest/init. Nothing is mounted: sfdisk, mkfs.fat --offset, syslinux --offset --install
and mcopy work on the plain file, and the initramfs cpio is written here.

Cache: ${SNAPDISK_CACHE:-$HOME/.cache/snapdisk}/vm-image-<key>/snapdisk-vm.img, where <key> is a
short hash of this script, the files under tests/vm/guest/ and the versions of the kernel,
busybox-static and syslinux packages. With --out DIR the image goes to DIR/snapdisk-vm.img
instead (reused when DIR/build-info.json has the same key). A cache hit answers in well under a
second: the kernel version that apt resolves is remembered per state of apt's package lists.

Needs root for apt-get: installs busybox-static, syslinux, syslinux-common, mtools, dosfstools,
fdisk when missing, and qemu-system-x86 + qemu-utils (for the tests that boot the image; the
Debian qemu-system-x86 replaces a newer qemu-utils, so qemu-utils is put back after it). The
kernel package (linux-image-<ver>-cloud-amd64, the one the linux-image-cloud-amd64 metapackage
depends on) is only downloaded and unpacked, never installed.
"""

import argparse
import fcntl
import glob
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
GUEST_DIR = os.path.join(HERE, "guest")
IMAGE_NAME = "snapdisk-vm.img"
INFO_NAME = "build-info.json"

IMAGE_SIZE = 64 << 20
PART_START = 1 << 20  # partition 1 starts at 1 MiB
BOOT_COUNTER_OFFSET = PART_START - 512  # 1048064, see tests/vm/guest/init
KERNEL_META = "linux-image-cloud-amd64"
# Modules the guest loads (their dependencies are added, and built-in ones dropped, from the
# kernel package itself): the virtio PCI transport and disk, fw_cfg for the user data, the ACPI
# power button and evdev to read it.
WANTED_MODULES = ["virtio_pci", "virtio_blk", "qemu_fw_cfg", "button", "evdev"]
KERNEL_APPEND = "console=ttyS0 loglevel=3 mitigations=off"
# Packages whose version changes the image (part of the cache key).
IMAGE_PACKAGES = ["busybox-static", "syslinux", "syslinux-common"]
BUILD_PACKAGES = IMAGE_PACKAGES + ["mtools", "dosfstools", "fdisk"]
MBR_CANDIDATES = ["/usr/lib/syslinux/mbr/mbr.bin", "/usr/lib/SYSLINUX/mbr.bin"]
APT_LISTS = "/var/lib/apt/lists"

T0 = time.monotonic()


def log(msg):
    print(f"[build_image {time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    """Runs cmd; its stdout goes to our stderr unless captured; raises with its output on failure."""
    kw.setdefault("stdout", sys.stderr)
    r = subprocess.run(cmd, **kw)
    if r.returncode != 0:
        raise SystemExit(f"build_image: command failed ({r.returncode}): {' '.join(cmd)}")
    return r


def capture(cmd, check=True):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"build_image: {' '.join(cmd)} failed: {r.stderr.strip()}")
    return r


# --- apt -------------------------------------------------------------------------------------

_apt_updated = False


def apt_update_once():
    global _apt_updated
    if _apt_updated:
        return False
    _apt_updated = True
    log("apt-get update")
    run(["apt-get", "update"], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return True


def apt_install(pkgs):
    if not pkgs:
        return
    cmd = ["apt-get", "install", "-y", "--no-install-recommends"] + pkgs
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log("apt-get install " + " ".join(pkgs))
    r = subprocess.run(cmd, env=env, stdout=sys.stderr)
    if r.returncode != 0 and apt_update_once():
        r = subprocess.run(cmd, env=env, stdout=sys.stderr)
    if r.returncode != 0:
        raise SystemExit(f"build_image: apt-get install {' '.join(pkgs)} failed")


def installed_versions(pkgs):
    """{package: version} for those of pkgs that are installed."""
    r = capture(["dpkg-query", "-W", "-f=${Package} ${Version} ${db:Status-Abbrev}\n"] + pkgs,
                check=False)
    out = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2].startswith("ii"):
            out[parts[0]] = parts[1]
    return out


def ensure_packages():
    """Installs what is missing; returns the versions of IMAGE_PACKAGES."""
    have = installed_versions(BUILD_PACKAGES)
    apt_install([p for p in BUILD_PACKAGES if p not in have])
    # The tests boot the image with these. Debian's qemu-system-x86 (7.2) removes a newer
    # qemu-utils (qemu-block-extra conflicts), so qemu-utils is installed after it.
    if not shutil.which("qemu-system-x86_64"):
        apt_install(["qemu-system-x86"])
    if not (shutil.which("qemu-nbd") and shutil.which("qemu-img")):
        apt_install(["qemu-utils"])
    have = installed_versions(IMAGE_PACKAGES)
    missing = [p for p in IMAGE_PACKAGES if p not in have]
    if missing:
        raise SystemExit(f"build_image: still not installed: {missing}")
    return have


def lists_signature():
    """Identifies the state of apt's package lists (names, sizes, mtimes)."""
    h = hashlib.sha256()
    for p in sorted(glob.glob(os.path.join(APT_LISTS, "*_Packages*"))):
        try:
            st = os.stat(p)
        except OSError:
            continue
        h.update(f"{os.path.basename(p)} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def resolve_kernel(cache_root):
    """(package, version) of the kernel that linux-image-cloud-amd64 depends on.

    apt-cache takes about a second here, so the answer is remembered per lists_signature()."""
    memo = os.path.join(cache_root, "kernel-resolve.json")
    sig = lists_signature()
    try:
        with open(memo) as f:
            m = json.load(f)
        if m.get("lists") == sig:
            return m["package"], m["version"]
    except (OSError, ValueError, KeyError):
        pass
    for attempt in range(2):
        r = capture(["apt-cache", "show", "--no-all-versions", KERNEL_META], check=False)
        dep = re.search(r"^Depends:.*?\b(linux-image-[0-9][^\s,()]*-cloud-amd64)\b"
                        r"(?:\s*\(=\s*([^\s)]+)\))?", r.stdout, re.M)
        if r.returncode == 0 and dep:
            break
        if attempt == 0 and apt_update_once():
            sig = lists_signature()
            continue
        raise SystemExit(f"build_image: cannot resolve {KERNEL_META}: {r.stderr.strip()}")
    pkg, ver = dep.group(1), dep.group(2)
    if not ver:  # the metapackage does not pin it: ask
        r = capture(["apt-cache", "show", "--no-all-versions", pkg])
        m = re.search(r"^Version:\s*(\S+)", r.stdout, re.M)
        if not m:
            raise SystemExit(f"build_image: no version for {pkg}")
        ver = m.group(1)
    os.makedirs(cache_root, exist_ok=True)
    tmp = memo + f".{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump({"lists": sig, "package": pkg, "version": ver}, f)
    os.replace(tmp, memo)
    return pkg, ver


# --- cache key -------------------------------------------------------------------------------


def cache_key(kernel, versions):
    h = hashlib.sha256()
    with open(os.path.abspath(__file__), "rb") as f:
        h.update(b"script\0" + f.read() + b"\0")
    for root, dirs, files in sorted(os.walk(GUEST_DIR)):
        dirs.sort()
        for name in sorted(files):
            p = os.path.join(root, name)
            with open(p, "rb") as f:
                h.update(f"file {os.path.relpath(p, GUEST_DIR)}\0".encode() + f.read() + b"\0")
    h.update(f"kernel {kernel[0]} {kernel[1]}\0".encode())
    for p in sorted(versions):
        h.update(f"pkg {p} {versions[p]}\0".encode())
    return h.hexdigest()[:12]


# --- kernel and modules ----------------------------------------------------------------------


def fetch_kernel(cache_root, kernel, workdir):
    """Downloads (or reuses) the kernel .deb and unpacks it into workdir/kernel."""
    pkg, ver = kernel
    debs = os.path.join(cache_root, "debs")
    os.makedirs(debs, exist_ok=True)
    found = [p for p in glob.glob(os.path.join(debs, f"{pkg}_*.deb"))
             if capture(["dpkg-deb", "-f", p, "Version"], check=False).stdout.strip() == ver]
    if found:
        deb = found[0]
        log(f"kernel package cached: {deb}")
    else:
        dl = tempfile.mkdtemp(prefix="dl-", dir=debs)
        log(f"apt-get download {pkg}={ver}")
        run(["apt-get", "download", "-o", "APT::Sandbox::User=root", f"{pkg}={ver}"], cwd=dl)
        got = glob.glob(os.path.join(dl, "*.deb"))
        if len(got) != 1:
            raise SystemExit(f"build_image: apt-get download gave {got}")
        for old in glob.glob(os.path.join(debs, "linux-image-*.deb")):
            os.unlink(old)  # keep only the newest kernel
        deb = os.path.join(debs, os.path.basename(got[0]))
        os.replace(got[0], deb)
        shutil.rmtree(dl)
    out = os.path.join(workdir, "kernel")
    run(["dpkg-deb", "-x", deb, out])
    vmlinuz = glob.glob(os.path.join(out, "boot", "vmlinuz-*"))
    if len(vmlinuz) != 1:
        raise SystemExit(f"build_image: expected one vmlinuz in {deb}, found {vmlinuz}")
    kver = os.path.basename(vmlinuz[0])[len("vmlinuz-"):]
    for base in ("lib/modules", "usr/lib/modules"):
        moddir = os.path.join(out, base, kver)
        if os.path.isdir(moddir):
            break
    else:
        raise SystemExit(f"build_image: no modules directory for {kver} in {deb}")
    return vmlinuz[0], kver, moddir


def read_module(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".ko"):
        return data
    if path.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.endswith(".ko.zst"):
        return subprocess.run(["zstd", "-dc"], input=data, stdout=subprocess.PIPE,
                              check=True).stdout
    raise SystemExit(f"build_image: unknown module format {path}")


def modinfo(elf):
    """The key=value strings of an ELF64 module's .modinfo section."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise SystemExit("build_image: not a little-endian ELF64 module")
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def section(i):
        name, _type, _flags, _addr, off, size = struct.unpack_from("<IIQQQQ", elf,
                                                                  shoff + i * shentsize)
        return name, off, size

    _, stroff, _ = section(shstrndx)
    for i in range(shnum):
        name, off, size = section(i)
        end = elf.index(b"\0", stroff + name)
        if elf[stroff + name:end] == b".modinfo":
            out = {}
            for item in elf[off:off + size].split(b"\0"):
                k, sep, v = item.decode(errors="replace").partition("=")
                if sep:
                    out.setdefault(k, v)
            return out
    return {}


def norm(name):
    return name.replace("-", "_")


def resolve_modules(moddir):
    """[(name, bytes)] of WANTED_MODULES and their dependencies, dependencies first."""
    builtin = set()
    bpath = os.path.join(moddir, "modules.builtin")
    if os.path.exists(bpath):
        with open(bpath) as f:
            for line in f:
                builtin.add(norm(os.path.basename(line.strip()).split(".ko")[0]))
    index = {}
    for root, _dirs, files in os.walk(os.path.join(moddir, "kernel")):
        for name in files:
            if ".ko" in name:
                index[norm(name.split(".ko")[0])] = os.path.join(root, name)
    order, seen = [], set()

    def visit(name, chain):
        name = norm(name)
        if name in seen or name in builtin:
            return
        if name in chain:
            raise SystemExit(f"build_image: module dependency cycle at {name}")
        if name not in index:
            raise SystemExit(f"build_image: module {name} neither built in nor in the package")
        data = read_module(index[name])
        for dep in filter(None, modinfo(data).get("depends", "").split(",")):
            visit(dep, chain + [name])
        seen.add(name)
        order.append((name, data))

    for m in WANTED_MODULES:
        if norm(m) in builtin:
            log(f"module {m}: built in")
        visit(m, [])
    return order


# --- initramfs -------------------------------------------------------------------------------


class Cpio:
    """A newc cpio archive, written here so that device nodes need no mknod."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.ino = 1
        self.names = set()

    def _entry(self, name, mode, data=b"", rdev=(0, 0)):
        if name in self.names:
            return
        self.names.add(name)
        nb = name.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(mode) else 1
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(nb), 0))
        self.ino += 1
        self.buf.write(hdr.encode() + nb)
        self.buf.write(b"\0" * (-(110 + len(nb)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name):
        parts = name.split("/")
        for i in range(1, len(parts) + 1):
            self._entry("/".join(parts[:i]), stat.S_IFDIR | 0o755)

    def file(self, name, data, mode=0o644):
        if "/" in name:
            self.dir(os.path.dirname(name))
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name, target):
        if "/" in name:
            self.dir(os.path.dirname(name))
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor, mode=0o600):
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def has_interp(elf):
    """Whether an ELF64 executable asks for a dynamic loader (PT_INTERP)."""
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    return any(struct.unpack_from("<I", elf, phoff + i * phentsize)[0] == 3 for i in range(phnum))


def build_iobench():
    """guest/iobench.c (the guest side of scripts/bench-vm.sh), compiled static with cc."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise SystemExit("build_image: a C compiler (cc) is needed for guest/iobench.c")
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "iobench")
        run([cc, "-O2", "-static", "-Wall", "-o", out, os.path.join(GUEST_DIR, "iobench.c")])
        with open(out, "rb") as f:
            data = f.read()
    if has_interp(data):
        raise SystemExit("build_image: iobench did not link statically")
    return data


def build_initramfs(modules, kver, key):
    busybox = "/bin/busybox"
    with open(busybox, "rb") as f:
        bb = f.read()
    if has_interp(bb):
        raise SystemExit(f"build_image: {busybox} is not static (install busybox-static)")
    applets = capture([busybox, "--list-full"]).stdout.split()
    c = Cpio()
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "run", "tmp",
              "etc/snapdisk", "lib/modules/snapdisk"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3, 0o666)
    c.file("bin/busybox", bb, 0o755)
    for a in applets:
        if a != "bin/busybox":
            c.symlink(a, "/bin/busybox")
    with open(os.path.join(GUEST_DIR, "init"), "rb") as f:
        c.file("init", f.read(), 0o755)
    c.file("bin/iobench", build_iobench(), 0o755)
    for name, data in modules:
        c.file(f"lib/modules/snapdisk/{name}.ko", data)
    c.file("etc/snapdisk/modules", "".join(f"{n}\n" for n, _ in modules).encode())
    c.file("etc/snapdisk/build", f"key={key}\nkernel={kver}\n".encode())
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(c.finish())
    return out.getvalue()


# --- the disk image --------------------------------------------------------------------------


def build_image(path, vmlinuz, initrd, workdir):
    mbr = next((p for p in MBR_CANDIDATES if os.path.exists(p)), None)
    if not mbr:
        raise SystemExit(f"build_image: syslinux mbr.bin not found in {MBR_CANDIDATES}")
    with open(path, "wb") as f:
        f.truncate(IMAGE_SIZE)
    part_sectors = (IMAGE_SIZE - PART_START) // 512
    layout = ("label: dos\nlabel-id: 0x534e4150\nunit: sectors\n\n"
              f"start={PART_START // 512}, size={part_sectors}, type=e, bootable\n")
    run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", path], input=layout.encode())
    with open(mbr, "rb") as f:
        code = f.read()[:440]
    with open(path, "r+b") as f:
        f.write(code)  # boot code only: the disk signature and the table stay
    run(["mkfs.fat", "-F", "16", "-n", "SNAPDISK", "-i", "534e4150",
         "-h", str(PART_START // 512), f"--offset={PART_START // 512}", path,
         str(part_sectors // 2)])
    run(["syslinux", "--offset", str(PART_START), "--install", path])
    cfg = ("DEFAULT snapdisk\nPROMPT 0\nTIMEOUT 0\nNOESCAPE 1\n"
           "LABEL snapdisk\n  LINUX /vmlinuz\n  INITRD /initrd.gz\n"
           f"  APPEND {KERNEL_APPEND}\n")
    files = {"syslinux.cfg": cfg.encode(), "initrd.gz": initrd}
    for name, data in files.items():
        with open(os.path.join(workdir, name), "wb") as f:
            f.write(data)
    shutil.copyfile(vmlinuz, os.path.join(workdir, "vmlinuz"))
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    run(["mcopy", "-o", "-i", f"{path}@@{PART_START}"]
        + [os.path.join(workdir, n) for n in ("vmlinuz", "initrd.gz", "syslinux.cfg")]
        + ["::/"], env=env)
    listing = capture(["mdir", "-a", "-b", "-i", f"{path}@@{PART_START}", "::/"]).stdout.split()
    for want in ("LDLINUX.SYS", "LDLINUX.C32", "VMLINUZ", "INITRD.GZ", "SYSLINUX.CFG"):
        if not any(os.path.basename(p).upper() == want for p in listing):
            raise SystemExit(f"build_image: {want} missing from the FAT partition: {listing}")
    with open(path, "rb") as f:
        f.seek(BOOT_COUNTER_OFFSET)
        if f.read(512) != b"\0" * 512:
            raise SystemExit("build_image: the boot counter sector is not empty")
        f.seek(510)
        if f.read(2) != b"\x55\xaa":
            raise SystemExit("build_image: no MBR signature")
    return cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="directory for the image (default: the cache directory)")
    ap.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = ap.parse_args()

    cache_root = os.path.join(os.environ.get("SNAPDISK_CACHE")
                              or os.path.join(os.path.expanduser("~"), ".cache", "snapdisk"))
    os.makedirs(cache_root, exist_ok=True)

    versions = installed_versions(IMAGE_PACKAGES)
    tools_ok = all(shutil.which(t) for t in ("qemu-system-x86_64", "qemu-nbd", "qemu-img"))
    if len(versions) != len(IMAGE_PACKAGES) or not tools_ok:
        versions = ensure_packages()
    kernel = resolve_kernel(cache_root)
    key = cache_key(kernel, versions)
    out_dir = os.path.abspath(args.out) if args.out else os.path.join(cache_root, f"vm-image-{key}")
    image = os.path.join(out_dir, IMAGE_NAME)
    info_path = os.path.join(out_dir, INFO_NAME)

    def cached():
        try:
            with open(info_path) as f:
                return json.load(f).get("key") == key and os.path.isfile(image)
        except (OSError, ValueError):
            return False

    if cached() and not args.force:
        log(f"cached: {image}")
        print(image)
        return

    with open(os.path.join(cache_root, ".build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time (another may finish ours)
        if cached() and not args.force:
            log(f"built meanwhile: {image}")
            print(image)
            return
        ensure_packages()  # the mkfs/syslinux/mtools tools too
        log(f"building key {key}: {kernel[0]} {kernel[1]}, "
            + ", ".join(f"{p} {v}" for p, v in sorted(versions.items())))
        with tempfile.TemporaryDirectory(prefix="build-", dir=cache_root) as work:
            vmlinuz, kver, moddir = fetch_kernel(cache_root, kernel, work)
            modules = resolve_modules(moddir)
            log("modules, in load order: " + " ".join(n for n, _ in modules))
            initrd = build_initramfs(modules, kver, key)
            log(f"initramfs: {len(initrd)} bytes")
            os.makedirs(out_dir, exist_ok=True)
            tmp_image = os.path.join(out_dir, f".{IMAGE_NAME}.{os.getpid()}")
            try:
                cfg = build_image(tmp_image, vmlinuz, initrd, work)
            except BaseException:
                if os.path.exists(tmp_image):
                    os.unlink(tmp_image)
                raise
            info = {
                "key": key,
                "image": image,
                "kernel_package": kernel[0],
                "kernel_package_version": kernel[1],
                "kernel_release": kver,
                "packages": versions,
                "modules": [n for n, _ in modules],
                "syslinux_cfg": cfg,
                "boot_counter_offset": BOOT_COUNTER_OFFSET,
                "partition_start": PART_START,
                "size": IMAGE_SIZE,
            }
            if os.path.exists(info_path):
                os.unlink(info_path)
            os.replace(tmp_image, image)
            with open(info_path + ".tmp", "w") as f:
                json.dump(info, f, indent=2)
            os.replace(info_path + ".tmp", info_path)  # written last: marks the image complete
        log(f"built: {image}")
    print(image)


if __name__ == "__main__":
    main()
