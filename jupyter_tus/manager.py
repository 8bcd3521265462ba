"""UploadManager: the logic between the HTTP handlers and the store.

It owns what is neither HTTP nor storage: where an upload may land, waiting for an
upload's lock (asking a stale holder to let go), events, and the expiry sweep. The
handlers stay thin, as jupyter-server's contents handlers do over their manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import destinations, hooks, locking, metrics, protocol, summary
from .checksums import new_hasher
from .hooks import HookFailed, HookRefused, Hooks, RequestContext
from .quotas import Quotas
from .store import (
    Checksum,
    ChecksumMismatch,
    ChunkWriter,
    DataStore,
    FileInfo,
    LandingFailed,
    LandingRefused,
    StagingRefused,
    StorageUnavailable,
    StoreError,
    UploadExpired,
    UploadIncomplete,
    UploadLocked,
    UploadLockLike,
    UploadNotFound,
    UploadNotPatchable,
)

EVENT_SCHEMA_ID = "https://events.jupyter.org/jupyter_tus/upload/v1"
EVENT_SCHEMA_PATH = Path(__file__).parent / "event_schemas" / "upload" / "v1.yaml"
LOCK_POLL = 0.02
# Seconds at least between two tries to start a store that was unavailable (``available``).
REOPEN_INTERVAL = 1.0
# Seconds an upload's lock and open data file are kept after a PATCH that left it
# unfinished, for the same client's next PATCH (see ``UploadManager.park``).
PARK_SECONDS = 2.0


@dataclasses.dataclass
class Parked:
    """What a PATCH kept of an upload for the next one: its lock, its data file open
    at its end (``filestore.KeptFile``), and its info as that PATCH committed it."""

    lock: UploadLockLike
    kept: Any
    info: FileInfo
    timer: asyncio.TimerHandle | None = None

    def close(self) -> None:
        """Close the file, then let go of the lock."""
        try:
            self.kept.close()
        finally:
            self.lock.release()


class UploadManager:
    """One per server: see the module docstring."""

    def __init__(
        self,
        store: DataStore,
        root_dir: str,
        *,
        allow_hidden: bool = False,
        lock_wait: float = 20.0,
        emit: Callable[[dict], None] | None = None,
        log: logging.Logger | None = None,
        hooks: Hooks | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self.store = store
        self.hooks = hooks or Hooks()
        self.quotas = quotas or Quotas(store, root_dir)
        # Held across a quota check and the creation it admits (worker threads).
        self._admission = threading.Lock()
        self._hook_tasks: set[asyncio.Task] = set()  # post_finish hooks running
        self.root_dir = os.path.realpath(root_dir)
        self.allow_hidden = allow_hidden
        self.lock_wait = lock_wait
        self._emit = emit
        self.log = log or logging.getLogger(__name__)
        # Set when the store could not be started (its staging folder refused, an
        # object store unreachable, a bucket missing or denied): every request is
        # answered with this message instead, until ``reopen`` (the start's claim, set
        # by the app) succeeds when a request tries it again (``available``).
        self.unavailable: str | None = None
        self.reopen: Callable[[], None] | None = None
        self.recover_on_reopen = True
        self._reopen_at = 0.0
        # The unfinished uploads, id -> (declared size or None, bytes received), and
        # the sum of the latter: the gauges of ``metrics``. Kept in step by every
        # creation, write and outcome (from worker threads too, hence the lock), and
        # recounted from the staging folder by ``recount``.
        self._ledger_lock = threading.Lock()
        self._under_way: dict[str, tuple[int | None, int]] = {}
        self._staged = 0
        store.on_landing_failure = self._landing_failed
        # The locker the store is composed with (tusd's composer.UseLocker: the store's
        # ``locker``; a store without one locks itself): every lock the server takes,
        # and who holds it here and how it lets go (a takeover), go through it.
        self.locker: locking.Locker = getattr(store, "locker", store)
        # What the server advertises: what the store offers (tusd's composer).
        self.extensions = protocol.store_extensions(store)
        self.checksum_algorithms = protocol.store_checksum_algorithms(store)
        # Whether the store's writes, commits and reads may wait on the network (an
        # object store): then none of them runs on the event loop.
        self.blocking_io = not hasattr(store, "durability")
        # Uploads whose lock and open data file a PATCH kept for the next (``park``).
        self._parked: dict[str, Parked] = {}

    # ------------------------------------------------------------------ the store's operations
    # What the handlers may do with the store; they never reach ``store`` itself. Each
    # may block (disk or network): call them from a worker thread, except where said.

    @property
    def durability(self) -> Any:
        """The file store's ``Durability`` (when it fsyncs), or None for a store that
        has none (S3 acknowledges only durable bytes). No I/O."""
        return getattr(self.store, "durability", None)

    def open_writer(
        self,
        upload_id: str,
        offset: int,
        checksum: Checksum | None = None,
        *,
        length: int | None = None,
        limit: int | None = None,
    ) -> ChunkWriter:
        """The store's writer for one body at ``offset`` (``store.open_writer``)."""
        return self.store.open_writer(upload_id, offset, checksum, length=length, limit=limit)

    def get_info(self, upload_id: str) -> FileInfo:
        return self.store.get_info(upload_id)

    def get_reader(self, upload_id: str) -> Any:
        """A binary stream of the upload's bytes (``store.get_reader``)."""
        return self.store.get_reader(upload_id)

    def needs_settling(self, info: FileInfo) -> bool:
        """Does ``settle`` have work to do for ``info``? No I/O."""
        return self.store.needs_settling(info)

    def check_free_space(self, size: int) -> None:
        """InsufficientStorage (or UploadTooLarge) if ``size`` more bytes cannot be
        stored; a store without the notion checks nothing."""
        check = getattr(self.store, "check_free_space", None)
        if check is not None:
            check(size)

    def declare_length(self, upload_id: str, size: int) -> FileInfo:
        """Declare a deferred length (creation-defer-length); the caller holds the lock."""
        return self.store.declare_length(upload_id, size)

    def concatenate(self, final_id: str, partial_ids: list[str]) -> FileInfo:
        """Fill the final upload from its partials and land it (concatenation); the
        caller holds the final upload's lock."""
        return self.store.concat_uploads(final_id, partial_ids)

    def lock(self, upload_id: str) -> UploadLockLike:
        """The upload's lock, not yet taken (``locker.lock``); ``acquire`` is the way
        for a request: this one for a worker thread that tries it once."""
        return self.locker.lock(upload_id)

    def hold(self, upload_id: str, lock: UploadLockLike, callback: Callable[[], None]) -> None:
        """Register how the holder of ``upload_id``'s ``lock`` (taken) lets go when a
        newcomer asks (``locker.on_release_request``; forgotten when ``lock`` is
        released)."""
        self.locker.on_release_request(upload_id, callback)

    def open_writer_at(
        self,
        info: FileInfo,
        offset: int,
        checksum: Checksum | None = None,
        *,
        length: int | None = None,
        limit: int | None = None,
        kept: Any = None,
    ) -> ChunkWriter:
        """``open_writer`` for an upload whose info the caller just read under its
        lock, for a store that can start from it (the file store's ``open_writer_at``:
        no second read; ``kept``: the file a PATCH kept open, see ``park``)."""
        open_at = getattr(self.store, "open_writer_at", None)
        if open_at is None:
            return self.open_writer(info.id, offset, checksum, length=length, limit=limit)
        return open_at(info, offset, checksum, length=length, limit=limit, kept=kept)

    @property
    def creates_whole(self) -> bool:
        """Can the store create an upload with its whole body in one go
        (``create_whole``)? No I/O."""
        return hasattr(self.store, "create_whole") and not self.blocking_io

    # ------------------------------------------------------------------ creation

    async def create_upload(
        self,
        size: int | None,
        metadata: dict[str, str],
        context: RequestContext,
        *,
        partial: bool = False,
        final_of: list[str] | None = None,
    ) -> FileInfo:
        """A client's creation: the ``pre_create`` hook (which may refuse, or change the
        metadata and so the destination), then ``create`` in a worker thread."""
        metadata = await self.pre_create(
            size, metadata, context, partial=partial, final_of=final_of
        )
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.create(size, metadata, partial=partial, final_of=final_of)
        )

    async def pre_create(
        self,
        size: int | None,
        metadata: dict[str, str],
        context: RequestContext,
        *,
        partial: bool = False,
        final_of: list[str] | None = None,
    ) -> dict[str, str]:
        """The ``pre_create`` hook, if there is one: the metadata to create the upload
        with (the hook may change it, or refuse with HookRefused)."""
        if self.hooks.pre_create is None:
            return metadata
        if final_of is not None:
            loop = asyncio.get_running_loop()
            size = await loop.run_in_executor(None, self._final_size, final_of)
        draft = FileInfo(
            size=size,
            metadata=dict(metadata),
            is_partial=partial,
            is_final=final_of is not None,
            partial_uploads=list(final_of or []),
        )
        result = await self._run_hook("pre_create", draft, context)
        return hooks.new_metadata(draft, result)

    def create(
        self,
        size: int | None,
        metadata: dict[str, str],
        *,
        partial: bool = False,
        final_of: list[str] | None = None,
    ) -> FileInfo:
        """Check the destination and create the upload (not yet its bytes)."""
        info = self._draft(size, metadata, partial=partial, final_of=final_of)
        if final_of is not None:
            info.size = self._final_size(final_of)
        with self._admission if self.quotas.enabled else contextlib.nullcontext():
            self.quotas.check(
                info.size,
                info.path,
                overwrite=info.overwrite,
                staged=final_of is None,
            )
            upload_id = self.store.new_upload(info)
        self.log.info("upload %s created: %s", upload_id, self.describe(info))
        metrics.UPLOADS_CREATED.inc()
        info = self.store.get_info(upload_id)
        self.track(info)
        return info

    def _draft(
        self,
        size: int | None,
        metadata: dict[str, str],
        *,
        partial: bool = False,
        final_of: list[str] | None = None,
    ) -> FileInfo:
        """The upload to create, its destination checked (``resolve_destination``)."""
        dest = None if partial else self.resolve_destination(metadata)
        return FileInfo(
            size=size,
            metadata=metadata,
            is_partial=partial,
            is_final=final_of is not None,
            partial_uploads=list(final_of or []),
            path=str(dest.path) if dest else None,
            overwrite=bool(dest and dest.overwrite),
        )

    def create_whole(
        self,
        size: int,
        metadata: dict[str, str],
        body: bytes | bytearray,
        checksum: Checksum | None,
        *,
        partial: bool = False,
    ) -> tuple[FileInfo, str | None, StoreError | None]:
        """A creation that brings the upload's whole body (``len(body) == size``): check
        the destination and the quotas, then the store creates, writes, completes and
        lands it in one go (``store.create_whole``; see ``creates_whole``). In a worker
        thread.

        Returns the upload, where it landed (relative to root_dir, None if it did not)
        and the error to answer with now that it exists, if any: ChecksumMismatch (the
        body does not match ``checksum``: the upload is created empty, and its client
        may send the body again, as after a PATCH with a wrong checksum), LandingFailed
        (retried) or LandingRefused (for good; its bytes are kept). Refusals before it
        exists (destination, quotas, size) are raised."""
        if checksum is not None:
            hasher = new_hasher(checksum.algorithm)
            hasher.update(body)
            if hasher.digest() != checksum.digest:
                info = self.create(size, metadata, partial=partial)
                mismatch = ChecksumMismatch(
                    f"{checksum.algorithm} checksum of the body does not match; offset stays at 0"
                )
                return info, None, mismatch
        info = self._draft(size, metadata, partial=partial)
        # Quotas: the whole creation is admitted at once (it is small), so that two
        # creations never both take the last room.
        with self._admission if self.quotas.enabled else contextlib.nullcontext():
            self.quotas.check(info.size, info.path, overwrite=info.overwrite)
            info = self.store.create_whole(info, body)
        metrics.UPLOADS_CREATED.inc()
        metrics.RECEIVED_BYTES.inc(len(body))
        landed = self.landed_relative(info)
        error: StoreError | None = None
        if info.path and landed is None:
            error = (
                LandingRefused(info.landing_error)
                if info.landing_error
                else LandingFailed(
                    f"all {info.offset} bytes arrived, but moving the file to its"
                    " destination failed; the server retries the move"
                )
            )
        return info, landed, error

    def resolve_destination(self, metadata: dict[str, str]) -> Any:
        """Where an upload with ``metadata`` lands (``.path``, ``.overwrite``), checked:
        by the store when it names its own destinations (S3Store: a key under its
        prefix), else in the workspace (``destinations.resolve``). None: it stays in
        the store. Raises DestinationRefused or DestinationExists."""
        resolve = getattr(self.store, "resolve_destination", None)
        if resolve is not None:
            return resolve(metadata, allow_hidden=self.allow_hidden)
        return destinations.resolve(self.root_dir, metadata, allow_hidden=self.allow_hidden)

    def check_length(self, info: FileInfo, size: int) -> None:
        """Refuse a deferred length declared now (before the PATCH's body) if it does
        not fit the quotas, as its creation would have been. Reads every record: in a
        worker thread."""
        with self._admission:
            self.quotas.check(size, info.path, upload_id=info.id, overwrite=info.overwrite)

    def _final_size(self, partial_ids: list[str]) -> int:
        total = 0
        for pid in partial_ids:
            info = self.store.get_info(pid)
            if not info.is_partial:
                raise UploadNotPatchable(f"upload {pid} is not a partial upload")
            if not info.is_complete:
                raise UploadIncomplete(
                    f"partial upload {pid} is not complete ({info.offset} of {info.size} bytes)"
                )
            total += info.size or 0
        return total

    def describe(self, info: FileInfo) -> str:
        where = self.relative(info.path) if info.path else "(stays in the store)"
        size = "deferred length" if info.size is None else f"{info.size} bytes"
        return f"{info.filename} -> {where}, {size}"

    def relative(self, path: str | None) -> str | None:
        """A path as the contents API names it (relative to root_dir); a store's
        relative path (S3Store: relative to its prefix) as it is."""
        if path is None:
            return None
        if not os.path.isabs(path):
            return Path(path).as_posix()
        prefix = self.root_dir.rstrip("/") + "/"
        if path.startswith(prefix) and "/." not in path and "//" not in path:
            return path[len(prefix) :]  # the common case, without pathlib's cost
        try:
            return Path(path).relative_to(self.root_dir).as_posix()
        except ValueError:
            return None

    # ------------------------------------------------------------------ reading

    def landed_relative(self, info: FileInfo) -> str | None:
        """Where the upload's file is now, relative to root_dir, once it landed."""
        return self.relative(self.store.landed_path(info))

    def settle(self, info: FileInfo) -> tuple[FileInfo, bool]:
        """Complete an upload whose bytes all arrived without their commit, and land
        one whose move failed before (``store.settle``); return its info and whether
        it landed now. A move that fails again is logged and left to the sweep;
        LandingRefused (for good) is raised. The caller holds the lock; touches whole
        files: run it off the event loop, then report with ``completed``/``refused``."""
        try:
            landed = self.store.settle(info)
        except LandingFailed as exc:
            self.log.warning("upload %s: the final move failed again: %s", info.id, exc)
            landed = False
        return self.store.get_info(info.id), landed

    def check(self, info: FileInfo) -> FileInfo:
        """The upload as a client may rely on it (HEAD, PATCH): raises LandingRefused
        if it can never land (its bytes are kept), UploadGone once its landed file was
        moved, deleted or changed, UploadExpired once its expiry has passed."""
        if info.is_complete and info.path:
            if info.landing_error:
                raise LandingRefused(info.landing_error)
            self.store.check_landed(info)
        if info.expires is not None and info.expires <= time.time():
            raise UploadExpired(f"upload {info.id} expired and will be removed")
        return info

    def get_complete_info(self, upload_id: str) -> FileInfo:
        """The info of an upload whose bytes may be read (GET): complete, and, once
        landed, its file still the one that landed (else UploadGone). An upload that
        could not land is served from the store."""
        info = self.store.get_info(upload_id)
        if not info.is_complete:
            raise UploadIncomplete(
                f"upload {upload_id} is not complete: {info.offset} of {info.size} bytes"
            )
        self.store.check_landed(info)
        return info

    def listing(
        self, finished_within: float = 24 * 3600.0, finished_limit: int | None = None
    ) -> list[dict]:
        """The uploads a person would want to see, newest first: every unfinished one,
        and those finished in the last ``finished_within`` seconds, at most the
        ``finished_limit`` latest of them (None: all; partial uploads, the pieces of a
        parallel upload, are left out). Each as ``summary.summary`` describes it. Reads
        every record and stats every upload: run it off the event loop."""
        since = time.time() - finished_within
        infos = [info for info in self.store.list_uploads() if not info.is_partial]
        finished = [
            (when, info.id)
            for info in infos
            if info.is_complete and (when := self.store.last_activity(info)) >= since
        ]
        if finished_limit is not None:
            finished = sorted(finished, reverse=True)[:finished_limit]
        shown = {upload_id for _, upload_id in finished}
        return [
            summary.summary(info, self.store, self.root_dir)
            for info in infos
            if not info.is_complete or info.id in shown
        ]

    # ------------------------------------------------------------------ locking

    async def acquire(
        self, upload_id: str, on_release_request: Callable[[], None]
    ) -> UploadLockLike:
        """Take the upload's lock for one request.

        When another request of this server holds it (a PATCH on a connection that went
        quiet), that request is asked to stop: it keeps what it wrote and lets go. We
        wait for that at most ``lock_wait`` seconds, then refuse with UploadLocked. A
        lock kept by ``park`` passes to this request at once."""
        parked = self.unpark(upload_id)
        if parked is not None:
            parked.kept.close()
            self.locker.on_release_request(upload_id, on_release_request)
            return parked.lock
        lock = self.locker.lock(upload_id)
        deadline = time.monotonic() + self.lock_wait
        asked = False
        loop = asyncio.get_running_loop()

        def take() -> bool:
            return lock.acquire(blocking=False)

        # (taking it looks for the upload's record and opens its lock file, or asks
        # an object store whether the upload exists: not on the loop)
        while not await loop.run_in_executor(None, take):
            if not asked:
                asked = self.locker.request_release(upload_id)
                if asked:
                    self.log.info("upload %s: asked the current request to let go", upload_id)
                    metrics.LOCK_TAKEOVERS.inc()
            if time.monotonic() >= deadline:
                raise UploadLocked(
                    f"upload {upload_id} is busy with another request that did not let go"
                    f" within {self.lock_wait:g} s"
                )
            await asyncio.sleep(LOCK_POLL)
        self.locker.on_release_request(upload_id, on_release_request)
        return lock

    def park(self, upload_id: str, lock: UploadLockLike, kept: Any, info: FileInfo) -> None:
        """Keep an upload's lock and its data file, open at its end, after a PATCH that
        left it unfinished (``FileChunkWriter.commit(keep=True)``), so that the same
        client's next PATCH starts writing at once: no lock to take, no record to read,
        no file to open (``unpark``). Nothing on disk changes while it is parked, and
        nobody can change it: the lock is held. It is let go after ``PARK_SECONDS``,
        or at once when another request of this server asks for the upload (``acquire``
        takes it over; the sweep and other processes find it locked meanwhile, as during
        a PATCH). On the event loop."""
        self.drop_parked(upload_id)  # (never two)
        parked = Parked(lock, kept, info)
        parked.timer = asyncio.get_running_loop().call_later(
            PARK_SECONDS, self.drop_parked, upload_id
        )
        self._parked[upload_id] = parked
        self.locker.on_release_request(upload_id, lambda: self.drop_parked(upload_id))

    def unpark(self, upload_id: str) -> Parked | None:
        """Take what ``park`` kept of the upload, if anything: the caller holds its
        lock from now on, and must close ``kept`` or write on with it."""
        parked = self._parked.pop(upload_id, None)
        if parked is not None and parked.timer is not None:
            parked.timer.cancel()
        return parked

    def drop_parked(self, upload_id: str) -> None:
        """Close the parked file and release the lock (its time is up, or someone
        asked for the upload)."""
        parked = self.unpark(upload_id)
        if parked is not None:
            parked.close()

    # ------------------------------------------------------------------ uploads under way

    def track(self, info: FileInfo) -> None:
        """Note where an upload stands (after its creation or a write): unfinished ones
        count in ``jupyter_tus_uploads_in_progress`` and ``jupyter_tus_staged_bytes``."""
        with self._ledger_lock:
            _size, before = self._under_way.pop(info.id, (None, 0))
            self._staged -= before
            if not info.is_complete:
                self._under_way[info.id] = (info.size, info.offset)
                self._staged += info.offset
            self._set_gauges()

    def refresh(self, upload_id: str) -> None:
        """``track`` the upload as the store has it now (after a write that failed)."""
        try:
            info = self.store.get_info(upload_id)
        except StoreError:
            self.untrack(upload_id)
        else:
            self.track(info)

    def untrack(self, upload_id: str) -> None:
        with self._ledger_lock:
            _size, before = self._under_way.pop(upload_id, (None, 0))
            self._staged -= before
            self._set_gauges()

    def received(self, upload_id: str, n: int) -> None:
        """``n`` body bytes were written into the upload (any thread)."""
        metrics.RECEIVED_BYTES.inc(n)
        with self._ledger_lock:
            entry = self._under_way.get(upload_id)
            if entry is not None:
                self._under_way[upload_id] = (entry[0], entry[1] + n)
                self._staged += n
                self._set_gauges()

    def recount(self) -> None:
        """Count the unfinished uploads again from the staging folder (another process,
        such as a kernel with a ``FileStore``, may have changed it). Reads every
        record: at start, or in a thread."""
        infos = [i for i in self.store.list_uploads() if not i.is_complete]
        with self._ledger_lock:
            self._under_way = {i.id: (i.size, i.offset) for i in infos}
            self._staged = sum(i.offset for i in infos)
            self._set_gauges()

    def _set_gauges(self) -> None:
        metrics.UPLOADS_IN_PROGRESS.set(len(self._under_way))
        metrics.STAGED_BYTES.set(self._staged)

    def _landing_failed(self, info: FileInfo, exc: StoreError) -> None:
        """The store's report of a final move that failed (any thread)."""
        kind = "refused" if isinstance(exc, LandingRefused) else "retry"
        metrics.LANDING_FAILURES.labels(kind=kind).inc()

    # ------------------------------------------------------------------ outcomes

    def completed(self, info: FileInfo, **landed: str | None) -> None:
        """Report a finished upload (on the event loop) and start its ``post_finish``
        hook, unless it is a partial upload (a piece of a parallel upload).
        ``landed=``: where it landed (relative to root_dir, or None), when a worker
        thread looked it up already (else it is looked up here)."""
        self.log.info("upload %s complete: %s", info.id, self.describe(info))
        self.untrack(info.id)
        self.quotas.landed(info)
        metrics.UPLOADS_FINISHED.inc()
        self._send_event("completed", info, **landed)
        if self.hooks.post_finish is not None and not info.is_partial:
            task = asyncio.ensure_future(self._post_finish(info))
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)

    async def _post_finish(self, info: FileInfo) -> None:
        # logged and counted by _run_hook; the file stays where it landed
        with contextlib.suppress(HookFailed, HookRefused):
            await self._run_hook("post_finish", info)

    async def wait_hooks(self) -> None:
        """Wait until the ``post_finish`` hooks started so far have ended."""
        while self._hook_tasks:
            await asyncio.wait(set(self._hook_tasks))

    async def _run_hook(self, name: str, *args: Any) -> Any:
        """Call hook ``name``; HookRefused passes, any other error is logged, counted
        and raised as HookFailed (500: the server's configuration is at fault)."""
        hook = getattr(self.hooks, name)
        try:
            return await hooks.call(hook, *args)
        except HookRefused as exc:
            if name == "post_finish":
                self.log.warning("the post_finish hook cannot refuse (%s): ignored", exc.message)
            raise
        except Exception as exc:
            metrics.HOOK_FAILURES.labels(hook=name).inc()
            self.log.exception("jupyter-tus: the %s hook failed", name)
            raise HookFailed(f"the server's {name} hook failed; its log says why") from exc

    def refused(self, info: FileInfo) -> None:
        """Report an upload whose landing was refused for good (its bytes are kept)."""
        self.log.warning("upload %s cannot land: %s", info.id, info.landing_error)
        self.untrack(info.id)
        self._send_event("refused", info, reason=info.landing_error)

    def recover(self) -> None:
        """Repair the staging directory at start (the store's ``recover``), log each
        repair, and report each upload that could not be repaired; never raises, so
        one bad upload never stops the extension from loading."""
        self._report_quarantined(self._recover_store())

    def _recover_store(self) -> dict[str, str]:
        """The store's ``recover`` (blocking), each repair logged; the uploads it
        quarantined, id -> reason."""
        try:
            for line in self.store.recover():
                self.log.warning("jupyter-tus recovery: %s", line)
        except Exception:  # the folder itself unreadable: the endpoint still answers
            self.log.exception("jupyter-tus recovery failed; uploads are left as they are")
        return self.store.quarantined()

    def _report_quarantined(self, quarantined: dict[str, str]) -> None:
        for upload_id, reason in quarantined.items():
            self._send_event("quarantined", FileInfo(id=upload_id), reason=reason)

    async def available(self) -> str | None:
        """None when the store takes requests, else why not (answered 503). A store
        that could not be started (S3 unreachable or throttling at start, a bucket
        created or a permission granted since) is started again here: ``reopen`` (its
        claim), then recovery and the gauges' recount, in worker threads, by one
        request at a time and at most once per ``REOPEN_INTERVAL`` seconds; requests
        meanwhile get the reason. Events are emitted on the event loop."""
        if self.unavailable is None or self.reopen is None:
            return self.unavailable
        now = time.monotonic()
        if now < self._reopen_at:
            return self.unavailable
        self._reopen_at = float("inf")  # one try at a time
        loop = asyncio.get_running_loop()
        try:
            try:
                await loop.run_in_executor(None, self.reopen)
            except (StagingRefused, StorageUnavailable, OSError) as exc:
                self.unavailable = f"uploads are unavailable: {exc}"
                return self.unavailable
            except Exception:  # never a 500 for the request that tried: the log says why
                self.log.exception("jupyter-tus: starting the store again failed")
                return self.unavailable
            if self.recover_on_reopen:
                self._report_quarantined(await loop.run_in_executor(None, self._recover_store))
            await loop.run_in_executor(None, self.recount)
        finally:
            self._reopen_at = time.monotonic() + REOPEN_INTERVAL
        self.unavailable = None
        self.reopen = None
        self.log.info("jupyter-tus: the store is available now; uploads are taken again")
        return None

    def terminate(self, upload_id: str) -> None:
        """Remove an upload at its client's request (the caller holds its lock)."""
        self.removed(self._terminate(upload_id), "terminated")

    async def terminate_upload(self, upload_id: str, context: RequestContext) -> None:
        """A client's DELETE: the ``pre_terminate`` hook (which may refuse), then
        ``terminate``. The caller holds the lock."""
        loop = asyncio.get_running_loop()
        if self.hooks.pre_terminate is not None:
            info = await loop.run_in_executor(None, self.store.get_info, upload_id)
            await self._run_hook("pre_terminate", info, context)
        # removing files, or requests to an object store: in a thread
        self.removed(await loop.run_in_executor(None, self._terminate, upload_id), "terminated")

    def _terminate(self, upload_id: str) -> FileInfo:
        info = self.store.get_info(upload_id)
        self.store.terminate(upload_id)
        return info

    def removed(self, info: FileInfo, action: str) -> None:
        """Report a removed upload (``terminated`` or ``expired``), on the event loop."""
        self.log.info("upload %s %s: %s", info.id, action, self.describe(info))
        self.untrack(info.id)
        counter = metrics.UPLOADS_EXPIRED if action == "expired" else metrics.UPLOADS_TERMINATED
        counter.inc()
        self._send_event(action, info)

    def _send_event(
        self, action: str, info: FileInfo, reason: str | None = None, **landed: str | None
    ) -> None:
        if self._emit is None:
            return
        data = {"action": action, "id": info.id, "filename": info.filename, "offset": info.offset}
        if info.size is not None:
            data["size"] = info.size
        relative = None
        if action == "completed":
            relative = landed["landed"] if "landed" in landed else self.landed_relative(info)
        if relative is not None:
            data["path"] = relative
        if reason:
            data["reason"] = reason
        self._emit(data)

    def retry_landings(self) -> tuple[list[FileInfo], list[FileInfo]]:
        """Complete and move the uploads with all their bytes that wait for it (a
        write that ended without its commit; a destination that was full or
        read-only for a while), so their files appear without a client coming back;
        return those that landed and those refused for good. Uploads whose lock is
        held are left to their holder. Touches whole files (a copy across
        filesystems): run it in a thread, then report each with ``completed`` or
        ``refused`` on the event loop."""
        landed, refused = [], []
        for info in list(self.store.pending_landings()):
            with self._lock_if_free(info.id) as free:
                if not free:
                    continue
                try:
                    info, moved = self.settle(info)
                except LandingRefused:
                    refused.append(self.store.get_info(info.id))
                    continue
                if moved:
                    landed.append(info)
        return landed, refused

    @contextlib.contextmanager
    def _lock_if_free(self, upload_id: str) -> Iterator[bool]:
        """Take the upload's lock if nobody holds it; yield whether we got it."""
        lock = self.locker.lock(upload_id)
        try:
            free = lock.acquire(blocking=False)
        except UploadNotFound:
            free = False
        try:
            yield free
        finally:
            if free:
                lock.release()

    # ------------------------------------------------------------------ expiry

    def remove_expired(self) -> list[FileInfo]:
        """Remove expired unfinished uploads whose lock is free right now (an upload
        being written holds its lock, so it is never removed under a writer); return
        them. Reads every record: run it in a thread, then report each with
        ``removed(info, "expired")`` on the event loop."""
        removed = []
        for upload_id in list(self.store.expired_uploads()):
            with self._lock_if_free(upload_id) as free:
                if free:
                    removed.append(self._terminate(upload_id))
        return removed
