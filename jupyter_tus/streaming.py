"""One request's body streamed into the store: ``BodyStream``, held by the handler.

A tus request that carries bytes (PATCH, a creation with its body, the IETF draft's
append) streams them into the store's ``ChunkWriter`` as tornado (or ``bodies``) hands
them over; nothing is held whole. ``BodyStream`` is that machinery, apart from HTTP
(headers, statuses, auth, answers, which stay the handler's):

- each piece written inline on the event loop (a lone upload of a store with local
  files, no checksum, no ``durability=complete``: a thread hop costs more than the
  write) or in a worker thread, the next piece read only once it is on disk (flow
  control); or spliced from the socket into the file (``body_sink``/``body_spliced``,
  for ``bodies``);
- a body that runs past the upload's length: what fits is committed at once, in the
  worker thread;
- the idle timer (``idle_timeout``: a client gone quiet is let go);
- the upload's lock this request holds, and letting go of it on a takeover (another
  request asks for the upload: ``manager.acquire``/``manager.hold`` call ``let_go``),
  on the idle timeout or a dropped connection: once the piece in flight is on disk,
  ``abort()`` keeps the bytes and the lock is released (after an object store's abort,
  which runs in a thread);
- the commit at the body's end: in a worker thread when it has work (checksum verdict,
  fsync, landing; where the file landed looked up there too), on the loop when it has
  none (an fstat), and the park of an unfinished upload's lock and open file for the
  same client's next PATCH (``manager.park``).

Refusals the body meets (a full disk, a body too long, a wrong checksum at commit) are
handed to the handler (``on_error``), which answers them once the body is drained.
Sources: tusd's ``pkg/handler`` (``unrouted_handler.go``: ``writeChunk``, the lock's
release on a takeover request) for the shape; the tus 1.0.0 spec for the semantics.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tornado.ioloop import IOLoop

from .store import ChunkWriter, FileInfo, LandingRefused, StoreError, UploadLockLike, UploadTooLarge

if TYPE_CHECKING:
    import logging

    from .manager import UploadManager


class BodyStream:
    """One request's body and the upload's lock it holds (see the module).

    Made by the handler per request (``TusHandler.initialize``); ``manager`` is the
    ``UploadManager``, ``idle_timeout`` seconds without a byte end the request,
    ``on_error(exc, overflow)`` gets the ``FileInfo`` committed when a body ran past
    the upload's length (``overflow``, ``exc`` None), then the refusal met while
    streaming (``exc``, a ``StoreError``; ``overflow`` None); ``close`` drops the
    connection (a let-go); ``log`` for the warnings."""

    # requests of this process streaming a body into the store right now: one alone
    # writes inline (see ``receive``)
    active = 0

    def __init__(
        self,
        manager: UploadManager,
        idle_timeout: float,
        on_error: Callable[[StoreError | None, FileInfo | None], None],
        close: Callable[[], None],
        log: logging.Logger | logging.LoggerAdapter,
    ) -> None:
        self.manager = manager
        self.idle_timeout = idle_timeout
        self.on_error = on_error
        self.close = close
        self.log = log
        self.writer: ChunkWriter | None = None
        self.whole: Any = None  # a small creation's body (``.body``, a bytearray), received first
        self.lock: UploadLockLike | None = None
        self.upload_id: str | None = None
        self.gone = False  # the connection closed
        self.ended = False  # the request was answered (``finished``)
        self.committing = False
        # (info, where it landed relative to root_dir) for an upload's info whose
        # landing was looked up in a worker thread, so that the answer does not stat it
        # again; for that very FileInfo object only (a newer one is looked up)
        self.landed: tuple[FileInfo, str | None] | None = None
        self._idle_timer: object | None = None
        self._writing: asyncio.Future | None = None  # a piece being written in a thread
        self._aborting: asyncio.Future | None = None  # an object store's abort, in a thread
        self._piece_error: StoreError | None = None
        self._overflow_info: FileInfo | None = None  # committed when a body ran past
        self._last_data = time.monotonic()

    # ------------------------------------------------------------------ receiving

    def start(self, writer: ChunkWriter) -> None:
        """Stream the body into ``writer``; end it if the client goes quiet too long."""
        self.writer = writer
        BodyStream.active += 1
        self._start_idle_timer()
        if self.gone:  # the connection closed while the writer was being opened
            self.release()

    def start_whole(self, whole: Any) -> None:
        """Receive a small creation's whole body into ``whole.body`` (a bytearray)
        before the upload is created; the idle timer runs for it too."""
        self.whole = whole
        self._start_idle_timer()

    @property
    def receiving(self) -> bool:
        return self.writer is not None or self.whole is not None

    def receive(self, chunk: bytes | memoryview) -> Awaitable[None] | None:
        """A piece of the body (``data_received``): into the small creation's body, or
        written. ``chunk`` may be a view of a buffer that is reused once this returns
        (or its awaitable resolves): see ``bodies``. What is kept is copied. The caller
        checked that ``receiving``."""
        if self.whole is not None:  # bounded by Content-Length, which is its length
            self.whole.body += chunk
            self._last_data = time.monotonic()
            return None
        writer = self.writer
        self._last_data = time.monotonic()
        if (
            BodyStream.active == 1
            and not self.manager.blocking_io  # an object store's write may send a part
            and self.manager.durability != "complete"
            and writer.fits(len(chunk))  # else the write commits: never on the loop
        ):
            # A lone upload writes inline: a thread hop per piece costs more than the
            # write (py-spy), and nothing else waits on the loop for long. (Not with
            # durability=complete: its writeback thread can make a write() wait.)
            self._write_piece(writer, chunk)
            self.take_error()
            return None
        # Otherwise each piece (1 MiB) is written by a worker thread while the loop
        # serves the other requests (api/status, other uploads), so none waits behind a
        # write(). tornado reads the next piece once this one is on disk.
        self._writing = asyncio.get_running_loop().run_in_executor(
            None, self._write_piece, writer, chunk
        )
        return self._writing

    def _write_piece(self, writer: ChunkWriter, chunk: bytes) -> None:
        """In a worker thread (or inline). A refusal (too long, disk full) is taken up
        on the loop (``take_error``).

        A body that runs past the upload's length (one without Content-Length, which
        could not be refused up front) keeps the bytes that fit, and those are
        committed here and now: if they reach the length, the upload is complete and
        landed before any answer, so offset == length always means landed."""
        before = writer.written
        try:
            writer.write(chunk)
        except UploadTooLarge as exc:
            self._piece_error = exc
            try:
                info = self._overflow_info = writer.commit()
                if info.is_complete:
                    self.landed = (info, self.manager.landed_relative(info))
            except StoreError as commit_exc:
                self._piece_error = commit_exc
        except StoreError as exc:
            self._piece_error = exc
        finally:
            if writer.written > before:
                self.manager.received(writer.info.id, writer.written - before)

    def body_sink(self) -> Any:
        """For ``bodies``: the writer the body's next bytes may be spliced into (the
        file store's ``FileChunkWriter.splice_from``), when this request would write
        them inline (see ``receive``) and nothing must see them (a checksum); else
        None. (A refused request has no writer.)"""
        writer = self.writer
        if (
            writer is None
            or self._piece_error is not None
            or BodyStream.active != 1
            or self.manager.blocking_io
            or self.manager.durability == "complete"
            or not getattr(writer, "spliceable", False)
        ):
            return None
        return writer

    def body_spliced(self, pipe: int, n: int) -> bool:
        """For ``bodies``: ``n`` bytes of the body wait in ``pipe``: write them (as
        ``_write_piece`` would). Returns whether all were (the pipe is empty again)."""
        writer = self.writer
        self._last_data = time.monotonic()
        before = writer.written
        try:
            writer.splice_from(pipe, n)
        except StoreError as exc:  # a full disk: what fitted is kept; drain the rest
            self._piece_error = exc
        finally:
            if writer.written > before:
                self.manager.received(writer.info.id, writer.written - before)
        self.take_error()
        return writer.written - before == n

    def take_error(self) -> None:
        """On the loop: report what a piece's write met (the bytes that fitted are
        kept) and hand the refusal to the handler (``on_error``), which stops the
        writing and drains the rest."""
        exc, self._piece_error = self._piece_error, None
        info, self._overflow_info = self._overflow_info, None
        if info is not None:
            self.on_error(None, info)  # the answer says what the overflow reached
            if info.is_complete:
                self.manager.completed(info, **self.known_landing(info))
            else:
                self.manager.track(info)
        if isinstance(exc, LandingRefused) and self.writer is not None:
            self.manager.refused(self.writer.info)
        if exc is not None:
            self.on_error(exc, None)

    # ------------------------------------------------------------------ idle timer

    def _start_idle_timer(self) -> None:
        self._last_data = time.monotonic()
        self._idle_timer = IOLoop.current().call_later(self.idle_timeout, self._check_idle)

    def _stop_idle_timer(self) -> None:
        """Drop the idle check of a request that ended: a timer left for the idle
        timeout (a minute) would keep the handler, and its request, alive that long."""
        timer, self._idle_timer = self._idle_timer, None
        if timer is not None:
            IOLoop.current().remove_timeout(timer)

    def _check_idle(self) -> None:
        if not self.receiving or self.committing or self.ended:
            return
        quiet = time.monotonic() - self._last_data
        if quiet >= self.idle_timeout:
            self.log.warning(
                "upload %s: no data for %.0f s, ending the request", self.upload_id, quiet
            )
            self.let_go()
        else:
            self._idle_timer = IOLoop.current().call_later(
                self.idle_timeout - quiet, self._check_idle
            )

    # ------------------------------------------------------------------ lock, let go

    def hold(self, upload_id: str, lock: UploadLockLike) -> None:
        """This request holds the upload's lock now (takeovers ask it to let go)."""
        self.upload_id, self.lock = upload_id, lock
        self.manager.hold(upload_id, lock, self.let_go)

    async def acquire(self, upload_id: str) -> None:
        """The upload's lock, asked for on the loop (its holder asked to let go,
        ``manager.acquire``)."""
        self.upload_id = upload_id
        self.lock = await self.manager.acquire(upload_id, self.let_go)

    def let_go(self) -> None:
        """Stop receiving (takeover, idle): keep what arrived, unlock, drop the link.

        Only a request streaming a body lets go: any other (HEAD, DELETE, a final
        concatenation) ends soon by itself, and cutting it would lose its answer."""
        if self.committing or not self.receiving:
            return
        self.whole = None  # a small creation's body: nothing was created yet
        self.release()
        self.close()

    def release(self) -> None:
        """Stop writing (keeping what arrived) and unlock: now, or as soon as the piece
        a worker thread is writing is on disk."""
        if self._writing is not None and not self._writing.done():
            self._writing.add_done_callback(lambda _: self.release())
            return
        self.stop_writing()
        if self._aborting is not None and not self._aborting.done():
            self._aborting.add_done_callback(lambda _: self.unlock())
            return
        self.unlock()

    def unlock(self) -> None:
        lock, self.lock = self.lock, None
        if lock is not None:
            lock.release()

    def stop_writing(self) -> None:
        """Write no more (a refusal, a let-go): keep what arrived (``abort()``)."""
        writer = self._take_writer()
        if writer is None:
            return
        if not self.manager.blocking_io:
            try:
                self.manager.track(writer.abort())
            except Exception as exc:  # the lock is released all the same (``release``)
                self.log.warning("upload %s: keeping what arrived failed: %s", writer.info.id, exc)
            return
        # An object store's abort puts the tail and the record: in a thread, and the
        # lock is released only after it (``release``).
        self._aborting = asyncio.get_running_loop().run_in_executor(None, writer.abort)
        self._aborting.add_done_callback(functools.partial(self._aborted, writer))

    def _aborted(self, writer: ChunkWriter, future: asyncio.Future) -> None:
        try:
            self.manager.track(future.result())
        except Exception as exc:  # kept for recovery; the next request sees the store
            self.log.warning("upload %s: keeping what arrived failed: %s", writer.info.id, exc)

    def _take_writer(self) -> ChunkWriter | None:
        writer, self.writer = self.writer, None
        if writer is not None:
            BodyStream.active -= 1
        return writer

    def connection_closed(self) -> None:
        """The client went away: drop a small creation's body and the idle check.
        The handler then lets go (``release``) unless a commit is under way (it
        releases when the request ends)."""
        self.gone = True
        self.whole = None
        self._stop_idle_timer()

    def finished(self) -> None:
        """The request was answered: no more idle checks. The handler then lets go
        (``release``) unless a commit is under way."""
        self.ended = True
        self._stop_idle_timer()

    # ------------------------------------------------------------------ commit

    async def commit(self, park: bool = False) -> FileInfo:
        """End of the body: verify and make durable off the event loop (an fsync or the
        final move of a big file takes seconds), then report completion. ``park``: an
        upload left unfinished keeps its lock and open data file for the next PATCH
        (``UploadManager.park``), where its store's writer can (``commit(keep=True)``).
        Raises the store's refusal (``ChecksumMismatch``, ``LandingRefused``, …)."""
        writer = self._take_writer()
        self.committing = True
        try:
            if self._commit_is_cheap(writer):
                # an fstat (and a close, unless kept): not worth a thread hop
                keep = park and hasattr(writer, "kept") and not self.gone
                info = writer.commit(keep=True) if keep else writer.commit()
            else:
                info = await asyncio.get_running_loop().run_in_executor(
                    None, self._commit_and_locate, writer
                )
        except LandingRefused:
            self.manager.refused(writer.info)
            raise
        except StoreError:
            self.manager.refresh(writer.info.id)  # cut back, or complete but not landed
            raise
        finally:
            self.committing = False
        if info.is_complete:
            self.manager.completed(info, **self.known_landing(info))
        else:
            self.manager.track(info)
        kept = getattr(writer, "kept", None)
        if kept is not None:
            if self.lock is not None and not self.gone:
                self.manager.park(info.id, self.lock, kept, info)
                self.lock = None  # the park holds it now
            else:
                kept.close()
        return info

    def _commit_and_locate(self, writer: ChunkWriter) -> FileInfo:
        """In a worker thread: commit, and, for an upload that completed, look up where
        it landed now rather than on the loop."""
        info = writer.commit()
        if info.is_complete:
            self.landed = (info, self.manager.landed_relative(info))
        return info

    def known_landing(self, info: FileInfo) -> dict[str, Any]:
        """``landed=`` for the manager's reports, when a worker thread looked it up."""
        known = self.landed
        return {"landed": known[1]} if known is not None and known[0] is info else {}

    def _commit_is_cheap(self, writer: ChunkWriter) -> bool:
        """Nothing to fsync, record or land: a PATCH that leaves the upload unfinished,
        without a checksum, unless durability is 'always'."""
        info = writer.info
        return (
            not self.manager.blocking_io  # an object store's commit puts a record
            and self.manager.durability != "always"
            and info.unverified_from is None
            and writer.declares is None
            and (info.size is None or writer.start + writer.written < info.size)
        )
