"""FileStore: uploads kept as files in a staging directory, landing in a workspace.

Layout of the staging directory (tusd's filestore, made crash-safe)::

    .jupyter-tus-store   the mark that this folder is a store's (see ``claim``)
    <id>                 the bytes received so far; its size *is* the offset
    <id>.info            FileInfo as JSON, always replaced atomically (temp, fsync, rename)
    <id>.lock            the per-upload lock (flock), held across threads and processes

``<id>`` is 32 URL-safe characters. The store touches nothing else in the folder: a
file that is not one of these (or an ``.info`` whose JSON does not name its own id) is
left alone, and a folder holding such files is not taken over at all.

When the last byte of an upload with a ``path`` arrives, the data file is fsynced and
moved with one link or rename to its destination, through a ``Workspace`` that checks
the destination's folders at that moment (containment at use); the info records where
it landed and what the landed file was. The order of steps is chosen so that a crash at
any point leaves something ``recover()`` can finish or undo, and never an offset ahead
of the bytes on disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import json
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from .checksums import CHECKSUM_ALGORITHMS, new_hasher
from .locking import FileLock, FileLocker
from .store import (
    Checksum,
    ChecksumMismatch,
    FileInfo,
    InsufficientStorage,
    LandingFailed,
    LandingRefused,
    StagingRefused,
    StoreError,
    UploadGone,
    UploadIncomplete,
    UploadLocked,
    UploadNotFound,
    UploadNotPatchable,
    UploadQuarantined,
    UploadTooLarge,
    check_declarable,
    check_writable,
)
from .workspace import Workspace, is_permanent, unique_name

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{32}$")  # secrets.token_urlsafe(24)
# The staging entries the store makes: <id>, <id>.info, <id>.lock, <id>.info.<8 hex>.tmp
# (an .info being replaced), and <id>.info.corrupt (set aside by earlier versions).
ENTRY_PATTERN = re.compile(
    r"^(?P<id>[A-Za-z0-9_-]{32})(?P<kind>|\.info|\.lock|\.info\.[0-9a-f]{8}\.tmp|\.info\.corrupt)$"
)
MARKER = ".jupyter-tus-store"
RECORD_MAX = 1024 * 1024  # bytes: a record is a few hundred; a bigger .info is not one
COPY_BLOCK = 8 * 1024 * 1024
# While a body streams in, ask the kernel to write back every this many bytes, so the
# fsync at completion finds little left to do (issue: durability at disk speed).
WRITEBACK_EVERY = 64 * 1024 * 1024


class Durability(str, enum.Enum):
    """When the store fsyncs the bytes it received."""

    ALWAYS = "always"  # at the end of every write: an acknowledged byte survives a power cut
    COMPLETE = "complete"  # when an upload completes, before it lands (the default)
    NEVER = "never"  # scratch disks: a power cut may lose acknowledged bytes


def _open_file(path: str | os.PathLike, mode: str = "rb", buffering: int = -1) -> BinaryIO:
    """Open a regular file of the store: never through a symlink, never blocking on a
    FIFO or a device someone put in its place. Anything but a regular file is
    FileNotFoundError (for the store, its file is not there)."""
    return _open_file_stat(path, mode, buffering)[0]


def _open_file_stat(
    path: str | os.PathLike, mode: str = "rb", buffering: int = -1
) -> tuple[BinaryIO, os.stat_result]:
    """``_open_file``, and the file's ``fstat`` taken to check it."""
    flags = {"rb": os.O_RDONLY, "r+b": os.O_RDWR}[mode]
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.ENOTDIR):
            raise FileNotFoundError(errno.ENOENT, "not a regular file", str(path)) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileNotFoundError(errno.ENOENT, "not a regular file", str(path))
    return open(fd, mode, buffering=buffering), st


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _no_space(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


class NotARecord(UploadNotFound):
    """An ``<id>.info`` that is not one of the store's records (another program's
    file, or one cut by a power loss without fsync): left alone, never an upload."""


# The file store's lock (``locking.FileLock``: flock on ``<id>.lock``), by its old name.
UploadLock = FileLock


class FileStore:
    """The store behind the server, usable on its own: see the module docstring."""

    # What the protocol layer advertises for this store (tus checksum extension).
    checksum_algorithms = CHECKSUM_ALGORITHMS

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        durability: Durability | str = Durability.COMPLETE,
        expiration: float | None = None,
        max_size: int | None = None,
        lock_timeout: float | None = 20.0,
        workspace: Workspace | None = None,
    ) -> None:
        self.directory = Path(directory).absolute()
        self._dir = str(self.directory)
        # Where finished uploads land; on its own the store lands anywhere the OS allows.
        self.workspace = workspace or Workspace("/", allow_hidden=True)
        self.durability = Durability(durability)
        self.expiration = expiration
        self.max_size = max_size
        self.lock_timeout = lock_timeout
        # The store's locks (flock on <id>.lock) and their holders' release requests in
        # this process: the locker it is composed with (tusd's UseLocker).
        self.locker = FileLocker(self._dir, lock_timeout, self._has_record)
        self._writeback = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tus-writeback")
        # Uploads recovery could not repair, with why: kept as they are, answered with
        # UploadQuarantined until the next start tries again.
        self._quarantined: dict[str, str] = {}
        # Told of every final move that fails, with the LandingFailed or LandingRefused
        # about to be raised (the server counts them); called in the failing thread.
        self.on_landing_failure: Callable[[FileInfo, StoreError], None] | None = None

    # ------------------------------------------------------------------ paths

    def _check_id(self, upload_id: str) -> str:
        if not isinstance(upload_id, str) or not ID_PATTERN.match(upload_id):
            raise UploadNotFound(f"upload {upload_id!r} not found")
        return upload_id

    def _data_path(self, upload_id: str) -> Path:
        return self.directory / self._check_id(upload_id)

    # The same names as strings, for the per-request path (pathlib costs more than the
    # system calls there).
    def _data_name(self, upload_id: str) -> str:
        return f"{self._dir}/{self._check_id(upload_id)}"

    def _info_name(self, upload_id: str) -> str:
        return f"{self._dir}/{self._check_id(upload_id)}.info"

    def _info_path(self, upload_id: str) -> Path:
        return self.directory / f"{self._check_id(upload_id)}.info"

    def _lock_path(self, upload_id: str) -> Path:
        return self.directory / f"{self._check_id(upload_id)}.lock"

    def _ensure_directory(self) -> None:
        if not (self.directory / MARKER).exists():
            self.claim()

    def claim(self) -> None:
        """Make the staging directory this store's, or refuse it.

        A missing or empty folder is created and marked (``.jupyter-tus-store``); a
        marked one is the store's. An unmarked folder is taken over only if everything
        in it is a store entry (staging of an earlier version); otherwise StagingRefused
        names a few of the foreign files, and nothing is touched."""
        self.directory.mkdir(parents=True, exist_ok=True)
        marker = self.directory / MARKER
        if marker.exists():
            return
        foreign = sorted(e.name for e in os.scandir(self.directory) if not _is_store_entry(e))
        if foreign:
            shown = ", ".join(repr(n) for n in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise StagingRefused(
                f"the staging folder {self.directory.name!r} already holds files that are not"
                f" uploads ({shown}); the store would not touch them, but will not share the"
                " folder either: set c.TusApp.staging_dir to a new or empty folder"
            )
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b'{"store": "jupyter_tus.filestore.FileStore", "version": 1}\n')
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if self._fsync:
            _fsync_dir(self.directory)
            _fsync_dir(self.directory.parent)  # the folder itself, made just now maybe

    @property
    def _fsync(self) -> bool:
        return self.durability is not Durability.NEVER

    # ------------------------------------------------------------------ info files

    def _read_info(self, upload_id: str) -> FileInfo:
        """The record of ``upload_id``. NotARecord (an UploadNotFound) when the file
        there is not a record of this store (not JSON, or not naming its own id): the
        store leaves it alone and no request sees it as an upload."""
        return self._read_record(upload_id)[0]

    def _read_record(self, upload_id: str) -> tuple[FileInfo, float | None]:
        """``_read_info``, and the record's mtime (seconds) when it was read."""
        if upload_id in self._quarantined:
            raise UploadQuarantined(
                f"upload {upload_id} could not be recovered when the server started"
                f" ({self._quarantined[upload_id]}); it is kept as it is for the"
                " administrator: upload the file again"
            )
        path = self._info_name(upload_id)
        mtime = None
        try:
            f, st = _open_file_stat(path)
            with f:
                # As many bytes as it holds (a record is replaced whole, never written in
                # place), not a buffer of RECORD_MAX allocated for each read.
                raw = f.read(min(st.st_size, RECORD_MAX) + 1)
            mtime = st.st_mtime
            data = json.loads(raw) if len(raw) <= RECORD_MAX else None
        except FileNotFoundError:
            if not os.path.lexists(path):
                raise UploadNotFound(f"upload {upload_id} not found") from None
            data = None  # a folder, a FIFO, a symlink: not a record
        except ValueError:  # not JSON, or not UTF-8
            data = None
        info = _record(data, upload_id)
        if info is None:
            raise NotARecord(f"upload {upload_id} not found")
        return info, mtime

    def _save_info(self, info: FileInfo) -> None:
        """Replace ``<id>.info`` atomically: a crash leaves the old or the new, whole
        (a synced temp file renamed over it, then the staging folder synced)."""
        path = self._info_name(info.id)
        tmp = f"{path}.{secrets.token_hex(4)}.tmp"
        data = json.dumps(_record_json(info)).encode()  # one line: the C encoder
        try:
            for attempt in range(3):
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    if self._fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                try:
                    os.replace(tmp, path)
                    break
                except FileNotFoundError:
                    # the temp file was removed meanwhile: a recovery starting in another
                    # server on this folder (it removes what a crash leaves): again
                    if attempt == 2:
                        raise
            if self._fsync:
                _fsync_dir(self.directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if _no_space(exc):
                raise InsufficientStorage("no space left to record the upload's state") from exc
            raise

    def _stored_bytes(self, upload_id: str) -> int:
        """The size of the data file: 0 when it is gone or not a regular file."""
        try:
            st = os.lstat(self._data_path(upload_id))
        except FileNotFoundError:
            return 0
        return st.st_size if stat.S_ISREG(st.st_mode) else 0

    def _refresh(self, info: FileInfo, record_mtime: float | None = None) -> FileInfo:
        """Fill in what is derived from the disk: the offset and the expiry.
        ``record_mtime``: the record's mtime if the caller has it (one stat less)."""
        if info.is_complete:
            info.offset = info.size or 0
            info.expires = None
            if info.is_partial and self.expiration is not None:
                # a finished partial is only staging for a final: it expires too, or
                # one whose final never comes (or was made) would stay for good
                info.expires = self._last_activity(info) + self.expiration
            return info
        # One lstat of the data file: its size is the offset, its mtime the last byte.
        try:
            st = os.lstat(self._data_name(info.id))
        except FileNotFoundError:
            st = None
        regular = st is not None and stat.S_ISREG(st.st_mode)
        stored = st.st_size if regular else 0
        info.offset = stored if info.size is None else min(stored, info.size)
        if info.unverified_from is not None:
            info.offset = min(info.offset, info.unverified_from)
        if self.expiration is not None:
            if record_mtime is None:
                with contextlib.suppress(FileNotFoundError):
                    record_mtime = os.stat(self._info_name(info.id)).st_mtime
            times = [info.created, record_mtime or 0.0, st.st_mtime if st is not None else 0.0]
            info.expires = max(times) + self.expiration
        return info

    def last_activity(self, info: FileInfo) -> float:
        """When a byte last arrived or the record last changed (seconds since the
        epoch): what expiry counts from."""
        return self._last_activity(info)

    def _last_activity(self, info: FileInfo) -> float:
        times = [info.created]
        for path in (self._data_path(info.id), self._info_path(info.id)):
            with contextlib.suppress(FileNotFoundError):
                times.append(os.stat(path).st_mtime)
        return max(times)

    # ------------------------------------------------------------------ core API

    def new_upload(self, info: FileInfo) -> str:
        """Create an upload from ``info`` (its id is chosen here) and return the id."""
        self._new_record(info)
        # The record first, then the bytes: a crash in between leaves a record without
        # data, which recovery drops; the store never leaves data it cannot name.
        self._save_info(info)
        try:
            open(self._data_path(info.id), "xb").close()
            if self.durability is Durability.ALWAYS:
                # the record's fsync of the folder came before this name: an
                # acknowledged byte must not lose its file to a power cut
                _fsync_dir(self.directory)
        except OSError as exc:
            self._info_path(info.id).unlink(missing_ok=True)
            if _no_space(exc):
                raise InsufficientStorage("no space left to create the upload") from exc
            raise
        if info.size == 0 and not info.is_final:
            # Complete at once. A landing that fails is recorded in the info (retried,
            # or refused for good), and the upload exists: the caller reads its state.
            with self.lock(info.id), contextlib.suppress(LandingFailed, LandingRefused):
                self._complete(info)
        return info.id

    def _new_record(self, info: FileInfo) -> None:
        """Check ``info``'s size against the limits and the free space, and make it a
        new upload's record: its id (192 random bits), offset 0, created now."""
        self._ensure_directory()
        if info.size is not None:
            if self.max_size is not None and info.size > self.max_size:
                raise UploadTooLarge(
                    f"upload size {info.size} exceeds the maximum of {self.max_size} bytes"
                )
            self.check_free_space(info.size)
        info.id = secrets.token_urlsafe(24)  # 192 random bits
        info.offset = 0
        info.is_complete = False
        info.created = time.time()
        if info.path is not None:
            info.path = os.path.abspath(info.path)

    def create_whole(self, info: FileInfo, body: bytes | bytearray | memoryview) -> FileInfo:
        """``new_upload`` with the upload's whole body (``len(body) == info.size > 0``):
        created, written, completed and landed in one call, under the upload's lock.

        Nobody knows the upload's id before this call returns, so no record is written
        before the bytes: the lock file ``<id>.lock`` is made first (it marks ``<id>``
        as the store's while it has no record; ``recover`` removes the pair that a
        crash before the record leaves), then the data file, synced, then the first
        record, which already says complete (``_complete``: installed by a synced
        rename, the staging folder synced after it, before the landing link). Two
        files made and two fsyncs before the landing's, against three and three for
        ``new_upload`` then a write (tests/test_durability.py's rules hold for the one
        call). Bytes are written whole (``body`` is at most a few hundred KiB: the
        server sends only small bodies this way).

        Returns the upload's info, complete. A landing that fails is recorded in it (as
        for ``settle``: retried, or refused for good with ``landing_error``); the upload
        exists either way, and ``landed_path`` says whether its file is there."""
        if info.size is None or len(body) != info.size or not info.size:
            raise ValueError("create_whole takes the upload's whole body, not empty")
        if info.is_final:
            raise UploadNotPatchable("a final concatenation takes no body")
        self._new_record(info)
        lock = self._new_lock(info.id)
        try:
            data = self._data_name(info.id)
            try:
                fd = os.open(data, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            except OSError as exc:
                self._abandon(info.id)
                if _no_space(exc):
                    raise InsufficientStorage("no space left to create the upload") from exc
                raise
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view) :]
                if self._fsync:
                    os.fsync(fd)  # every byte, before the record that says complete
            except OSError as exc:
                os.close(fd)
                self._abandon(info.id)
                if _no_space(exc):
                    raise InsufficientStorage(
                        f"the server's disk is full: {info.size} bytes do not fit"
                    ) from exc
                raise
            os.close(fd)
            try:
                self._complete(info, synced=True)
            except (LandingFailed, LandingRefused):
                pass  # recorded in the info
            except BaseException:
                if not self._info_path(info.id).exists():
                    self._abandon(info.id)  # no record: the creation did not happen
                raise
        finally:
            lock.release()
        return self._refresh(info)

    def _new_lock(self, upload_id: str) -> FileLock:
        """The lock of an upload this thread is creating (nobody else knows its id
        yet), taken without looking for its record: there is none yet. Its file,
        ``<id>.lock``, is made here (``FileLocker.lock_new``)."""
        return self.locker.lock_new(upload_id)

    def _abandon(self, upload_id: str) -> None:
        """Remove what a creation that failed had made (the data file, then the
        record, then the lock file, as ``terminate``)."""
        for name in (self._data_name(upload_id), self._info_name(upload_id)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{self._dir}/{upload_id}.lock")
        if self._fsync:
            _fsync_dir(self.directory)

    def _awaits_landing(self, info: FileInfo) -> bool:
        """Complete, with a destination, not refused for good, and still staged."""
        return bool(
            info.is_complete
            and info.path
            and not info.landing_error
            and self._data_path(info.id).exists()
        )

    @staticmethod
    def is_full(info: FileInfo) -> bool:
        """Not complete, yet every byte is there (verified): a write that ended
        without its commit (the connection dropped, the request was let go) left it so."""
        return (
            not info.is_complete
            and info.size is not None
            and info.offset >= info.size
            and info.unverified_from is None
        )

    def needs_settling(self, info: FileInfo) -> bool:
        """Does ``settle`` have work to do (a cheap check: a stat at most)?"""
        return self.is_full(info) or self._awaits_landing(info)

    def settle(self, info: FileInfo) -> bool:
        """Finish what an upload with all its bytes still needs: complete it (when a
        write ended without its commit) and land it (when its move failed before: an
        I/O error rather than a crash, which ``recover`` repairs). True if it landed
        now. Raises LandingFailed (may pass) or LandingRefused (for good). The caller
        holds the lock; touches whole files: off the event loop."""
        if self.is_full(info):
            self._complete_full(info)
            return bool(info.path)
        if self._awaits_landing(info):
            self._land_checked(info)
            return True
        return False

    def pending_landings(self) -> Iterator[FileInfo]:
        """Uploads with all their bytes that ``settle`` would complete or land (not
        those whose landing was refused for good)."""
        for info in self.list_uploads():
            if self.needs_settling(info):
                yield info

    def _complete_full(self, info: FileInfo) -> None:
        """Complete an upload whose bytes are all there (any beyond its length cut)."""
        data = self._data_path(info.id)
        if self._stored_bytes(info.id) > (info.size or 0):
            with _open_file(data, "r+b") as f:
                f.truncate(info.size)
        try:
            self._complete(info)
        finally:
            if info.is_final and self._read_info(info.id).is_complete:
                self._remove_partials(info.partial_uploads)  # a concatenation's, used up

    def landed_path(self, info: FileInfo) -> str | None:
        """Where the upload's file is now, if it landed there: None while it waits for
        its move, when its landing was refused, or for an upload without destination."""
        if not info.is_complete or not info.path or info.landing_error:
            return None
        if os.path.exists(self._data_name(info.id)):
            return None
        return info.path

    def check_landed(self, info: FileInfo) -> None:
        """UploadGone if the file the upload landed as was moved, deleted or changed
        since (identity, size and mtime recorded at landing)."""
        path = self.landed_path(info)
        if path is None:
            return
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is None or not _is_landed_file(info, st):
            raise UploadGone(
                f"the file of upload {info.id} ({info.filename}) was moved, deleted or"
                " changed since it landed; upload it again"
            )

    def check_free_space(self, size: int) -> None:
        """Refuse up front a size that cannot fit on the staging disk."""
        free = shutil.disk_usage(self.directory).free
        if size > free:
            raise InsufficientStorage(
                f"upload of {size} bytes does not fit: {free} bytes free on the server's disk"
            )

    def get_info(self, upload_id: str) -> FileInfo:
        return self._refresh(*self._read_record(upload_id))

    def list_uploads(self) -> list[FileInfo]:
        """Every upload the store knows, finished or not, newest first."""
        infos = []
        if self.directory.is_dir():
            for path in self.directory.glob("*.info"):
                with contextlib.suppress(UploadNotFound, UploadQuarantined):
                    infos.append(self.get_info(path.name[: -len(".info")]))
        return sorted(infos, key=lambda i: i.created, reverse=True)

    def get_reader(self, upload_id: str) -> BinaryIO:
        """A binary file object on the upload's bytes: the landed file once it landed
        (UploadGone if that file was moved, deleted or changed since), else the staged
        bytes (received so far, or complete but not landed)."""
        info = self.get_info(upload_id)
        landed = self.landed_path(info)
        try:
            reader = _open_file(landed or self._data_path(upload_id))
        except (FileNotFoundError, NotADirectoryError):
            if landed:
                self.check_landed(info)  # raises UploadGone
            raise UploadNotFound(
                f"the file of upload {upload_id} ({info.filename}) is no longer there"
            ) from None
        if landed and not _is_landed_file(info, os.fstat(reader.fileno())):
            reader.close()
            self.check_landed(info)
            raise UploadGone(f"the file of upload {upload_id} changed since it landed")
        return reader

    def open_writer(
        self,
        upload_id: str,
        offset: int,
        checksum: Checksum | None = None,
        length: int | None = None,
        limit: int | None = None,
    ) -> FileChunkWriter:
        """Start a write at ``offset``. ``length`` declares a deferred length with this
        write: it bounds the write, and is declared only when the write commits (a
        write refused or cut short declares nothing). ``limit`` bounds the bytes of
        this one write (the server's largest body, ``max_chunk_size``): past it, as
        past the length, the bytes that fit are kept and UploadTooLarge is raised. The
        caller holds the lock."""
        return FileChunkWriter(self, self.get_info(upload_id), offset, checksum, length, limit)

    def open_writer_at(
        self,
        info: FileInfo,
        offset: int,
        checksum: Checksum | None = None,
        length: int | None = None,
        limit: int | None = None,
        kept: KeptFile | None = None,
    ) -> FileChunkWriter:
        """``open_writer`` for an upload whose record the caller has just read
        (``get_info``) under its lock: it is not read again. ``kept``: the data file
        the upload's last write left open (``commit(keep=True)``), the lock held since;
        then ``info`` is what that commit returned, and nothing is opened."""
        return FileChunkWriter(self, info, offset, checksum, length, limit, kept)

    def write_chunk(
        self, upload_id: str, offset: int, src: BinaryIO, checksum: Checksum | None = None
    ) -> int:
        """Copy ``src`` to the upload at ``offset``, block by block; return bytes written."""
        writer = self.open_writer(upload_id, offset, checksum)
        try:
            while block := src.read(COPY_BLOCK):
                writer.write(block)
        except BaseException:
            writer.abort()
            raise
        info = writer.commit()
        return info.offset - offset

    # ------------------------------------------------------------------ capabilities

    def lock(self, upload_id: str, timeout: float | None = None) -> FileLock:
        """The upload's lock, not yet taken: ``with store.lock(id): ...`` takes it,
        waiting up to ``timeout`` seconds (default: the store's ``lock_timeout``).
        (``locker.lock``, the id checked.)"""
        return self.locker.lock(
            self._check_id(upload_id), self.lock_timeout if timeout is None else timeout
        )

    def _has_record(self, upload_id: str) -> bool:
        """Does the upload exist (its record is there)? The locker asks it before and
        after taking a lock."""
        return os.path.exists(self._info_name(upload_id))  # (the id checked: UploadNotFound)

    def on_release_request(self, upload_id: str, callback: Callable[[], None]) -> None:
        """Register how the holder of ``upload_id``'s lock in this process lets go."""
        self.locker.on_release_request(upload_id, callback)

    def request_release(self, upload_id: str) -> bool:
        """Ask this process's holder of the lock to let go; False if none is known."""
        return self.locker.request_release(upload_id)

    def terminate(self, upload_id: str) -> None:
        """Forget an upload and remove its staged bytes. The caller holds the lock.

        A file that already landed in the workspace is the user's and stays."""
        self.get_info(upload_id)
        # The bytes go first, then the record: a crash in between leaves a record
        # without data, which ``recover`` drops (and a PATCH on it answers 404). The
        # store never leaves bytes it cannot name, so it never has to guess whether a
        # file in the folder is its own.
        for path in (self._data_path(upload_id), self._info_path(upload_id)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with contextlib.suppress(FileNotFoundError):
            self._lock_path(upload_id).unlink()
        if self._fsync:  # a power cut must not bring a terminated upload back
            _fsync_dir(self.directory)

    def declare_length(self, upload_id: str, size: int) -> FileInfo:
        info = self.get_info(upload_id)
        check_declarable(info, size, self.max_size)
        self.check_free_space(size - info.offset)
        info.size = size
        self._save_info(info)
        if info.offset == size:
            self._complete(info)
        return self._refresh(info)

    def concat_uploads(self, final_id: str, partial_ids: Iterable[str]) -> FileInfo:
        """Fill the final upload with the partials' bytes in order, then land it.

        The partial uploads are removed once the final one has landed. The caller holds
        the final upload's lock."""
        partial_ids = list(partial_ids)
        with contextlib.ExitStack() as held:
            # The partials' locks, held until they are removed: none can be terminated
            # (or used by another final) while its bytes are copied.
            for pid in dict.fromkeys(partial_ids):
                held.enter_context(self.lock(pid, timeout=0))
            partials = [self.get_info(pid) for pid in partial_ids]
            for p in partials:
                if not p.is_partial:
                    raise UploadNotPatchable(f"upload {p.id} is not a partial upload")
                if not p.is_complete:
                    raise UploadIncomplete(
                        f"partial upload {p.id} has {p.offset} of {p.size} bytes"
                    )
            info = self.get_info(final_id)
            info.size = sum(p.size or 0 for p in partials)
            info.partial_uploads = partial_ids
            self._save_info(info)
            with _open_file(self._data_path(final_id), "r+b") as dst:
                dst.truncate(0)
                for pid in partial_ids:
                    try:
                        src = _open_file(self._data_path(pid))
                    except FileNotFoundError:
                        raise UploadNotFound(
                            f"the bytes of partial upload {pid} are gone"
                        ) from None
                    with src:
                        _copy(src, dst)
            try:
                self._complete(info)
            except (LandingFailed, LandingRefused):  # completion is recorded: used up
                self._terminate_all(partial_ids)
                raise
            self._terminate_all(partial_ids)
        return self.get_info(final_id)

    def _terminate_all(self, upload_ids: list[str]) -> None:
        """Terminate uploads whose locks the caller holds."""
        for upload_id in dict.fromkeys(upload_ids):
            with contextlib.suppress(UploadNotFound):
                self.terminate(upload_id)

    def _remove_partials(self, partial_ids: list[str]) -> None:
        for pid in partial_ids:
            with contextlib.suppress(UploadNotFound, UploadLocked), self.lock(pid, timeout=0):
                self.terminate(pid)

    def expired_uploads(self, now: float | None = None) -> Iterator[str]:
        """Ids of unfinished uploads whose expiry has passed."""
        if self.expiration is None:
            return
        now = time.time() if now is None else now
        for info in self.list_uploads():
            if (
                (not info.is_complete or info.is_partial)
                and not self.is_full(info)  # completed by the sweep instead: it arrived
                and info.expires is not None
                and info.expires <= now
            ):
                yield info.id

    # ------------------------------------------------------------------ completion

    def _complete(self, info: FileInfo, synced: bool = False) -> None:
        """All bytes are in: make them durable (unless ``synced``: the caller did,
        after the last byte), record completion, then land.

        Completion is recorded (with the destination and what the file is) *before*
        the move, so a crash between the two leaves an info that ``recover()``
        finishes."""
        data = self._data_path(info.id)
        if self._fsync and not synced:
            with _open_file(data) as f:
                os.fsync(f.fileno())
        info.is_complete = True
        info.offset = info.size or 0
        if info.path is not None:
            info.landed = _identity(os.stat(data))  # a link keeps the inode
        self._save_info(info)
        if info.path is not None:
            self._land_checked(info)

    def _land_checked(self, info: FileInfo) -> None:
        """``_land``, its failures sorted (``_land_sorted``) and reported to
        ``on_landing_failure``."""
        try:
            self._land_sorted(info)
        except (LandingFailed, LandingRefused) as exc:
            if self.on_landing_failure is not None:
                self.on_landing_failure(info, exc)
            raise

    def _land_sorted(self, info: FileInfo) -> None:
        """``_land``, its failures sorted: LandingFailed for what may pass (a full,
        read-only or busy destination: the sweep retries), LandingRefused for what no
        retry fixes (recorded in the info: the bytes stay, and are never moved again)."""
        try:
            self._land(info)
        except LandingRefused as exc:
            self._refuse_landing(info, str(exc))
            raise LandingRefused(info.landing_error) from exc
        except OSError as exc:
            if not is_permanent(exc):
                raise LandingFailed(
                    f"all {info.offset} bytes arrived, but moving the file to its"
                    f" destination failed ({exc.strerror}); the server retries the move"
                ) from exc
            where = "/".join(self.workspace.relative_parts(info.path))
            reason = {
                errno.ENAMETOOLONG: "the name is too long for that folder's filesystem",
                errno.EISDIR: "a folder has that name",
                errno.ENOTEMPTY: "a folder has that name",
            }.get(exc.errno, exc.strerror)
            self._refuse_landing(info, f"the file cannot be placed at {where!r}: {reason}")
            raise LandingRefused(info.landing_error) from exc

    def _refuse_landing(self, info: FileInfo, reason: str) -> None:
        info.landing_error = (
            f"all {info.offset} bytes arrived, but {reason}; the bytes are kept:"
            " download them (GET on the upload) or upload the file again elsewhere"
        )
        self._save_info(info)

    def _land(self, info: FileInfo) -> None:
        """Move the staged data to ``info.path``: one link (no clobbering) or, with
        ``overwrite``, one rename, into the destination folder as the Workspace opened
        and checked it just now. Across filesystems, copy to a temp file in that folder
        first. The file gets the group and mode the contents manager would give it.
        Every step can be redone after a crash (see ``recover``)."""
        data = self._data_path(info.id)
        *folders, name = self.workspace.relative_parts(info.path)
        self.workspace.check_name(name)
        with self.workspace.open_folder(folders, sync=self._fsync) as dir_fd:
            there = _lstat_at(dir_fd, name)
            if there is not None and info.landed and _identity(there)[:2] == info.landed[:2]:
                # Landed before a crash (or a power cut undid the cleanup's unlink): the
                # file there is the one recorded. Only the cleanup is left to do.
                data.unlink(missing_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f".{info.id}.tus-tmp", dir_fd=dir_fd)
                return
            src, src_dir_fd = str(data), None
            staged = os.lstat(data)
            if not stat.S_ISREG(staged.st_mode):
                raise FileNotFoundError(errno.ENOENT, "the staged bytes are not a file")
            if staged.st_dev != os.fstat(dir_fd).st_dev:
                src, src_dir_fd = f".{info.id}.tus-tmp", dir_fd
                # Linked to its destination before a crash? Then rewriting it would
                # rewrite the landed file in place, visible half-written: it only
                # waits for its cleanup.
                if not _same_file_at(dir_fd, src, name):
                    self._copy_into(data, dir_fd, src)
                    info.landed = _identity(os.stat(src, dir_fd=dir_fd))
                    self._save_info(info)
            existing = _lstat_at(dir_fd, name) if info.overwrite else None
            if (
                existing is not None
                and stat.S_ISREG(existing.st_mode)
                and not os.access(name, os.W_OK, dir_fd=dir_fd, follow_symlinks=False)
            ):  # the contents manager would not write there either (may change: 503)
                raise PermissionError(errno.EACCES, "the file to replace is read-only")
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            fd = os.open(src, flags, dir_fd=src_dir_fd)
            try:
                self.workspace.ownership(dir_fd, existing).apply(fd)
            finally:
                os.close(fd)
            while not info.overwrite:
                try:  # atomic, and fails rather than clobber
                    os.link(src, name, src_dir_fd=src_dir_fd, dst_dir_fd=dir_fd)
                    break
                except FileExistsError:
                    if _same_file_at(dir_fd, name, src, src_dir_fd):
                        break  # landed before a crash, not yet cleaned
                    # the name was taken since creation: "name (1).ext", "name (2).ext",
                    # ... counted from the name asked for, not from a taken "(1)"
                    asked = info.metadata.get("filename") or name
                    name = unique_name(asked, lambda n: _lstat_at(dir_fd, n) is not None)
                    info.path = str(Path(info.path).with_name(name))
                    self._save_info(info)
            else:
                os.rename(src, name, src_dir_fd=src_dir_fd, dst_dir_fd=dir_fd)
            data.unlink(missing_ok=True)
            if src_dir_fd is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(src, dir_fd=dir_fd)
            if self._fsync:
                os.fsync(dir_fd)

    def _copy_into(self, data: Path, dir_fd: int, name: str) -> None:
        """Copy the staged bytes to ``name`` in the folder ``dir_fd`` (never through a
        symlink), durably as configured."""
        # Whatever has the name (a copy cut short, or something put there: a hard link
        # to another file, a FIFO) is replaced, never written through.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
        try:
            with _open_file(data) as f, open(fd, "wb") as dst:
                _copy(f, dst)
                if self._fsync:
                    dst.flush()
                    os.fsync(dst.fileno())
        except BaseException:  # a copy cut short never stays in the user's folder
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dir_fd)
            raise

    # ------------------------------------------------------------------ recovery

    def recover(self) -> list[str]:
        """Repair what a crash can leave behind; return one line per repair.

        Run at server start, before any request. Never raises for one upload: an
        upload that cannot be repaired is quarantined (kept as it is, reported, and
        answered with UploadQuarantined) and every other upload is recovered. Only the
        store's own entries are touched; anything else is reported once and left
        alone. Uploads locked by someone else are left alone too."""
        report: list[str] = []
        self._quarantined.clear()
        if not self.directory.is_dir():
            return report
        foreign = []
        # Lock files last: a data file without a record is the store's only while its
        # lock file is there (``create_whole``), so it is looked at first.
        entries = sorted(os.scandir(self.directory), key=lambda e: e.name.endswith(".lock"))
        for entry in entries:
            match = ENTRY_PATTERN.match(entry.name)
            if entry.name == MARKER:
                continue
            if not match or not entry.is_file(follow_symlinks=False):
                foreign.append(entry.name)
                continue
            upload_id, kind = match["id"], match["kind"]
            has_info = self._info_path(upload_id).exists()
            if kind.endswith(".tmp"):
                self._remove(entry.name)
                report.append(f"removed temp file {entry.name}")
            elif kind == ".lock" and not has_info:
                if self._cut_short(upload_id):  # its creator died since its bytes were seen
                    report.append(f"removed {upload_id}, a creation cut short before its record")
            elif kind == "" and not has_info and self._cut_short(upload_id):
                report.append(f"removed {upload_id}, a creation cut short before its record")
            elif kind in ("", ".info.corrupt") and not has_info:
                foreign.append(entry.name)
        if foreign:
            shown = ", ".join(sorted(foreign)[:10]) + (", ..." if len(foreign) > 10 else "")
            report.append(f"left alone {len(foreign)} entries that are not uploads: {shown}")
        for path in sorted(self.directory.glob("*.info")):
            upload_id = path.name[: -len(".info")]
            if not ID_PATTERN.match(upload_id):
                continue  # reported above
            try:
                line = self._recover_locked(upload_id)
            except Exception as exc:  # one upload never stops the others, nor the start
                # (an OSError's text names the path: the reason goes into answers)
                detail = exc.strerror if isinstance(exc, OSError) else str(exc)
                reason = f"{type(exc).__name__}: {detail}"
                self._quarantined[upload_id] = reason
                line = f"quarantined {upload_id}: {reason}"
            if line:
                report.append(line)
        return report

    def _cut_short(self, upload_id: str) -> bool:
        """Remove ``<id>`` and ``<id>.lock`` if they are what a ``create_whole`` cut
        short before its record leaves (a data file beside its lock file, no record,
        the lock free: its creator is gone), or a lock file alone whose upload is gone
        (then False); False (nothing touched) otherwise. A held lock file is never
        removed (a creator at work, in another process: the lock file is what marks its
        bytes as the store's), nor the bytes of a record an earlier version set aside
        (``<id>.info.corrupt``)."""
        lock = self.locker.lock_unrecorded(upload_id)
        if lock is None:
            return False  # no lock file (not known to be the store's), or its creator is at work
        try:
            if self._info_path(upload_id).exists():
                return False  # recorded meanwhile
            if (self.directory / f"{upload_id}.info.corrupt").exists():
                return False  # an upload set aside, not a creation
            had_bytes = self._data_path(upload_id).exists()
            self._abandon(upload_id)  # unlinks the lock file while it is held
            return had_bytes
        finally:
            lock.release()

    def quarantined(self) -> dict[str, str]:
        """The uploads the last ``recover()`` could not repair, with why."""
        return dict(self._quarantined)

    def _cut_back(self, f: BinaryIO, size: int) -> None:
        """Truncate unverified bytes away, durably before the record that stops
        counting them is (or a power cut could count them again)."""
        f.truncate(size)
        if self._fsync:
            os.fsync(f.fileno())

    def _remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.directory / name)

    def _recover_locked(self, upload_id: str) -> str | None:
        try:
            info = self._read_info(upload_id)
        except NotARecord:
            return f"left alone {upload_id}.info: not an upload record"
        except UploadNotFound:
            return None
        lock = self.lock(upload_id)
        if not lock.acquire(blocking=False):
            return None
        try:
            return self._recover_one(info)
        finally:
            lock.release()

    def _recover_one(self, info: FileInfo) -> str | None:
        data = self._data_path(info.id)
        if (not info.is_complete or info.is_partial) and not data.exists():
            # a creation or termination cut short, or bytes removed by hand: an
            # unfinished upload without its bytes cannot go on, and a finished partial
            # without them can never be concatenated (its termination, by a DELETE or
            # an expiry, removes the bytes first)
            self.terminate(info.id)
            return f"removed {info.id}, whose data file was gone"
        if info.is_complete:
            line = None
            if self._awaits_landing(info):
                try:
                    self._land_checked(info)
                    line = f"finished landing {info.id} at {info.path}"
                except LandingFailed as exc:
                    line = f"could not land {info.id} yet, the sweep retries: {exc}"
                except LandingRefused as exc:
                    line = f"cannot land {info.id}, its bytes are kept: {exc}"
            # a crash can come before the partials were removed
            if info.is_final and any(self._info_path(p).exists() for p in info.partial_uploads):
                self._remove_partials(info.partial_uploads)
                line = line or f"removed the used partial uploads of {info.id}"
            return line
        pending = info.unverified_from
        if pending is not None:
            with _open_file(data, "r+b") as f:
                self._cut_back(f, pending)
            info.unverified_from = None
            self._save_info(info)
            return f"cut {info.id} back to its last verified offset {pending}"
        if info.is_final:
            partials_ok = all(self._info_path(p).exists() for p in info.partial_uploads)
            if partials_ok and info.partial_uploads:
                self.concat_uploads(info.id, info.partial_uploads)
                return f"redid concatenation of {info.id}"
            return None
        if self.durability is Durability.ALWAYS:
            # bytes a killed process wrote count from now on: make them durable first
            with _open_file(data) as f:
                os.fsync(f.fileno())
        if self.is_full(self._refresh(info)):
            try:
                self._complete_full(info)
            except (LandingFailed, LandingRefused) as exc:
                return f"completed {info.id} whose bytes had all arrived; {exc}"
            return f"completed {info.id} whose bytes had all arrived"
        return None


