"""The locker a store is composed with (tusd's ``Locker``, ``StoreComposer.UseLocker``):
each store exposes one (``store.locker``: ``FileLocker`` for the file store's flock
files, ``MemoryLocker`` for S3), the manager takes every lock and asks for every
release through it; run against both stores."""

from __future__ import annotations

import pytest

from jupyter_tus import locking
from jupyter_tus.manager import UploadManager
from jupyter_tus.store import FileInfo, UploadNotFound


def test_the_store_and_the_manager_lock_through_one_locker(harness, tmp_path):
    store = harness.store()
    assert isinstance(store.locker, locking.Locker)
    manager = UploadManager(store, str(tmp_path))
    assert isinstance(manager.locker, type(store.locker))
    uid = store.new_upload(FileInfo(size=3))
    held = store.locker.lock(uid)
    assert held.acquire(blocking=False)
    # the store's own lock, the manager's and the locker's are one lock
    assert not store.lock(uid).acquire(blocking=False)
    assert not manager.lock(uid).acquire(blocking=False)
    asked = []
    manager.hold(uid, held, lambda: asked.append(uid))
    assert store.request_release(uid) and asked == [uid]
    held.release()
    with manager.lock(uid):
        pass


def test_a_holder_that_let_go_unasked_is_forgotten(harness):
    """A release request reaches only the holder of the lock now: one that
    registered and then released it on its own is never called."""
    store = harness.store()
    uid = store.new_upload(FileInfo(size=3))
    locker = store.locker
    first = locker.lock(uid)
    assert first.acquire(blocking=False)
    called = []
    locker.on_release_request(uid, lambda: called.append("first"))
    first.release()
    second = locker.lock(uid)
    assert second.acquire(blocking=False)  # a holder that registered nothing
    try:
        assert not locker.request_release(uid)
        assert called == []
    finally:
        second.release()


@pytest.mark.parametrize("upload_id", ["0" * 32, "../escape", "a/b", ""])
def test_a_lock_of_no_upload_is_refused(harness, upload_id, tmp_path):
    """No upload (or no valid id): taking its lock raises UploadNotFound, through the
    store or its locker, and leaves no file anywhere."""
    store = harness.store()
    (tmp_path / "escape.info").write_bytes(b"")  # what a path escaping staging would find
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(UploadNotFound):
        store.lock(upload_id).acquire(blocking=False)
    with pytest.raises(UploadNotFound):
        store.locker.lock(upload_id).acquire(blocking=False)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
