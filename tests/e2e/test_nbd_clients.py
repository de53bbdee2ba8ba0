"""The NBD data plane driven by stock clients (qemu-io, qemu-img, nbdinfo, nbdcopy) and the raw
client in nbd_client.py: bytes written over NBD are really stored, snapshots are exported
read-only, and only what the control plane allows can be opened."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import pytest
from alibabacloud_ecs20140526 import models as ecs_models

from nbd_client import (
    CMD_WRITE,
    EPERM,
    INFO_BLOCK_SIZE,
    INFO_EXPORT,
    INFO_NAME,
    MAX_PAYLOAD,
    REP_ERR_POLICY,
    REP_ERR_UNKNOWN,
    TF_CAN_MULTI_CONN,
    TF_READ_ONLY,
    TF_SEND_FLUSH,
    TF_SEND_FUA,
    TF_SEND_TRIM,
    TF_SEND_WRITE_ZEROES,
    CmdError,
    Nbd,
    NbdClosed,
    OptError,
    nbd_url,
    qemu_io,
    run_tool,
)
from support import REGION, attached_disk

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
DISK = 20 * GiB


def make_raw(path: Path, size: int, chunks: list[tuple[int, bytes]]) -> Path:
    """A sparse raw image of `size` bytes holding `chunks` (offset, data); the rest are holes."""
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in chunks:
            f.seek(off)
            f.write(data)
    return path


def image_chunks(seed: int) -> list[tuple[int, bytes]]:
    """~27 MiB of random data in the first 32 MiB (every 4th MiB a hole), plus a MiB at 10 GiB
    and the disk's last 4 KiB."""
    r = random.Random(seed)
    chunks = [(i * MiB, r.randbytes(MiB)) for i in range(32) if i % 4 != 3]
    chunks.append((10 * GiB, r.randbytes(MiB)))
    chunks.append((DISK - 4 * KiB, r.randbytes(4 * KiB)))
    return chunks


def qemu_img_compare(a: str, b: str, fmt_a: str = "raw", fmt_b: str = "raw") -> tuple[int, str]:
    r = run_tool("qemu-img", "compare", "-f", fmt_a, "-F", fmt_b, a, b, check=False)
    return r.rc, r.text


def merged_map(entries: list[dict]) -> list[tuple[int, int, int]]:
    """nbdinfo --map --json entries as (offset, length, type), adjacent equal types merged."""
    out: list[list[int]] = []
    for e in entries:
        if out and out[-1][2] == e["type"] and out[-1][0] + out[-1][1] == e["offset"]:
            out[-1][1] += e["length"]
        else:
            out.append([e["offset"], e["length"], e["type"]])
    return [tuple(x) for x in out]


def type_at(mapping: list[tuple[int, int, int]], offset: int, length: int) -> set[int]:
    """The set of extent types covering [offset, offset+length)."""
    return {t for o, n, t in mapping if o < offset + length and offset < o + n}


# --------------------------------------------------------------------------------------------


