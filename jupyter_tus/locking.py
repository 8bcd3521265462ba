"""Upload locks kept apart from the store that holds the bytes (tusd's ``Locker``).

tusd composes a data store with a locker (``pkg/memorylocker``, ``pkg/filelocker``):
the handler takes an upload's lock for every request that reads or changes it, and
asks the holder to let go when another request wants the upload (``requestUnlock``),
so a client that lost its connection can resume at once instead of waiting for the
old request to time out.

``MemoryLocker`` is that for one process: stores whose bytes are not on a local disk
(``S3Store``) use it. Its locks exclude threads and coroutines of this process only;
two servers writing to the same bucket prefix are not locked against each other (as
with tusd's memorylocker), which is why docs/object-storage.md says one server per
prefix (JupyterHub's per-user servers are exactly that).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .store import UploadLocked, UploadNotFound


class MemoryLocker:
    """Exclusive per-upload locks in this process, plus the holders' release callbacks.

    ``lock(id)`` gives a lock object (not yet taken); ``on_release_request(id, cb)``
    registers how the current holder lets go; ``request_release(id)`` calls it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: dict[str, MemoryLock] = {}
        self._callbacks: dict[str, Callable[[], None]] = {}

    def lock(
        self,
        upload_id: str,
        timeout: float | None = None,
        exists: Callable[[str], bool] | None = None,
    ) -> MemoryLock:
        """The lock of ``upload_id``. ``exists(id)``, when given, is asked once the lock
        is taken: False releases it and raises UploadNotFound (the upload was removed
        while we waited, or never was)."""
        return MemoryLock(self, upload_id, timeout, exists)

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
    ``filestore.UploadLock`` (``acquire(blocking, timeout) -> bool``, ``release()``,
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


class ReleaseRequests:
    """tusd's ``requestUnlock``, kept apart from any store (the manager's): the request
    holding an upload's lock registers how it lets go, a newcomer asks it to.

    ``register(id, lock, callback)`` while ``lock`` is held; ``request(id)`` calls the
    callback once (True) if that lock is still held, else False (nobody to ask, or a
    holder that already let go: its registration is stale and dropped). Any thread.
    Works with every store's locks (``store.UploadLockLike``: ``held``)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._holders: dict[str, tuple[object, Callable[[], None]]] = {}

    def register(self, upload_id: str, lock: object, callback: Callable[[], None]) -> None:
        with self._guard:
            self._holders[upload_id] = (lock, callback)

    def request(self, upload_id: str) -> bool:
        with self._guard:
            entry = self._holders.pop(upload_id, None)
        if entry is None or not getattr(entry[0], "held", False):
            return False
        entry[1]()
        return True
