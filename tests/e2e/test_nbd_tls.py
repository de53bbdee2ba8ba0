"""NBD security (docs/nbd.md, "NBD security"): TLS-only TCP with client certificates that the
operator issues per account, isolation between accounts, revocation, the private unix socket,
and `--nbd-insecure`.

Credentials come from the product itself: `snapdisk nbd-tls-init` (CA and server certificate)
and the operator command `nbd-credential-issue` (a client certificate whose CN is the
account id). The tools read them as qemu and libnbd expect: a directory holding
ca-cert.pem, client-cert.pem and client-key.pem.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from nbd_client import Nbd
from support import attached_disk

TOOLS = ("qemu-io", "nbdinfo", "nbdcopy")


def _have(tool: str) -> bool:
    return subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not all(_have(t) for t in TOOLS), reason=f"needs {TOOLS}")


def run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tls_server(make_server, snapdisk_bin):
    def prepare(data: Path) -> list[str]:
        out = run(str(snapdisk_bin), "nbd-tls-init", "--data-dir", str(data))
        assert out.returncode == 0, out.stderr
        tls = data / "nbd-tls"
        return ["--nbd-listen", "127.0.0.1:0", "--nbd-tls-cert", str(tls / "server-cert.pem"),
                "--nbd-tls-key", str(tls / "server-key.pem")]

    return make_server("nbdtls", prepare=prepare)


def credentials(server, account_id: str, where: Path) -> tuple[Path, str]:
    """Issue a client certificate for the account; (directory in qemu/libnbd layout, serial)."""
    c = server.admin("nbd-credential-issue", AccountId=account_id)
    assert c["AccountId"] == account_id
    where.mkdir(parents=True, exist_ok=True)
    (where / "ca-cert.pem").write_text(c["CaCertificatePem"])
    (where / "client-cert.pem").write_text(c["CertificatePem"])
    key = where / "client-key.pem"
    key.write_text(c["PrivateKeyPem"])
    key.chmod(0o600)
    return where, c["Serial"]


def nbds(server, export: str, creds: Path | None) -> str:
    q = f"?tls-certificates={creds}" if creds else ""
    return f"nbds://127.0.0.1:{server.nbd_port}/{export}{q}"


def qemu_io(server, export: str, creds: Path, *cmds: str) -> subprocess.CompletedProcess:
    # Options that qemu 7.2 and 10.0 both understand.
    opts = (f"driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={server.nbd_port},"
            f"export={export},tls-creds=tls0")
    args = ["qemu-io", "--object", f"tls-creds-x509,id=tls0,endpoint=client,dir={creds}",
            "--image-opts", opts]
    for c in cmds:
        args += ["-c", c]
    return run(*args)


def listed(out: str) -> list[str]:
    """Export names in `nbdinfo --list` output (lines `export="NAME":`)."""
    return [line[len('export="'):].rsplit('"', 1)[0] for line in out.splitlines() if line.startswith('export="')]


@pytest.fixture(scope="module")
def two_accounts(tls_server, tmp_path_factory):
    a, b = tls_server.tenant(), tls_server.tenant()
    _, disk_a = attached_disk(a)
    _, disk_b = attached_disk(b)
    base = tmp_path_factory.mktemp("creds")
    creds_a, serial_a = credentials(tls_server, a.account_id, base / "a")
    creds_b, _ = credentials(tls_server, b.account_id, base / "b")
    return dict(disk_a=disk_a, disk_b=disk_b, creds_a=creds_a, creds_b=creds_b, serial_a=serial_a,
                account_a=a.account_id)


def test_the_ca_key_and_the_socket_are_private(tls_server):
    key = Path(tls_server.data_dir) / "nbd-ca" / "ca-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    sock = Path(tls_server.nbd_socket)
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600


def test_account_a_reads_and_writes_its_disk_with_qemu_io_and_nbdcopy(tls_server, two_accounts, tmp_path):
    t = two_accounts
    r = qemu_io(tls_server, t["disk_a"], t["creds_a"], "write -P 0x5a 0 64k", "read -P 0x5a 0 64k")
    assert r.returncode == 0 and "read 65536/65536" in r.stdout, r.stdout + r.stderr
    out = tmp_path / "a.raw"
    r = run("nbdcopy", nbds(tls_server, t["disk_a"], t["creds_a"]), str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:65536] == b"\x5a" * 65536
    r = run("nbdinfo", nbds(tls_server, t["disk_a"], t["creds_a"]))
    assert r.returncode == 0 and "export-size" in r.stdout, r.stderr


def test_account_b_cannot_open_or_list_account_a_s_disk(tls_server, two_accounts):
    t = two_accounts
    r = qemu_io(tls_server, t["disk_a"], t["creds_b"], "read 0 4k")
    assert r.returncode != 0
    r = run("nbdinfo", nbds(tls_server, t["disk_a"], t["creds_b"]))
    assert r.returncode != 0
    r = run("nbdcopy", nbds(tls_server, t["disk_a"], t["creds_b"]), "null:")
    assert r.returncode != 0
    r = run("nbdinfo", "--list", nbds(tls_server, "", t["creds_b"]))
    assert r.returncode == 0, r.stderr
    names = listed(r.stdout)
    assert t["disk_b"] in names and t["disk_a"] not in names, r.stdout
    r = run("nbdinfo", "--list", nbds(tls_server, "", t["creds_a"]))
    assert t["disk_a"] in listed(r.stdout) and t["disk_b"] not in listed(r.stdout), r.stdout


def test_without_credentials_nothing_opens_over_tcp(tls_server, two_accounts, tmp_path):
    t = two_accounts
    plain = f"nbd://127.0.0.1:{tls_server.nbd_port}/{t['disk_a']}"
    assert run("nbdinfo", plain).returncode != 0, "TLS-only: plaintext is refused"
    assert run("nbdinfo", "--list", f"nbd://127.0.0.1:{tls_server.nbd_port}").returncode != 0
    # TLS with only the CA (no client certificate).
    only_ca = tmp_path / "only-ca"
    only_ca.mkdir()
    (only_ca / "ca-cert.pem").write_text((t["creds_a"] / "ca-cert.pem").read_text())
    assert run("nbdinfo", nbds(tls_server, t["disk_a"], only_ca)).returncode != 0
    r = run("qemu-io", "-f", "raw", "-c", "read 0 4k", plain)
    assert r.returncode != 0


def test_the_unix_socket_serves_the_server_s_own_tools(tls_server, two_accounts):
    t = two_accounts
    url = f"nbd+unix:///{t['disk_a']}?socket={tls_server.nbd_socket}"
    r = run("nbdinfo", url)
    assert r.returncode == 0, r.stderr


def test_a_revoked_certificate_fails_at_once(tls_server, two_accounts, tmp_path):
    t = two_accounts
    creds, serial = credentials(tls_server, t["account_a"], tmp_path / "a2")
    assert run("nbdinfo", nbds(tls_server, t["disk_a"], creds)).returncode == 0
    out = tls_server.admin("nbd-credential-revoke", Serial=serial)
    assert [r["Serial"] for r in out["Revoked"]] == [serial]
    r = run("nbdinfo", nbds(tls_server, t["disk_a"], creds))
    assert r.returncode != 0, r.stdout
    r = qemu_io(tls_server, t["disk_a"], creds, "read 0 4k")
    assert r.returncode != 0
    # The account's other credential is untouched.
    assert run("nbdinfo", nbds(tls_server, t["disk_a"], t["creds_a"])).returncode == 0
    listed_creds = tls_server.admin("nbd-credential-list", AccountId=t["account_a"])["Credentials"]
    assert {c["Serial"]: c["RevokedAt"] is not None for c in listed_creds}[serial]


def test_plain_tcp_is_refused_at_startup_unless_insecure(snapdisk_bin, tmp_path, server, tenant):
    r = run(str(snapdisk_bin), "serve", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
            "--nbd-listen", "127.0.0.1:0", timeout=30)
    assert r.returncode != 0 and "--nbd-insecure" in r.stderr
    # The shared server runs with --nbd-insecure: plain TCP works as before, every export
    # visible. (Not `nbdinfo --list`: it opens every listed export, and other tests' exports
    # on the shared server come and go meanwhile.)
    assert "--nbd-insecure" in server.nbd_args
    _, did = attached_disk(tenant)
    r = run("nbdinfo", f"nbd://127.0.0.1:{server.nbd_port}/{did}")
    assert r.returncode == 0, r.stderr
    with Nbd(server.nbd_port) as c:
        c.handshake()
        assert did in c.list_exports()


def test_qemu_img_converts_over_tls_as_documented(tls_server, two_accounts, tmp_path):
    """docs/nbd.md's qemu-img form: --object tls-creds-x509 and --image-opts; as A into A's
    disk works, with B's certificate it does not."""
    t = two_accounts
    src = tmp_path / "src.raw"
    src.write_bytes(b"\x7e" * 65536 + b"\0" * (1 << 20))
    opts = (f"driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={tls_server.nbd_port},"
            f"export={t['disk_a']},tls-creds=tls0")

    def convert(creds):
        return run("qemu-img", "convert", "-n", "-f", "raw", "--object",
                   f"tls-creds-x509,id=tls0,endpoint=client,dir={creds}", "--target-image-opts",
                   str(src), opts)

    r = convert(t["creds_a"])
    assert r.returncode == 0, r.stderr
    r = qemu_io(tls_server, t["disk_a"], t["creds_a"], "read -P 0x7e 0 64k")
    assert "read 65536/65536" in r.stdout and "fail" not in r.stdout.lower(), r.stdout + r.stderr
    assert convert(t["creds_b"]).returncode != 0, "B's certificate does not open A's disk"
