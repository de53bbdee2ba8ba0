"""Storage that must not be trusted, and writers that must be cut off.

- Damaged storage metadata: the server still answers the API (so the operator can see what is
  wrong), storage operations answer InternalError, and NBD refuses every export: nothing
  damaged is ever served as data.
- A security lock closes the instance's open NBD connections at once.
"""

from __future__ import annotations

import pytest

from nbd_client import Nbd, OptError
from support import attached_disk, catch


def test_security_lock_closes_open_connections(server):
    api = server.tenant()
    iid, did = attached_disk(api)
    with Nbd.open(server.nbd_port, did) as c:
        c.write(0, b"\x42" * 4096)
        server.admin("instance-lock", InstanceId=iid, LockMsg="abuse report")
        assert c.wait_closed(), "the locked instance's writer is still connected"
    with pytest.raises(OptError):
        Nbd.open(server.nbd_port, did)
    server.admin("instance-unlock", InstanceId=iid)
    with Nbd.open(server.nbd_port, did) as c:
        assert c.read(0, 4096) == b"\x42" * 4096, "what was written before the lock was kept"


def test_corrupt_metadata_is_refused_not_served(make_server):
    srv = make_server("corrupt")
    api = srv.tenant()
    iid, did = attached_disk(api)
    with Nbd.open(srv.nbd_port, did) as c:
        c.write(0, b"\x17" * 65536)
        c.flush()
    sid = api.create_snapshot(did)
    srv.stop()
    log = srv.data_dir / "store" / "meta.log"
    raw = bytearray(log.read_bytes())
    assert len(raw) > 200
    raw[60] ^= 0xFF  # inside the second record: damage with records after it
    log.write_bytes(bytes(raw))
    srv.start()
    assert "storage metadata is corrupt" in srv.stderr_tail()
    # The catalog still answers: the disk and snapshot are described as before.
    assert api.disk(did)["Status"] == "In_use"
    assert api.snapshot(sid)["Status"] == "accomplished"
    # Every export is refused with the reason; nothing is read from damaged storage.
    for name in (did, sid):
        with pytest.raises(OptError) as e:
            Nbd.open(srv.nbd_port, name)
        assert "corrupt" in str(e.value)
    # Storage operations fail cleanly, and the disk is left as it was.
    api.stop(iid)
    err = catch(api.reset, did, sid)
    assert (err.status, err.code) == (500, "InternalError")
    assert api.disk(did)["Status"] == "In_use"