def test_qemu_io_patterns_unaligned_fua_discard_and_zeroes(server, tenant):
    api = tenant
    _iid, did = attached_disk(api, size=20)
    url = nbd_url(server.nbd_port, did)
    end = DISK

    qemu_io(url,
            "write -P 0xaa 0 1M",
            "write -P 0xbb 5G 4M",
            f"write -P 0xcc {end - 64 * KiB} 64k",     # the last 64 KiB of the disk
            "write -P 0x11 4097 512",                  # unaligned, inside one block
            "write -P 0x33 8191 2",                    # straddles a block boundary
            "write -f -P 0x22 1000000 3000",           # FUA, unaligned start and length
            "read -P 0xaa 0 4097",
            "read -P 0x11 4097 512")

    # A second connection sees everything (nothing was kept per connection).
    qemu_io(url,
            "read -P 0xaa 0 4097",
            "read -P 0x11 4097 512",
            "read -P 0xaa 4609 3582",
            "read -P 0x33 8191 2",
            "read -P 0xaa 8193 991807",
            "read -P 0x22 1000000 3000",
            "read -P 0xaa 1003000 45576",
            "read -P 0 1M 1M",
            f"read -P 0 {5 * GiB - 4 * KiB} 4k",
            "read -P 0xbb 5G 4M",
            f"read -P 0 {5 * GiB + 4 * MiB} 4k",
            f"read -P 0 {end - 128 * KiB} 64k",
            f"read -P 0xcc {end - 64 * KiB} 64k",
            read_only=True)

    # The same bytes through an independent client.
    with Nbd.open(server.nbd_port, did) as c:
        got = c.read(4000, 4300)
    want = bytearray(b"\xaa" * 4300)
    want[97:97 + 512] = b"\x11" * 512
    want[4191:4193] = b"\x33\x33"
    assert got == bytes(want)

    # discard, write -z (NO_HOLE: allocated zeroes), write -z -u (may punch), unaligned write -z
    qemu_io(url,
            "discard 5G 1M",
            f"write -z {5 * GiB + 1 * MiB} 1M",
            f"write -z -u {5 * GiB + 2 * MiB} 1M",
            "write -z 4097 100",
            "read -P 0 5G 3M",
            f"read -P 0xbb {5 * GiB + 3 * MiB} 1M",
            "read -P 0xaa 0 4097",
            "read -P 0 4097 100",
            "read -P 0x11 4197 412")

    m = merged_map(json.loads(run_tool("nbdinfo", "--map", "--json", url).out))
    assert sum(n for _, n, _ in m) == DISK, m
    assert type_at(m, 0, 1 * MiB) == {0}, m                      # data
    assert type_at(m, 2 * MiB, 3 * GiB) == {3}, m                # hole,zero: never written
    assert type_at(m, 5 * GiB, 1 * MiB) == {3}, m                # discarded
    assert type_at(m, 5 * GiB + 1 * MiB, 1 * MiB) == {0}, m      # zeroes written with NO_HOLE
    assert type_at(m, 5 * GiB + 3 * MiB, 1 * MiB) == {0}, m
    assert type_at(m, end - 64 * KiB, 64 * KiB) == {0}, m


