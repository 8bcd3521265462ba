"""Expiry is counted from an upload's last activity, not from its creation.

The clocks the store reads are set by hand, so nothing waits for time to pass: the
``created`` time in ``<id>.info`` is rewritten and the staged files' mtimes are set
with ``os.utime``; ``expired_uploads(now=...)`` is asked about chosen moments. An
upload created long ago whose last byte arrived a minute ago must not expire; every
PATCH moves ``expires`` forward; a finished partial upload expires from the moment it
was finished. A store that counted from ``created`` fails each of these.
"""

from __future__ import annotations

import email.utils
import io
import json
import os
import time
from pathlib import Path

import pytest

from jupyter_tus.filestore import FileStore
from jupyter_tus.store import FileInfo

EXPIRATION = 3600.0
DAY = 86400.0
SLACK = 1.0  # file times come from the kernel's coarse clock, a tick behind time.time()


@pytest.fixture
def store(tmp_path) -> FileStore:
    return FileStore(tmp_path / "staging", expiration=EXPIRATION, lock_timeout=5)


def set_clocks(store: FileStore, uid: str, *, created: float, data: float, info: float) -> None:
    """Make the upload look created at ``created``, its bytes last written at ``data``
    and its record last written at ``info`` (mtimes, to the nanosecond)."""
    info_path = Path(store.directory, f"{uid}.info")
    record = json.loads(info_path.read_text())
    record["created"] = created
    info_path.write_text(json.dumps(record))
    os.utime(Path(store.directory, uid), ns=(round(data * 1e9),) * 2)
    os.utime(info_path, ns=(round(info * 1e9),) * 2)


def write(store: FileStore, uid: str, offset: int, data: bytes) -> None:
    with store.lock(uid):
        store.write_chunk(uid, offset, io.BytesIO(data))


def expired(store: FileStore, now: float) -> set[str]:
    return set(store.expired_uploads(now=now))


def test_an_old_upload_whose_last_byte_arrived_recently_is_kept(store):
    uid = store.new_upload(FileInfo(size=100))
    write(store, uid, 0, b"x" * 40)
    t = time.time()
    last_byte = t - 60
    set_clocks(store, uid, created=t - 10 * DAY, data=last_byte, info=t - 10 * DAY)
    assert store.get_info(uid).expires == pytest.approx(last_byte + EXPIRATION, abs=1e-3)
    assert uid not in expired(store, now=t)
    assert uid not in expired(store, now=last_byte + EXPIRATION - 1)
    assert uid in expired(store, now=last_byte + EXPIRATION + 1)


def test_an_idle_upload_expires(store):
    uid = store.new_upload(FileInfo(size=100))
    write(store, uid, 0, b"x" * 40)
    t = time.time()
    # idle for two hours: the later of the two file times is the last activity
    set_clocks(store, uid, created=t - 10 * DAY, data=t - 3 * 3600, info=t - 2 * 3600)
    assert store.get_info(uid).expires == pytest.approx(t - 2 * 3600 + EXPIRATION, abs=1e-3)
    assert uid in expired(store, now=t)
    assert uid not in expired(store, now=t - 2 * 3600 + EXPIRATION - 1)


def test_every_patch_pushes_the_expiry_forward(store):
    uid = store.new_upload(FileInfo(size=100))
    write(store, uid, 0, b"x" * 10)
    t = time.time()
    offset = 10
    for idle in (10 * DAY, 1800.0):  # the last PATCH came that long ago
        set_clocks(store, uid, created=t - 20 * DAY, data=t - idle, info=t - idle)
        before = store.get_info(uid).expires
        assert before == pytest.approx(t - idle + EXPIRATION, abs=1e-3)
        patched_at = time.time()
        write(store, uid, offset, b"y" * 20)
        offset += 20
        after = store.get_info(uid).expires
        assert after > before
        assert after >= patched_at - SLACK + EXPIRATION
        assert uid not in expired(store, now=patched_at + EXPIRATION - 2 * SLACK)
        assert uid in expired(store, now=time.time() + EXPIRATION + SLACK)


def test_a_finished_partial_upload_expires_from_its_completion(store, tmp_path):
    # finished by its last PATCH
    by_patch = store.new_upload(FileInfo(size=50, is_partial=True))
    write(store, by_patch, 0, b"a" * 20)
    # finished by declaring its length, long after its last byte arrived
    by_length = store.new_upload(FileInfo(size=None, is_partial=True))
    write(store, by_length, 0, b"b" * 30)
    t = time.time()
    for uid in (by_patch, by_length):
        set_clocks(store, uid, created=t - 10 * DAY, data=t - 10 * DAY, info=t - 10 * DAY)
        assert uid in expired(store, now=t)  # unfinished and idle for 10 days
    finished_at = time.time()
    write(store, by_patch, 20, b"a" * 30)
    with store.lock(by_length):
        store.declare_length(by_length, 30)
    done = time.time()
    for uid in (by_patch, by_length):
        info = store.get_info(uid)
        assert info.is_complete and info.is_partial
        assert finished_at - SLACK + EXPIRATION <= info.expires <= done + EXPIRATION
        assert uid not in expired(store, now=finished_at + EXPIRATION - 2 * SLACK)
        assert uid in expired(store, now=done + EXPIRATION + SLACK)
    # a finished upload that landed never expires
    landed = store.new_upload(FileInfo(size=3, path=str(tmp_path / "landed.bin")))
    write(store, landed, 0, b"abc")
    assert landed not in expired(store, now=t + 100 * DAY)


# ------------------------------------------------------------------ over HTTP


@pytest.fixture
def tus_config() -> dict:
    return {"expiration": 10 * DAY}


def expires_header(response) -> float:
    return email.utils.parsedate_to_datetime(response.headers["Upload-Expires"]).timestamp()


async def test_upload_expires_moves_with_a_patch(tus, tus_app):
    r = await tus.create(100, {"filename": "later.bin"})
    assert r.code == 201
    at_creation = expires_header(r)
    uid = r.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
    store = tus_app.manager.store
    t = time.time()
    # as if the POST had come a day ago and nothing since: what its answer would have said
    set_clocks(store, uid, created=t - DAY, data=t - DAY, info=t - DAY)
    r = await tus.head(uid)
    assert r.code == 200
    a_day_ago = expires_header(r)
    assert abs(a_day_ago - (t - DAY + 10 * DAY)) <= 1  # the header has 1 s resolution
    assert a_day_ago < at_creation - DAY + 2
    patched_at = time.time()
    r = await tus.patch(uid, 0, b"z" * 10)
    assert r.code == 204
    assert expires_header(r) >= int(patched_at - SLACK) + 10 * DAY
    r = await tus.head(uid)
    assert r.code == 200 and r.headers["Upload-Offset"] == "10"
    after_patch = expires_header(r)
    assert after_patch >= int(patched_at - SLACK) + 10 * DAY
    # later than the creation answer: by the day the clocks were set back, and never
    # earlier than the real POST's answer, which came milliseconds before the PATCH
    # (1 s resolution, and file times from the kernel's coarse clock: the same second,
    # or the one before)
    assert after_patch > a_day_ago + DAY - 2
    assert after_patch >= at_creation - 1