def _record(data: object, upload_id: str) -> FileInfo | None:
    """The FileInfo a record's JSON describes, or None when it is not one of this
    store's records (not an object, another id, a field of the wrong type)."""
    if not isinstance(data, dict) or data.get("id") != upload_id:
        return None
    if not FileInfo.has_record_types(data):
        return None
    if data.get("path") is not None and not os.path.isabs(data["path"]):
        return None
    return FileInfo.from_json(data)


_FIELDS = tuple(f.name for f in dataclasses.fields(FileInfo))


def _record_json(info: FileInfo) -> dict:
    """``info.to_json()`` without its deep copy (``dataclasses.asdict``): the record
    is encoded at once, nothing keeps the dict."""
    return {name: getattr(info, name) for name in _FIELDS}


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _is_landed_file(info: FileInfo, st: os.stat_result) -> bool:
    """Is ``st`` the file the upload landed as (same inode, size and mtime)? Records of
    earlier versions, without identity, compare the size only."""
    if info.landed is None:
        return st.st_size == (info.size or 0)
    return _identity(st) == list(info.landed)


def _is_store_entry(entry: os.DirEntry) -> bool:
    return entry.name == MARKER or bool(
        ENTRY_PATTERN.match(entry.name) and entry.is_file(follow_symlinks=False)
    )


