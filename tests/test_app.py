"""The Jupyter side: settings, events, expiry, the environment kernels inherit."""

from __future__ import annotations

import os

import pytest

from .conftest import wait_events


async def test_events_on_completion_and_termination(tus, events):
    uid = await tus.create_id(3, {"filename": "ev.txt", "path": "sub"})
    await tus.patch(uid, 0, b"abc")
    await wait_events(events, 1)
    assert events[0] == {
        "action": "completed",
        "id": uid,
        "filename": "ev.txt",
        "path": "sub/ev.txt",
        "size": 3,
        "offset": 3,
    }
    other = await tus.create_id(3, {"filename": "stop.txt"})
    assert (await tus.request("DELETE", other)).code == 204
    await wait_events(events, 2)
    assert events[1]["action"] == "terminated" and events[1]["id"] == other


async def test_staging_dir_is_exported_for_kernels(tus_app, staging):
    assert os.environ["JUPYTER_TUS_DIR"] == str(staging)
    assert staging.is_dir()


@pytest.mark.parametrize("tus_config", [{"staging_dir": "elsewhere/stage"}])
async def test_staging_dir_setting(tus, jp_root_dir, tus_config):
    uid = await tus.create_id(10)
    assert (jp_root_dir / "elsewhere" / "stage" / f"{uid}.info").exists()


@pytest.mark.parametrize("tus_config", [{"expiration": 0.001}])
async def test_expired_upload_is_gone_and_swept(tus, tus_app, staging, tus_config):
    uid = await tus.create_id(10, {"filename": "late.txt"})
    held = await tus.create_id(10, {"filename": "busy.txt"})
    r = await tus.head(uid)
    assert r.code == 410
    lock = tus_app.manager.store.lock(held)
    assert lock.acquire(blocking=False)  # as a PATCH in flight holds it
    try:
        removed = tus_app.manager.remove_expired()
    finally:
        lock.release()
    assert [info.id for info in removed] == [uid]
    assert (await tus.head(uid)).code == 404
    assert (staging / f"{held}.info").exists()


async def test_upload_expires_header_on_head_and_patch(tus):
    uid = await tus.create_id(10)
    first = (await tus.head(uid)).headers["Upload-Expires"]
    assert first.endswith("GMT")
    r = await tus.patch(uid, 0, b"12345")
    assert "Upload-Expires" in r.headers


@pytest.mark.parametrize("tus_config", [{"expiration": 0}])
async def test_expiration_off(tus, tus_config):
    r = await tus.create(10)
    assert "Upload-Expires" not in r.headers


@pytest.mark.parametrize("tus_config", [{"expiration": 0.05, "cleanup_interval": 0.05}])
async def test_periodic_sweep_removes_expired(
    tus, tus_app, jp_serverapp, events, staging, jp_root_dir, tus_config
):
    # The in-process test server is never start()ed: call the hook start() calls.
    await tus_app._start_jupyter_server_extension(jp_serverapp)
    landed = await tus.create_id(2, {"filename": "kept.txt"})
    await tus.patch(landed, 0, b"ok")
    uid = await tus.create_id(10, {"filename": "abandoned.txt"})
    await wait_events(events, 2)
    expired = [e for e in events if e["action"] == "expired"]
    assert [e["id"] for e in expired] == [uid]
    assert not (staging / f"{uid}.info").exists()
    assert (jp_root_dir / "kept.txt").read_bytes() == b"ok"
    await tus_app.stop_extension()


async def test_a_store_that_fails_oddly_when_started_again_answers_503_not_500(tus, tus_app):
    """A store left unavailable at start is started again by the next request
    (``UploadManager.available``); an error its start was never meant to raise is
    logged, and the request gets the standing 503 with its reason, never a 500. The
    next try, a second later, succeeds."""
    manager = tus_app.manager
    tries = []

    def reopen() -> None:
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("a bug in a store's claim")

    manager.unavailable, manager.reopen = "uploads are unavailable: the bucket is gone", reopen
    r = await tus.create(5)
    assert r.code == 503 and "the bucket is gone" in r.body.decode()
    assert b"Traceback" not in r.body and b"a bug" not in r.body
    assert tries == [1]
    manager._reopen_at = 0  # (the next try, without waiting out REOPEN_INTERVAL)
    assert (await tus.create(5)).code == 201
    assert tries == [1, 1] and manager.unavailable is None
