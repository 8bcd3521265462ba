"""Expiration: the periodic cleanup removes expired unfinished uploads, never one with
a PATCH in flight, never a finished file, and keeps doing so after a restart."""

from __future__ import annotations

import socket

import pytest

from .helpers import Client, server, staging_problems, wait_for

# Seconds: an upload must not expire between two of the test's requests (a create and
# its PATCH, a PATCH and the HEAD after it), even when a loaded machine stalls them.
EXPIRATION = 3
ARGS = [f"--TusApp.expiration={EXPIRATION}", "--TusApp.cleanup_interval=0.2"]


@pytest.fixture
def expiring(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    proc = server(root, *ARGS)
    proc.start()
    yield proc, Client(proc)
    proc.stop()


def gone(c: Client, uid: str) -> bool:
    return c.head(uid).status_code in (404, 410) and not list(
        (c.proc.root_dir / ".tus").glob(f"{uid}*")
    )


def test_sweep_removes_expired_but_not_in_flight_or_finished(expiring):
    proc, c = expiring
    root = proc.root_dir
    done = c.create_id(4, {"filename": "done.txt"})
    assert c.patch(done, 0, b"done").status_code == 204
    idle = c.create_id(1000, {"filename": "idle.bin"})
    assert c.patch(idle, 0, b"i" * 100).status_code == 204
    r = c.head(idle)
    assert "Upload-Expires" in r.headers
    # a PATCH that sends 10 bytes and then stalls, its lock held
    busy = c.create_id(20, {"filename": "busy.bin"})
    sock = socket.create_connection(("127.0.0.1", proc.port), timeout=30)
    head = (
        f"PATCH {proc.base_url}api/tus/uploads/{busy} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{proc.port}\r\nAuthorization: token {proc.token}\r\n"
        "Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
        "Upload-Offset: 0\r\nContent-Length: 20\r\n\r\n"
    )
    sock.sendall(head.encode() + b"b" * 10)
    wait_for(lambda: (root / ".tus" / busy).stat().st_size == 10, 10, "the first bytes")
    # a canary whose last activity is after the stalled PATCH's: once a sweep removed
    # it, the stalled upload was just as expired at that sweep
    canary = c.create_id(1000, {"filename": "canary.bin"})
    wait_for(lambda: gone(c, canary), 30, "the sweep of the canary")
    assert gone(c, idle)
    assert (root / ".tus" / busy).exists(), "an upload with a PATCH in flight was removed"
    sock.sendall(b"b" * 10)
    response = sock.recv(4096).decode()
    sock.close()
    assert response.startswith("HTTP/1.1 204"), response
    assert (root / "busy.bin").read_bytes() == b"b" * 20
    assert (root / "done.txt").read_bytes() == b"done"
    assert c.head(done).status_code == 200  # a finished upload's info does not expire
    assert not (root / "idle.bin").exists() and not (root / "canary.bin").exists()
    assert not staging_problems(root / ".tus")


def test_sweep_survives_a_restart(expiring):
    proc, c = expiring
    root = proc.root_dir
    done = c.create_id(3, {"filename": "kept.txt"})
    assert c.patch(done, 0, b"abc").status_code == 204
    before = c.create_id(100, {"filename": "before.bin"})
    assert c.patch(before, 0, b"x" * 10).status_code == 204
    proc.kill()  # "before" expires while the server is down, or soon after it is back
    proc.start()
    wait_for(lambda: gone(c, before), 30, "the sweep after restart")
    after = c.create_id(100, {"filename": "after.bin"})
    wait_for(lambda: gone(c, after), 30, "a later sweep after restart")
    assert (root / "kept.txt").read_bytes() == b"abc"
    assert not staging_problems(root / ".tus")