def _lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _same_file_at(dir_fd: int, name: str, other: str, other_dir_fd: int | None = None) -> bool:
    a = _lstat_at(dir_fd, name)
    try:
        b = os.stat(other, dir_fd=other_dir_fd or dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return a is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _copy(src: BinaryIO, dst: BinaryIO) -> None:
    """Copy a whole file, in the kernel where it can (copy_file_range), else by blocks."""
    start = dst.tell()
    try:
        while os.copy_file_range(src.fileno(), dst.fileno(), 1 << 30):
            pass
    except OSError:
        # copy_file_range may have copied part of it (moving both offsets): start over
        src.seek(0)
        dst.seek(start)
        shutil.copyfileobj(src, dst, COPY_BLOCK)


@dataclasses.dataclass
class KeptFile:
    """An upload's data file left open by a write that committed (``commit(keep=True)``),
    at its end, for the next write of the same upload: the server keeps it, with the
    upload's lock, between the PATCHes of one client (``UploadManager.park``)."""

    file: BinaryIO
    since_writeback: int = 0  # bytes written since the last writeback was started

    def close(self) -> None:
        self.file.close()


class FileChunkWriter:
    """One write into a FileStore upload: the data file is opened once and stays open
    while the body streams in; every piece goes straight to it."""

    def __init__(
        self,
        store: FileStore,
        info: FileInfo,
        offset: int,
        checksum: Checksum | None,
        length: int | None = None,
        limit: int | None = None,
        kept: KeptFile | None = None,
    ) -> None:
        check_writable(info, offset)
        if length is not None:
            check_declarable(info, length, store.max_size)
        self.store = store
        self.info = info
        self.start = offset
        self.written = 0
        self.declares = length  # declared by commit()
        bound = info.size if length is None else length
        self._room = None if bound is None else bound - offset
        if store.max_size is not None and bound is None:
            self._room = store.max_size - offset
        # What the room ends at, for the refusal of a body that goes past it.
        self._edge = "the upload's length"
        if limit is not None and (self._room is None or limit < self._room):
            self._room = limit
            self._edge = f"the largest body the server takes in one request ({limit} bytes)"
        self._hasher = new_hasher(checksum.algorithm) if checksum else None
        self._checksum = checksum
        self._since_writeback = 0
        self._writeback: Future | None = None
        self.kept: KeptFile | None = None  # the file, left open by commit(keep=True)
        if kept is not None:
            # The file the last write of this upload left open at its end (the caller
            # held the lock since): no need to open it again, nor to record anything.
            if checksum:
                raise ValueError("a checksummed write records itself first: open the file")
            self._file = kept.file
            self._file.seek(offset)
            self._since_writeback = kept.since_writeback
            return
        if checksum:
            # Record the verified offset first: until the checksum is checked, a crash
            # must not count the bytes of this write.
            info.unverified_from = offset
            store._save_info(info)
        # Kept open for the whole request; closed by commit() or abort().
        try:
            self._file = _open_file(store._data_name(info.id), "r+b", buffering=0)
        except FileNotFoundError:
            raise UploadNotFound(f"the staged bytes of upload {info.id} are gone") from None
        self._file.seek(offset)

    def fits(self, n: int) -> bool:
        """Would ``n`` more bytes stay within the upload's length (or the store's
        limit on a deferred length, or the write's ``limit``)?"""
        return self._room is None or self.written + n <= self._room

    def write(self, data: bytes) -> None:
        """Write ``data`` now. Past the upload's size (or the write's ``limit``), the
        part that fits is kept and UploadTooLarge raised; on a full disk, what fitted
        is kept."""
        excess = None
        if self._room is not None and self.written + len(data) > self._room:
            excess = self.written + len(data) - self._room
            data = data[: len(data) - excess]
        view = memoryview(data)
        try:
            while view:
                n = self._file.write(view)
                if self._hasher:
                    self._hasher.update(view[:n])
                self.written += n
                view = view[n:]
        except OSError as exc:
            if _no_space(exc):
                raise InsufficientStorage(
                    f"the server's disk is full after {self.start + self.written} bytes"
                ) from exc
            raise
        if excess:
            raise UploadTooLarge(f"the body goes {excess} bytes past {self._edge}")
        self._wrote(len(data))

    @property
    def spliceable(self) -> bool:
        """Can bytes go to the file without passing through Python (``splice_from``)?
        Not when a checksum must see them."""
        return self._hasher is None

    def room(self) -> int | None:
        """How many more bytes this write takes (None: no bound)."""
        return None if self._room is None else self._room - self.written

    def splice_from(self, pipe: int, n: int) -> None:
        """Write the ``n`` bytes waiting in the pipe ``pipe`` to the file with
        ``os.splice`` (no copy through Python), as ``write`` would write them. Within
        ``room()``, without a checksum (``spliceable``). On a full disk what fitted is
        kept and InsufficientStorage raised (the rest stays in the pipe)."""
        if not self.spliceable or (self._room is not None and self.written + n > self._room):
            raise ValueError("splice_from: a checksummed write, or past the room")
        fd = self._file.fileno()
        total = n
        try:
            while n:
                m = os.splice(pipe, fd, n)
                if not m:
                    raise OSError(errno.EIO, "the pipe ran dry")
                self.written += m
                n -= m
        except OSError as exc:
            if _no_space(exc):
                raise InsufficientStorage(
                    f"the server's disk is full after {self.start + self.written} bytes"
                ) from exc
            raise
        self._wrote(total)

    def _wrote(self, n: int) -> None:
        """``n`` more bytes are in the file: start a writeback every WRITEBACK_EVERY."""
        self._since_writeback += n
        if (
            self._since_writeback >= WRITEBACK_EVERY
            and self.store.durability is Durability.COMPLETE
            and (self._writeback is None or self._writeback.done())
        ):
            self._since_writeback = 0
            # On a duplicate descriptor, so closing the file never waits for it.
            self._writeback = self.store._writeback.submit(
                _writeback_and_close, os.dup(self._file.fileno())
            )

    def _close(self) -> None:
        self._file.close()

    def commit(self, keep: bool = False) -> FileInfo:
        """End of the body: check the checksum, fsync as configured, complete if full.
        ``keep``: when the upload stays unfinished and nothing had to be recorded (no
        checksum, no length declared), leave the data file open in ``kept`` for the
        next write (the caller holds on to the lock until then, or closes it)."""
        info = self.info
        st = None
        keep = keep and not self._checksum and self.declares is None
        try:
            if self._checksum and self._hasher.digest() != self._checksum.digest:
                self.store._cut_back(self._file, self.start)
                self._close()
                self._clear_unverified()
                raise ChecksumMismatch(
                    f"{self._checksum.algorithm} checksum of the body does not match;"
                    f" offset stays at {self.start}"
                )
            if self.store.durability is Durability.ALWAYS:
                os.fsync(self._file.fileno())
            st = os.fstat(self._file.fileno())
            end = self.start + self.written
            if keep and st.st_size == end and (info.size is None or end < info.size):
                self.kept = KeptFile(self._file, self._since_writeback)
        finally:
            if self.kept is None and not self._file.closed:
                self._close()
        self._clear_unverified()
        if self.declares is not None:  # completes (and lands) when every byte is in
            return self.store.declare_length(info.id, self.declares)
        info.offset = self.start + self.written
        if info.size is not None and info.offset == info.size:
            self.store._complete(info)
            return self.store._refresh(info)
        if self._checksum:  # its record was saved again after the last byte
            return self.store._refresh(info)
        # Unfinished: the offset is the size of the file just written (tusd's rule),
        # read from the open file rather than stat'ed again by name.
        info.offset = st.st_size if info.size is None else min(st.st_size, info.size)
        if self.store.expiration is not None:
            # the last byte arrived just now: the file's mtime is the last activity
            info.expires = max(info.created, st.st_mtime) + self.store.expiration
        return info

    def abort(self) -> FileInfo:
        """The body ended early. Without a checksum the bytes that arrived are kept;
        with one they cannot be verified, so the upload goes back to where it was."""
        if not self._file.closed:
            try:
                if self._checksum:
                    self.store._cut_back(self._file, self.start)
                elif self.store.durability is Durability.ALWAYS:
                    os.fsync(self._file.fileno())  # the kept bytes count: make them durable
            finally:
                self._close()  # (a failure above leaves the record unverified: recovered)
        self._clear_unverified()
        return self.store.get_info(self.info.id)

    def _clear_unverified(self) -> None:
        if self.info.unverified_from is not None:
            self.info.unverified_from = None
            self.store._save_info(self.info)


def _writeback_and_close(fd: int) -> None:
    """Push written pages to the disk early (durability=complete), so the fsync at
    completion finds little left; a failure here only costs that head start."""
    try:
        os.fdatasync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