def test_qemu_img_imports_raw_and_qcow2_and_exports_snapshots(server, tenant, tmp_path):
    api = tenant
    _iid, did = attached_disk(api, size=20)
    url = nbd_url(server.nbd_port, did)
    raw = make_raw(tmp_path / "image.raw", DISK, image_chunks(seed=7))

    # Garbage where the image has holes: the import must zero it.
    qemu_io(url, "write -P 0xee 3M 1M", "write -P 0xee 15G 1M")
    run_tool("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(raw), url)
    rc, out = qemu_img_compare(str(raw), url)
    assert rc == 0, out

    s1 = api.create_snapshot(did, name="raw-import")
    exported = tmp_path / "s1.raw"
    run_tool("qemu-img", "convert", "-f", "raw", "-O", "raw", nbd_url(server.nbd_port, s1), str(exported))
    assert exported.stat().st_size == DISK
    rc, out = qemu_img_compare(str(raw), str(exported))
    assert rc == 0, out

    # The comparison can fail: change one byte of the disk; the snapshot is frozen.
    qemu_io(url, "write -P 0x5a 123457 1")
    rc, out = qemu_img_compare(str(raw), url)
    assert rc == 1 and f"Content mismatch at offset {123457 // 512 * 512}" in out, out
    rc, out = qemu_img_compare(str(raw), nbd_url(server.nbd_port, s1))
    assert rc == 0, out

    # qcow2: a different image, imported over the first one (every old byte must go).
    raw2 = make_raw(tmp_path / "image2.raw", DISK, image_chunks(seed=8)[1::2])
    qcow2 = tmp_path / "image2.qcow2"
    run_tool("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw2), str(qcow2))
    run_tool("qemu-img", "convert", "-n", "-f", "qcow2", "-O", "raw", str(qcow2), url)
    rc, out = qemu_img_compare(str(qcow2), url, fmt_a="qcow2")
    assert rc == 0, out

    s2 = api.create_snapshot(did, name="qcow2-import")
    exported2 = tmp_path / "s2.raw"
    run_tool("qemu-img", "convert", "-f", "raw", "-O", "raw", nbd_url(server.nbd_port, s2), str(exported2))
    rc, out = qemu_img_compare(str(raw2), str(exported2))
    assert rc == 0, out
    rc, out = qemu_img_compare(str(qcow2), str(exported2), fmt_a="qcow2")
    assert rc == 0, out
    # and the first snapshot still holds the first image
    rc, out = qemu_img_compare(str(raw), nbd_url(server.nbd_port, s1))
    assert rc == 0, out


def test_nbdinfo_lists_exports_and_maps_allocation(fresh_server):
    # a server of its own, so the list holds exactly this test's exports
    server = fresh_server
    api = server.tenant()
    ia, da = attached_disk(api, size=20)
    ib, db = attached_disk(api, size=30)
    free = api.create_disk(size=20)
    sys_a = api.system_disk(ia)["DiskId"]
    sys_b = api.system_disk(ib)["DiskId"]
    qemu_io(nbd_url(server.nbd_port, da), "write -P 0x61 0 1M", "write -P 0x62 10G 1M")
    sa = api.create_snapshot(da)
    sb = api.create_snapshot(db)
    api.stop(ib)

    listing = json.loads(run_tool("nbdinfo", "--list", "--json", f"nbd://127.0.0.1:{server.nbd_port}").out)
    exports = {e["export-name"]: e for e in listing["exports"]}
    # the running instance's disks and the accomplished snapshots; not the stopped instance's
    # disks (db, sys_b) nor an unattached disk
    assert sorted(exports) == sorted([da, sys_a, sa, sb]), (sorted(exports), [db, sys_b, free])

    # NBD_OPT_LIST through the raw client names the same set
    with Nbd(server.nbd_port) as c:
        c.handshake()
        assert sorted(c.list_exports()) == sorted(exports)

    disk, snap = exports[da], exports[sa]
    assert disk["export-size"] == DISK and snap["export-size"] == DISK
    assert (disk["is_read_only"], snap["is_read_only"]) == (False, True)
    for e in (disk, snap):
        assert (e["block_size_minimum"], e["block_size_preferred"], e["block_size_maximum"]) == (1, 4096, MAX_PAYLOAD)
        assert e["can_multi_conn"] is True and e["can_flush"] is True
        assert "base:allocation" in e["contexts"]
    assert (disk["can_trim"], disk["can_zero"], disk["can_fua"]) == (True, True, True)
    assert (snap["can_trim"], snap["can_zero"]) == (False, False)
    assert exports[sb]["export-size"] == 30 * GiB

    info = json.loads(run_tool("nbdinfo", "--json", nbd_url(server.nbd_port, da)).out)
    (one,) = info["exports"]
    assert (one["export-name"], one["export-size"]) == (da, DISK)

    want = [(0, MiB, 0), (MiB, 10 * GiB - MiB, 3), (10 * GiB, MiB, 0), (10 * GiB + MiB, DISK - 10 * GiB - MiB, 3)]
    m_disk = merged_map(json.loads(run_tool("nbdinfo", "--map", "--json", nbd_url(server.nbd_port, da)).out))
    assert m_disk == want
    # the snapshot maps the same; trimming the disk afterwards changes the disk only
    qemu_io(nbd_url(server.nbd_port, da), "discard 10G 1M")
    m_disk = merged_map(json.loads(run_tool("nbdinfo", "--map", "--json", nbd_url(server.nbd_port, da)).out))
    assert m_disk == [(0, MiB, 0), (MiB, DISK - MiB, 3)]
    m_snap = merged_map(json.loads(run_tool("nbdinfo", "--map", "--json", nbd_url(server.nbd_port, sa)).out))
    assert m_snap == want


def test_nbdcopy_backs_up_and_restores_a_snapshot(server, tenant, tmp_path):
    api = tenant
    iid, did = attached_disk(api, size=20)
    r = random.Random(11)
    chunks = [(0, r.randbytes(6 * MiB)), (7 * MiB + 123, r.randbytes(8 * MiB)), (19 * GiB, r.randbytes(8 * MiB))]
    with Nbd.open(server.nbd_port, did) as c:
        for off, data in chunks:
            c.write(off, data)
        c.flush()
    ref = tmp_path / "ref.raw"
    make_raw(ref, DISK, chunks)
    sid = api.create_snapshot(did)
    # the disk moves on; the backup must read the snapshot
    qemu_io(nbd_url(server.nbd_port, did), "write -P 0x77 0 16M")

    backup = tmp_path / "backup.raw"
    run_tool("nbdcopy", nbd_url(server.nbd_port, sid), str(backup))
    assert backup.stat().st_size == DISK
    with open(backup, "rb") as f:
        for off, data in chunks:
            f.seek(off)
            assert f.read(len(data)) == data, f"backup differs at {off}"
    rc, out = qemu_img_compare(str(ref), str(backup))
    assert rc == 0, out

    # restore onto another disk with nbdcopy (several connections: the export allows multi-conn)
    _i2, d2 = attached_disk(api, size=20, iid=iid)
    qemu_io(nbd_url(server.nbd_port, d2), "write -P 0x99 100M 4M")
    run_tool("nbdcopy", str(backup), nbd_url(server.nbd_port, d2))
    rc, out = qemu_img_compare(str(ref), nbd_url(server.nbd_port, d2))
    assert rc == 0, out


def test_snapshot_export_is_read_only(server, tenant):
    api = tenant
    _iid, did = attached_disk(api, size=20)
    url = nbd_url(server.nbd_port, did)
    qemu_io(url, "write -P 0x42 0 2M")
    sid = api.create_snapshot(did)
    surl = nbd_url(server.nbd_port, sid)

    r = qemu_io(surl, "write -P 0x43 0 4k", check=False)
    assert r.rc != 0, r.text
    r = qemu_io(surl, "write -P 0x43 0 4k", read_only=True, check=False)
    assert r.rc != 0 and "read-only" in r.text.lower(), r.text
    qemu_io(surl, "read -P 0x42 0 2M", "read -P 0 2M 2M", read_only=True)

    with Nbd.open(server.nbd_port, sid) as c:
        assert c.read_only and c.tflags & TF_READ_ONLY
        assert not c.tflags & (TF_SEND_TRIM | TF_SEND_WRITE_ZEROES | TF_SEND_FUA)
        assert c.command_error(CMD_WRITE, 0, 4096, payload=b"\x43" * 4096) == EPERM
        with pytest.raises(CmdError) as ei:
            c.trim(0, 4096)
        assert ei.value.error == EPERM, ei.value
        with pytest.raises(CmdError) as ei:
            c.write_zeroes(0, 4096)
        assert ei.value.error == EPERM, ei.value
        c.flush()
        assert c.read(0, 4096) == b"\x42" * 4096

    # a write to the disk after the snapshot does not reach the snapshot
    qemu_io(url, "write -P 0x44 0 1M")
    qemu_io(surl, "read -P 0x42 0 2M", read_only=True)


def test_refused_exports_report_the_server_reason(server, tenant):
    api = tenant
    iid, did = attached_disk(api, size=20)
    stopped_iid, stopped_disk = attached_disk(api, size=20)
    api.stop(stopped_iid)
    free = api.create_disk(size=20)

    # unknown name: NBD_REP_ERR_UNKNOWN; the session goes on and can open a real export
    with Nbd(server.nbd_port) as c:
        c.handshake()
        with pytest.raises(OptError) as ei:
            c.go("d-doesnotexist000000")
        assert ei.value.reply == REP_ERR_UNKNOWN, ei.value
        unknown_msg = ei.value.message
        with pytest.raises(OptError) as ei:
            c.info("s-doesnotexist000000")
        assert ei.value.reply == REP_ERR_UNKNOWN, ei.value
        got = c.info(did, (INFO_NAME, INFO_BLOCK_SIZE))
        assert struct.unpack(">Q", got[INFO_EXPORT][:8])[0] == DISK
        assert got[INFO_NAME] == did.encode()
        assert struct.unpack(">III", got[INFO_BLOCK_SIZE]) == (1, 4096, MAX_PAYLOAD)
        c.go(did)
        assert c.size == DISK and c.read(0, 512) == bytes(512)
    r = qemu_io(nbd_url(server.nbd_port, "d-doesnotexist000000"), "read 0 4k", check=False)
    assert r.rc != 0, r.text
    if unknown_msg:
        assert unknown_msg in r.text, r.text
    r = run_tool("nbdinfo", nbd_url(server.nbd_port, "d-doesnotexist000000"), check=False)
    assert r.rc != 0, r.text

    # a disk whose instance is Stopped, and a disk not attached: NBD_REP_ERR_POLICY with a text
    for name in (stopped_disk, free):
        with Nbd(server.nbd_port) as c:
            c.handshake()
            with pytest.raises(OptError) as ei:
                c.go(name)
            assert ei.value.reply == REP_ERR_POLICY, ei.value
            msg = ei.value.message
            assert msg, "NBD_REP_ERR_POLICY without a text"
            with pytest.raises(OptError) as ei:
                c.info(name)
            assert ei.value.reply == REP_ERR_POLICY, ei.value
        r = qemu_io(nbd_url(server.nbd_port, name), "read 0 4k", check=False)
        assert r.rc != 0, r.text
        assert "Denied by server for option 7 (go)" in r.text, r.text
        assert msg in r.text, r.text

    # NBD_OPT_EXPORT_NAME cannot say why: the server closes the connection
    with Nbd(server.nbd_port) as c:
        c.handshake()
        with pytest.raises(NbdClosed):
            c.export_name(stopped_disk)
    with Nbd(server.nbd_port) as c:
        c.handshake()
        c.export_name(did)
        assert c.size == DISK and c.tflags & TF_SEND_FLUSH
        c.write(0, b"via export-name")
        assert c.read(0, 15) == b"via export-name"

    # a snapshot that is still progressing is not exported yet
    with server.timings(SnapshotMs=1500):
        sid = api.create_snapshot(did, wait=False)
        with Nbd(server.nbd_port) as c:
            c.handshake()
            assert sid not in c.list_exports()
            with pytest.raises(OptError) as ei:
                c.go(sid)
            assert ei.value.reply == REP_ERR_POLICY, ei.value
    api.wait_snapshot(sid, "accomplished")
    with Nbd.open(server.nbd_port, sid) as c:
        assert c.read(0, 15) == b"via export-name"


def test_two_connections_to_one_disk(server, tenant):
    api = tenant
    _iid, did = attached_disk(api, size=20)
    a = Nbd.open(server.nbd_port, did)
    b = Nbd.open(server.nbd_port, did, structured=True)
    try:
        assert a.tflags & TF_CAN_MULTI_CONN and b.tflags & TF_CAN_MULTI_CONN
        d1 = random.Random(1).randbytes(3 * MiB)
        a.write(MiB + 17, d1)
        a.flush()
        assert b.read(MiB + 17, len(d1)) == d1
        d2 = random.Random(2).randbytes(64 * KiB)
        b.write(2 * MiB, d2, fua=True)
        assert a.read(MiB + 17, len(d1)) == d1[:MiB - 17] + d2 + d1[MiB - 17 + len(d2):]

        # pipelined requests on both connections at once; replies matched by cookie
        blocks = {i: bytes([i]) * (64 * KiB) for i in range(1, 17)}
        sent = {}
        for i, data in blocks.items():
            conn = a if i % 2 else b
            sent[(id(conn), conn.send_request(CMD_WRITE, 8 * MiB + i * 64 * KiB, len(data), payload=data))] = i
        for conn in (a, b):
            for _ in range(8):
                rep = conn.read_reply()
                assert rep.error == 0
                assert sent.pop((id(conn), rep.cookie))
        assert not sent
        a.flush()
        b.flush()
        for i, data in blocks.items():
            assert (b if i % 2 else a).read(8 * MiB + i * 64 * KiB, len(data)) == data
    finally:
        a.close()
        b.close()
    qemu_io(nbd_url(server.nbd_port, did), "read -P 0x10 9M 64k")


def _refused(server, name: str) -> int:
    """The NBD_REP_ERR_* a fresh NBD_OPT_GO for `name` gets."""
    with Nbd(server.nbd_port) as c:
        c.handshake()
        with pytest.raises(OptError) as ei:
            c.go(name)
        return ei.value.reply


def test_detach_disk_closes_its_connections(server, tenant):
    api = tenant
    iid, did = attached_disk(api, size=20)
    _i2, other = attached_disk(api, size=20)
    c = Nbd.open(server.nbd_port, did)
    bystander = Nbd.open(server.nbd_port, other)
    try:
        c.write(4096, b"\x32" * 4096)
        api.detach(did, iid, wait=False)
        assert c.wait_closed(1.0), "connection to the disk still open after DetachDisk returned"
        assert _refused(server, did) == REP_ERR_POLICY
        assert not bystander.wait_closed(0.2)
        bystander.write(0, b"ok")
        assert bystander.read(0, 2) == b"ok"
    finally:
        c.close()
        bystander.close()
    # what was written before the detach was kept
    api.wait_disk(did, "Available")
    api.attach(did, iid)
    with Nbd.open(server.nbd_port, did) as c:
        assert c.read(4096, 4096) == b"\x32" * 4096


def test_delete_snapshot_closes_its_connections(server, tenant):
    api = tenant
    _iid, did = attached_disk(api, size=20)
    qemu_io(nbd_url(server.nbd_port, did), "write -P 0x31 0 1M")
    sid = api.create_snapshot(did)
    keep = api.create_snapshot(did)
    c = Nbd.open(server.nbd_port, sid)
    bystander = Nbd.open(server.nbd_port, keep)
    try:
        assert c.read(0, 4) == b"\x31" * 4
        api.delete_snapshot(sid)
        assert c.wait_closed(1.0), "connection to a deleted snapshot still open"
        assert _refused(server, sid) == REP_ERR_UNKNOWN
        assert not bystander.wait_closed(0.2)
        assert bystander.read(0, 4) == b"\x31" * 4
    finally:
        c.close()
        bystander.close()


def test_delete_instance_closes_its_disks_connections(server, tenant):
    api = tenant
    iid, did = attached_disk(api, size=20)
    _i2, other = attached_disk(api, size=20)
    sys_disk = api.system_disk(iid)["DiskId"]
    c_sys = Nbd.open(server.nbd_port, sys_disk)
    c_data = Nbd.open(server.nbd_port, did)
    bystander = Nbd.open(server.nbd_port, other)
    try:
        c_data.write(0, b"\x33" * 4096)
        api.delete_instance(iid, force=True)
        assert c_sys.wait_closed(1.0), "system disk connection open after DeleteInstance"
        assert c_data.wait_closed(1.0), "data disk connection open after DeleteInstance"
        assert _refused(server, did) in (REP_ERR_POLICY, REP_ERR_UNKNOWN)
        assert not bystander.wait_closed(0.2)
        bystander.write(0, b"ok")
        assert bystander.read(0, 2) == b"ok"
    finally:
        for c in (c_sys, c_data, bystander):
            c.close()
    # the data disk (not DeleteWithInstance) survives with its bytes
    api.wait_disk(did, "Available")
    api.attach(did, _i2)
    with Nbd.open(server.nbd_port, did) as c:
        assert c.read(0, 4096) == b"\x33" * 4096


def test_stop_instances_closes_every_instance_connections(server, tenant):
    api = tenant
    i1, d1 = attached_disk(api, size=20)
    i2, d2 = attached_disk(api, size=20)
    sys1 = api.system_disk(i1)["DiskId"]
    conns = [Nbd.open(server.nbd_port, name) for name in (d1, d2, sys1)]
    try:
        for c in conns[:2]:
            c.write(0, b"\x34" * 4096)       # answered, not flushed
        api.client.stop_instances(ecs_models.StopInstancesRequest(region_id=REGION, instance_id=[i1, i2]))
        for c, name in zip(conns, (d1, d2, sys1)):
            assert c.wait_closed(1.0), f"connection to {name} still open after StopInstances returned"
        for name in (d1, d2, sys1):
            assert _refused(server, name) == REP_ERR_POLICY
    finally:
        for c in conns:
            c.close()
    api.wait_instance(i1, "Stopped")
    api.wait_instance(i2, "Stopped")
    # the unflushed writes were flushed when the connections were closed
    for did in (d1, d2):
        sid = api.create_snapshot(did)
        with Nbd.open(server.nbd_port, sid) as c:
            assert c.read(0, 4096) == b"\x34" * 4096
