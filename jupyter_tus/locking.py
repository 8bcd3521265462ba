"""Upload locks kept apart from the store that holds the bytes (tusd's ``Locker``).

tusd composes a data store with a locker (``pkg/handler``'s ``StoreComposer.UseLocker``,
``pkg/memorylocker``, ``pkg/filelocker``): the handler takes an upload's lock for every
request that reads or changes it, and asks the holder to let go when another request
wants the upload (``requestUnlock``), so a client that lost its connection can resume
at once instead of waiting for the old request to time out.

Here a store is composed with one ``Locker`` (``store.locker``), and the manager takes
every lock, and asks for every release, through it (``UploadManager.locker``):

- ``FileLocker``: ``flock`` on ``<directory>/<id>.lock`` (``FileStore``'s staging
  folder): excludes threads, coroutines and processes (the server and a kernel);
- ``MemoryLocker``: locks in this process, for stores whose bytes are not on a local
  disk (``S3Store``). Its locks exclude threads and coroutines of this process only;
  two servers writing to the same bucket prefix are not locked against each other (as
  with tusd's memorylocker), which is why docs/object-storage.md says one server per
  prefix (JupyterHub's per-user servers are exactly that).

Both keep the release requests of their holders in this process: ``on_release_request``
registers how the holder of a lock lets go (forgotten when that lock is released),
``request_release`` asks it to.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from .store import UploadLocked, UploadLockLike, UploadNotFound


@runtime_checkable
class Locker(Protocol):
    """Per-upload exclusive locks and the takeover (tusd's ``Locker`` and
    ``requestUnlock``); a store is composed with one (``store.locker``).

    ``lock(id, timeout)``: the upload's lock, not yet taken (``acquire(blocking,
    timeout) -> bool``, ``release()``, ``held``; as a context manager it waits
    ``timeout`` seconds, default the locker's, then raises UploadLocked; taking it
    raises UploadNotFound for an upload that does not exist).
    ``on_release_request(id, callback)``: how the holder of the upload's lock in this
    process lets go, forgotten once that lock is released.
    ``request_release(id) -> bool``: call it (once); False if no holder registered."""

    def lock(self, upload_id: str, timeout: float | None = None) -> UploadLockLike: ...

    def on_release_request(self, upload_id: str, callback: Callable[[], None]) -> None: ...

    def request_release(self, upload_id: str) -> bool: ...


class FileLocker:
    """``flock`` locks on ``<directory>/<id>.lock`` (tusd's filelocker, with flock).

    ``timeout``: seconds a ``with locker.lock(id)`` waits by default (None: forever).
    ``exists(id)``: whether the upload exists (the file store: its record is there),
    asked before and after the lock is taken; None: always. The caller checks ids
    (never a path)."""

    def __init__(
        self,
        directory: str | os.PathLike,
        timeout: float | None = 20.0,
        exists: Callable[[str], bool] | None = None,
    ) -> None:
        self.directory = os.fspath(directory)
        self.timeout = timeout
        self.exists = exists
        self._guard = threading.Lock()
        self._callbacks: dict[str, Callable[[], None]] = {}

    def lock(self, upload_id: str, timeout: float | None = None) -> FileLock:
        """The upload's lock, not yet taken: ``with locker.lock(id): ...`` takes it,
        waiting up to ``timeout`` seconds (default: the locker's)."""
        return FileLock(self, upload_id, self.timeout if timeout is None else timeout)

    def lock_new(self, upload_id: str) -> FileLock:
        """The lock of an upload this thread is creating (nobody else knows its id
        yet), taken without looking for its record (there may be none yet); its file
        is made here. Only a recovery (``FileStore.recover``, in another server on the
        same folder) can find it before its record, take it while it is free and
        remove it: then it is waited for (UploadLocked after the timeout) and the file
        made again, so the lock held is always the one at ``<id>.lock``."""
        lock = self.lock(upload_id)
        deadline = None if lock.timeout is None else time.monotonic() + lock.timeout
        while True:
            fd = os.open(lock.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if deadline is not None and time.monotonic() >= deadline:
                            raise UploadLocked(
                                f"upload {upload_id} is locked by another writer"
                            ) from None
                        time.sleep(0.02)
                if _linked(fd, lock.path):
                    lock._fd = fd
                    return lock
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # removed by a recovery that found it free: made again

    def lock_unrecorded(self, upload_id: str) -> FileLock | None:
        """The lock of an upload that may have no record (a creation cut short: see
        ``FileStore.recover``), taken without looking for it, if its lock file is
        there (never made here, never through a symlink) and free; else None."""
        lock = self.lock(upload_id)
        try:
            fd = os.open(lock.path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None  # no lock file
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None  # held (its creator is at work, in another process)
        except BaseException:
            os.close(fd)
            raise
        lock._fd = fd
        return lock

    def on_release_request(self, upload_id: str, callback: Callable[[], None]) -> None:
        """Register how the holder of ``upload_id``'s lock in this process lets go."""
        with self._guard:
            self._callbacks[upload_id] = callback

    def request_release(self, upload_id: str) -> bool:
        """Ask this process's holder of the lock to let go; False if none is known."""
        with self._guard:
            callback = self._callbacks.pop(upload_id, None)
        if callback is None:
            return False
        callback()
        return True

    def _forget(self, upload_id: str) -> None:
        with self._guard:
            self._callbacks.pop(upload_id, None)


def _linked(fd: int, path: str) -> bool:
    """Is the file open as ``fd`` the one at ``path`` (not unlinked since)?"""
    try:
        there = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    here = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


class FileLock:
    """An exclusive lock on one upload: ``flock`` on ``<id>.lock``.

    flock locks belong to an open file description, so two ``FileLock`` objects
    exclude each other whether they live in one process (two coroutines, two threads)
    or in two (the server and a kernel). Usable as a context manager.
    """

    def __init__(self, locker: FileLocker, upload_id: str, timeout: float | None) -> None:
        self._locker = locker
        self.upload_id = upload_id
        self.timeout = timeout
        self.path = f"{locker.directory}/{upload_id}.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; False if it is held elsewhere (and ``blocking`` is False or
        ``timeout`` passed). Raises UploadNotFound if the upload does not exist."""
        if self._fd is not None:
            raise RuntimeError("lock already held by this object")
        exists = self._locker.exists
        if exists is not None and not exists(self.upload_id):
            raise UploadNotFound(f"upload {self.upload_id} not found")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                try:
                    fcntl.flock(
                        fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if not blocking or deadline else 0)
                    )
                    break
                except BlockingIOError:
                    if not blocking or (deadline is not None and time.monotonic() >= deadline):
                        os.close(fd)
                        return False
                    time.sleep(0.02)
        except BaseException:
            os.close(fd)
            raise
        # The upload may have been terminated while we waited: then the lock file we
        # hold is unlinked and the info gone.
        if exists is not None and not exists(self.upload_id):
            os.close(fd)
            raise UploadNotFound(f"upload {self.upload_id} not found")
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._locker._forget(self.upload_id)
            os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> FileLock:
        if not self.acquire(timeout=self.timeout):
            raise UploadLocked(f"upload {self.upload_id} is locked by another writer")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class MemoryLocker:
    """Exclusive per-upload locks in this process, plus the holders' release callbacks
    (tusd's memorylocker).

    ``timeout``: seconds a ``with locker.lock(id)`` waits by default (None: forever).
    ``exists(id)``: whether the upload exists, asked once a lock is taken (False
    releases it and raises UploadNotFound); None: always. ``shared``: another
    ``MemoryLocker`` whose locks and callbacks this one shares (two stores over the
    same staging area, each with its own ``exists`` and ``timeout``).
    """

    def __init__(
        self,
        timeout: float | None = None,
        exists: Callable[[str], bool] | None = None,
        *,
        shared: MemoryLocker | None = None,
    ) -> None:
        self.timeout = timeout
        self.exists = exists
        if shared is not None:
            self._cond, self._held, self._callbacks = shared._cond, shared._held, shared._callbacks
        else:
            self._cond = threading.Condition()
            self._held: dict[str, MemoryLock] = {}
            self._callbacks: dict[str, Callable[[], None]] = {}

    def lock(
        self,
        upload_id: str,
        timeout: float | None = None,
        exists: Callable[[str], bool] | None = None,
    ) -> MemoryLock:
        """The lock of ``upload_id`` (waiting ``timeout``, default the locker's).
        ``exists(id)`` (default the locker's) is asked once the lock is taken: False
        releases it and raises UploadNotFound (the upload was removed while we waited,
        or never was)."""
        return MemoryLock(
            self,
            upload_id,
            self.timeout if timeout is None else timeout,
            self.exists if exists is None else exists,
        )

    def on_release_request(self, upload_id: str, callback: Callable[[], None]) -> None:
        """Register how the holder of ``upload_id``'s lock lets go (a takeover)."""
        with self._cond:
            self._callbacks[upload_id] = callback

    def request_release(self, upload_id: str) -> bool:
        """Ask the holder of the lock to let go; False if no holder registered how."""
        with self._cond:
            callback = self._callbacks.pop(upload_id, None)
        if callback is None:
            return False
        callback()
        return True

    def is_locked(self, upload_id: str) -> bool:
        with self._cond:
            return upload_id in self._held

    # ------------------------------------------------------------------ for MemoryLock

    def _try(self, lock: MemoryLock, blocking: bool, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while lock.upload_id in self._held:
                if not blocking:
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            self._held[lock.upload_id] = lock
            return True

    def _release(self, lock: MemoryLock) -> None:
        with self._cond:
            if self._held.get(lock.upload_id) is lock:
                del self._held[lock.upload_id]
                self._callbacks.pop(lock.upload_id, None)
                self._cond.notify_all()


class MemoryLock:
    """One upload's lock, taken with ``acquire`` or ``with``; the interface of
    ``FileLock`` (``acquire(blocking, timeout) -> bool``, ``release()``,
    ``held``), so the manager takes either the same way."""

    def __init__(
        self,
        locker: MemoryLocker,
        upload_id: str,
        timeout: float | None,
        exists: Callable[[str], bool] | None,
    ) -> None:
        self._locker = locker
        self.upload_id = upload_id
        self.timeout = timeout
        self._exists = exists
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; False if another holder has it (and ``blocking`` is False, or
        ``timeout`` seconds passed). UploadNotFound if the upload does not exist."""
        if self._held:
            raise RuntimeError("lock already held by this object")
        if not self._locker._try(self, blocking, timeout):
            return False
        self._held = True
        if self._exists is not None:
            try:
                found = self._exists(self.upload_id)
            except BaseException:
                self.release()
                raise
            if not found:
                self.release()
                raise UploadNotFound(f"upload {self.upload_id} not found")
        return True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._locker._release(self)

    def __enter__(self) -> MemoryLock:
        if not self.acquire(timeout=self.timeout):
            raise UploadLocked(f"upload {self.upload_id} is locked by another writer")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
