"""FileStore: uploads kept as files in a staging directory, landing in a workspace.

Layout of the staging directory (tusd's filestore, made crash-safe)::

    <id>        the bytes received so far; its size *is* the offset
    <id>.info   FileInfo as JSON, always replaced atomically (temp, fsync, rename)
    <id>.lock   the per-upload lock (flock), held across threads and processes

When the last byte of an upload with a ``path`` arrives, the data file is fsynced and
moved with one rename to its destination; the info records where it landed. The order
of steps is chosen so that a crash at any point leaves something ``recover()`` can
finish or undo, and never an offset ahead of the bytes on disk.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from .store import (
    Checksum,
    ChecksumMismatch,
    FileInfo,
    InsufficientStorage,
    LandingFailed,
    LengthAlreadyDeclared,
    OffsetMismatch,
    UploadIncomplete,
    UploadLocked,
    UploadNotFound,
    UploadNotPatchable,
    UploadTooLarge,
)

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
COPY_BLOCK = 8 * 1024 * 1024
# While a body streams in, ask the kernel to write back every this many bytes, so the
# fsync at completion finds little left to do (issue: durability at disk speed).
WRITEBACK_EVERY = 64 * 1024 * 1024


class Durability(str, enum.Enum):
    """When the store fsyncs the bytes it received."""

    ALWAYS = "always"  # at the end of every write: an acknowledged byte survives a power cut
    COMPLETE = "complete"  # when an upload completes, before it lands (the default)
    NEVER = "never"  # scratch disks: a power cut may lose acknowledged bytes


class _Hasher:
    """One interface over hashlib and zlib.crc32 (whose digest is 4 bytes, big-endian)."""

    def __init__(self, algorithm: str) -> None:
        self._crc: int | None = 0 if algorithm == "crc32" else None
        self._hash = None if algorithm == "crc32" else hashlib.new(algorithm)

    def update(self, data: bytes) -> None:
        if self._hash is None:
            self._crc = zlib.crc32(data, self._crc)
        else:
            self._hash.update(data)

    def digest(self) -> bytes:
        if self._hash is None:
            return self._crc.to_bytes(4, "big")
        return self._hash.digest()


CHECKSUM_ALGORITHMS = ("sha1", "md5", "sha256", "sha512", "crc32")


def new_hasher(algorithm: str) -> _Hasher:
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise ValueError(f"unsupported checksum algorithm {algorithm!r}")
    return _Hasher(algorithm)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _no_space(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def unique_path(path: Path) -> Path:
    """``data.csv`` -> ``data (1).csv``, ``data (2).csv``, ... the first name not taken."""
    stem, suffix = path.stem, path.suffix
    n = 1
    while True:
        candidate = path.with_name(f"{stem} ({n}){suffix}")
        if not os.path.lexists(candidate):
            return candidate
        n += 1


class UploadLock:
    """An exclusive lock on one upload: ``flock`` on ``<id>.lock``.

    flock locks belong to an open file description, so two ``UploadLock`` objects
    exclude each other whether they live in one process (two coroutines, two threads)
    or in two (the server and a kernel). Usable as a context manager.
    """

    def __init__(self, store: FileStore, upload_id: str, timeout: float | None) -> None:
        self._store = store
        self.upload_id = upload_id
        self.timeout = timeout
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; False if it is held elsewhere (and ``blocking`` is False or
        ``timeout`` passed). Raises UploadNotFound if the upload does not exist."""
        if self._fd is not None:
            raise RuntimeError("lock already held by this object")
        path = self._store._lock_path(self.upload_id)
        if not self._store._info_path(self.upload_id).exists():
            raise UploadNotFound(f"upload {self.upload_id} not found")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
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
        if not self._store._info_path(self.upload_id).exists():
            os.close(fd)
            raise UploadNotFound(f"upload {self.upload_id} not found")
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._store._release_callbacks.pop(self.upload_id, None)
            os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> UploadLock:
        if not self.acquire(timeout=self.timeout):
            raise UploadLocked(f"upload {self.upload_id} is locked by another writer")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class FileStore:
    """The store behind the server, usable on its own: see the module docstring."""

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        durability: Durability | str = Durability.COMPLETE,
        expiration: float | None = None,
        max_size: int | None = None,
        lock_timeout: float | None = 20.0,
    ) -> None:
        self.directory = Path(directory).absolute()
        self.durability = Durability(durability)
        self.expiration = expiration
        self.max_size = max_size
        self.lock_timeout = lock_timeout
        # Holders of a lock in this process that can be asked to let go (takeover).
        self._release_callbacks: dict[str, Callable[[], None]] = {}
        self._writeback = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tus-writeback")

    # ------------------------------------------------------------------ paths

    def _check_id(self, upload_id: str) -> str:
        if not isinstance(upload_id, str) or not ID_PATTERN.match(upload_id):
            raise UploadNotFound(f"upload {upload_id!r} not found")
        return upload_id

    def _data_path(self, upload_id: str) -> Path:
        return self.directory / self._check_id(upload_id)

    def _info_path(self, upload_id: str) -> Path:
        return self.directory / f"{self._check_id(upload_id)}.info"

    def _lock_path(self, upload_id: str) -> Path:
        return self.directory / f"{self._check_id(upload_id)}.lock"

    def _ensure_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    @property
    def _fsync(self) -> bool:
        return self.durability is not Durability.NEVER

    # ------------------------------------------------------------------ info files

    def _read_info(self, upload_id: str) -> FileInfo:
        try:
            with open(self._info_path(upload_id), encoding="utf-8") as f:
                return FileInfo.from_json(json.load(f))
        except FileNotFoundError:
            raise UploadNotFound(f"upload {upload_id} not found") from None

    def _save_info(self, info: FileInfo) -> None:
        """Replace ``<id>.info`` atomically: a crash leaves the old or the new, whole."""
        path = self._info_path(info.id)
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
        data = json.dumps(info.to_json(), indent=1).encode()
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                if self._fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
            if self._fsync:
                _fsync_dir(self.directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if _no_space(exc):
                raise InsufficientStorage("no space left to record the upload's state") from exc
            raise

    def _stored_bytes(self, upload_id: str) -> int:
        try:
            return os.stat(self._data_path(upload_id)).st_size
        except FileNotFoundError:
            return 0

    def _refresh(self, info: FileInfo) -> FileInfo:
        """Fill in what is derived from the disk: the offset and the expiry."""
        if info.is_complete:
            info.offset = info.size or 0
            info.expires = None
            if info.is_partial and self.expiration is not None:
                # a finished partial is only staging for a final: it expires too, or
                # one whose final never comes (or was made) would stay for good
                info.expires = self._last_activity(info) + self.expiration
            return info
        stored = self._stored_bytes(info.id)
        info.offset = stored if info.size is None else min(stored, info.size)
        if info.unverified_from is not None:
            info.offset = min(info.offset, info.unverified_from)
        if self.expiration is not None:
            info.expires = self._last_activity(info) + self.expiration
        return info

    def _last_activity(self, info: FileInfo) -> float:
        times = [info.created]
        for path in (self._data_path(info.id), self._info_path(info.id)):
            with contextlib.suppress(FileNotFoundError):
                times.append(os.stat(path).st_mtime)
        return max(times)

    # ------------------------------------------------------------------ core API

    def new_upload(self, info: FileInfo) -> str:
        """Create an upload from ``info`` (its id is chosen here) and return the id."""
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
        open(self._data_path(info.id), "xb").close()
        self._save_info(info)
        if info.size == 0 and not info.is_final:
            with self.lock(info.id):
                self._complete(info)
        return info.id

    def finish_landing(self, info: FileInfo) -> bool:
        """Retry the final move of a complete upload whose move failed (an I/O error
        rather than a crash, which ``recover`` repairs); True if it moved now. The
        caller holds the lock."""
        if info.is_complete and info.path and self._data_path(info.id).exists():
            self._land(info)
            return True
        return False

    def pending_landings(self) -> Iterator[FileInfo]:
        """Complete uploads still waiting in the staging directory for their move."""
        for info in self.list_uploads():
            if info.is_complete and info.path and self._data_path(info.id).exists():
                yield info

    def check_free_space(self, size: int) -> None:
        """Refuse up front a size that cannot fit on the staging disk."""
        free = shutil.disk_usage(self.directory).free
        if size > free:
            raise InsufficientStorage(
                f"upload of {size} bytes does not fit: {free} bytes free on the server's disk"
            )

    def get_info(self, upload_id: str) -> FileInfo:
        return self._refresh(self._read_info(upload_id))

    def list_uploads(self) -> list[FileInfo]:
        """Every upload the store knows, finished or not, newest first."""
        infos = []
        if self.directory.is_dir():
            for path in self.directory.glob("*.info"):
                with contextlib.suppress(UploadNotFound, ValueError):
                    infos.append(self.get_info(path.name[: -len(".info")]))
        return sorted(infos, key=lambda i: i.created, reverse=True)

    def get_reader(self, upload_id: str) -> BinaryIO:
        """A binary file object on the upload's bytes: the landed file once complete,
        else the bytes received so far."""
        info = self.get_info(upload_id)
        path = info.path if info.is_complete and info.path else self._data_path(upload_id)
        try:
            return open(path, "rb")
        except FileNotFoundError:
            raise UploadNotFound(
                f"the file of upload {upload_id} ({info.filename}) is no longer there"
            ) from None

    def open_writer(
        self, upload_id: str, offset: int, checksum: Checksum | None = None
    ) -> FileChunkWriter:
        """Start a write at ``offset``. The caller holds the upload's lock."""
        return FileChunkWriter(self, self.get_info(upload_id), offset, checksum)

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

    def lock(self, upload_id: str, timeout: float | None = None) -> UploadLock:
        """The upload's lock, not yet taken: ``with store.lock(id): ...`` takes it,
        waiting up to ``timeout`` seconds (default: the store's ``lock_timeout``)."""
        return UploadLock(
            self, self._check_id(upload_id), self.lock_timeout if timeout is None else timeout
        )

    def on_release_request(self, upload_id: str, callback: Callable[[], None]) -> None:
        """Register how the holder of ``upload_id``'s lock in this process lets go."""
        self._release_callbacks[upload_id] = callback

    def request_release(self, upload_id: str) -> bool:
        """Ask this process's holder of the lock to let go; False if none is known."""
        callback = self._release_callbacks.pop(upload_id, None)
        if callback is None:
            return False
        callback()
        return True

    def terminate(self, upload_id: str) -> None:
        """Forget an upload and remove its staged bytes. The caller holds the lock.

        A file that already landed in the workspace is the user's and stays."""
        self.get_info(upload_id)
        # The record goes first: a crash after it leaves only bytes without info,
        # which ``recover`` removes. The other order left a record whose data was
        # gone, an upload that answered HEAD but failed every PATCH.
        for path in (self._info_path(upload_id), self._data_path(upload_id)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with contextlib.suppress(FileNotFoundError):
            self._lock_path(upload_id).unlink()

    def declare_length(self, upload_id: str, size: int) -> FileInfo:
        info = self.get_info(upload_id)
        if info.size is not None:
            raise LengthAlreadyDeclared(f"upload {upload_id} already has a length of {info.size}")
        if size < info.offset:
            raise UploadTooLarge(f"{info.offset} bytes already received, more than {size}")
        if self.max_size is not None and size > self.max_size:
            raise UploadTooLarge(f"upload size {size} exceeds the maximum of {self.max_size} bytes")
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
        partials = [self.get_info(pid) for pid in partial_ids]
        for p in partials:
            if not p.is_partial:
                raise UploadNotPatchable(f"upload {p.id} is not a partial upload")
            if not p.is_complete:
                raise UploadIncomplete(f"partial upload {p.id} has {p.offset} of {p.size} bytes")
        info = self.get_info(final_id)
        info.size = sum(p.size or 0 for p in partials)
        info.partial_uploads = partial_ids
        self._save_info(info)
        with open(self._data_path(final_id), "r+b") as dst:
            dst.truncate(0)
            for pid in partial_ids:
                with open(self._data_path(pid), "rb") as src:
                    _copy(src, dst)
        self._complete(info)
        for pid in partial_ids:
            with contextlib.suppress(UploadNotFound), self.lock(pid, timeout=0):
                self.terminate(pid)
        return self.get_info(final_id)

    def expired_uploads(self, now: float | None = None) -> Iterator[str]:
        """Ids of unfinished uploads whose expiry has passed."""
        if self.expiration is None:
            return
        now = time.time() if now is None else now
        for info in self.list_uploads():
            if (
                (not info.is_complete or info.is_partial)
                and info.expires is not None
                and info.expires <= now
            ):
                yield info.id

    # ------------------------------------------------------------------ completion

    def _complete(self, info: FileInfo) -> None:
        """All bytes are in: make them durable, record completion, then land.

        Completion is recorded (with the chosen destination) *before* the move, so a
        crash between the two leaves an info that ``recover()`` finishes."""
        data = self._data_path(info.id)
        if self._fsync:
            with open(data, "rb+") as f:
                os.fsync(f.fileno())
        if info.path is not None:
            dest = Path(info.path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not info.overwrite and os.path.lexists(dest):
                dest = unique_path(dest)
            info.path = str(dest)
        info.is_complete = True
        info.offset = info.size or 0
        self._save_info(info)
        if info.path is not None:
            try:
                self._land(info)
            except OSError as exc:
                raise LandingFailed(
                    f"all {info.offset} bytes arrived, but moving the file to its"
                    f" destination failed ({exc.strerror}); the server retries the move"
                ) from exc

    def _land(self, info: FileInfo) -> None:
        """Move the staged data to ``info.path`` with one rename (no clobbering unless
        ``overwrite``). Across filesystems, copy to a temp file beside the destination
        first. Every step can be redone after a crash (see ``recover``)."""
        data = self._data_path(info.id)
        src = data
        dest = Path(info.path)
        if os.stat(data).st_dev != os.stat(dest.parent).st_dev:
            src = dest.with_name(f".{dest.name}.{info.id[:8]}.tus-tmp")
            # Linked to dest before a crash? Then rewriting it would rewrite the landed
            # file in place, visible half-written: it only waits for its cleanup.
            if not _same_file(src, dest):
                with open(data, "rb") as f, open(src, "wb") as dst:
                    _copy(f, dst)
                    if self._fsync:
                        dst.flush()
                        os.fsync(dst.fileno())
        while not info.overwrite:
            try:
                os.link(src, dest)  # atomic, and fails rather than clobber
                break
            except FileExistsError:
                if _same_file(src, dest):  # landed before a crash, not yet cleaned
                    break
                dest = unique_path(dest)  # the name was taken since creation
                info.path = str(dest)
                self._save_info(info)
        else:
            os.replace(src, dest)
        data.unlink(missing_ok=True)
        src.unlink(missing_ok=True)
        if self._fsync:
            _fsync_dir(dest.parent)

    # ------------------------------------------------------------------ recovery

    def recover(self) -> list[str]:
        """Repair what a crash can leave behind; return one line per repair.

        Run at server start, before any request. Uploads locked by someone else are
        left alone."""
        report: list[str] = []
        if not self.directory.is_dir():
            return report
        for tmp in self.directory.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
            report.append(f"removed temp file {tmp.name}")
        for entry in self.directory.iterdir():
            name = entry.name
            if ID_PATTERN.match(name) and not self._info_path(name).exists():
                entry.unlink(missing_ok=True)
                report.append(f"removed data without info {name}")
            elif name.endswith(".lock") and not (self.directory / f"{name[:-5]}.info").exists():
                entry.unlink(missing_ok=True)
        for path in self.directory.glob("*.info"):
            upload_id = path.name[: -len(".info")]
            try:
                info = self._read_info(upload_id)
            except (ValueError, TypeError):
                path.rename(path.with_name(path.name + ".corrupt"))
                report.append(f"unreadable info {path.name} set aside as .corrupt")
                continue
            except UploadNotFound:
                continue
            lock = self.lock(upload_id)
            if not lock.acquire(blocking=False):
                continue
            try:
                line = self._recover_one(info)
            finally:
                lock.release()
            if line:
                report.append(line)
        return report

    def _recover_one(self, info: FileInfo) -> str | None:
        data = self._data_path(info.id)
        if info.is_complete:
            line = None
            if info.path and data.exists():
                self._land(info)
                line = f"finished landing {info.id} at {info.path}"
            if info.is_final:  # a crash can come before the partials were removed
                for pid in info.partial_uploads:
                    with contextlib.suppress(UploadNotFound, UploadLocked), self.lock(pid, 0):
                        self.terminate(pid)
                        line = line or f"removed the used partial uploads of {info.id}"
            return line
        if not data.exists():
            # an unfinished upload whose bytes were removed (by hand, say) cannot go on
            self.terminate(info.id)
            return f"removed {info.id}, whose data file was gone"
        pending = info.unverified_from
        if pending is not None:
            with open(data, "r+b") as f:
                f.truncate(pending)
            info.unverified_from = None
            self._save_info(info)
            return f"cut {info.id} back to its last verified offset {pending}"
        if info.is_final:
            partials_ok = all(self._info_path(p).exists() for p in info.partial_uploads)
            if partials_ok and info.partial_uploads:
                self.concat_uploads(info.id, info.partial_uploads)
                return f"redid concatenation of {info.id}"
            return None
        stored = self._stored_bytes(info.id)
        if info.size is not None and stored >= info.size:
            if stored > info.size:
                with open(data, "r+b") as f:
                    f.truncate(info.size)
            self._complete(info)
            return f"completed {info.id} whose bytes had all arrived"
        return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except FileNotFoundError:
        return False


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


class FileChunkWriter:
    """One write into a FileStore upload: the data file is opened once and stays open
    while the body streams in; every piece goes straight to it."""

    def __init__(
        self, store: FileStore, info: FileInfo, offset: int, checksum: Checksum | None
    ) -> None:
        if info.is_complete or info.is_final:
            raise UploadNotPatchable(
                f"upload {info.id} takes no more data"
                + (" (it is complete)" if info.is_complete else " (it is a final concatenation)")
            )
        if offset != info.offset:
            raise OffsetMismatch(info.offset, offset)
        self.store = store
        self.info = info
        self.start = offset
        self.written = 0
        self._room = None if info.size is None else info.size - offset
        if store.max_size is not None and info.size is None:
            self._room = store.max_size - offset
        self._hasher = new_hasher(checksum.algorithm) if checksum else None
        self._checksum = checksum
        self._since_writeback = 0
        self._writeback: Future | None = None
        if checksum:
            # Record the verified offset first: until the checksum is checked, a crash
            # must not count the bytes of this write.
            info.unverified_from = offset
            store._save_info(info)
        # Kept open for the whole request; closed by commit() or abort().
        try:
            self._file = open(store._data_path(info.id), "r+b", buffering=0)  # noqa: SIM115
        except FileNotFoundError:
            raise UploadNotFound(f"the staged bytes of upload {info.id} are gone") from None
        self._file.seek(offset)

    def write(self, data: bytes) -> None:
        """Write ``data`` now. Past the upload's size, the part that fits is kept and
        UploadTooLarge raised; on a full disk, what fitted is kept."""
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
            raise UploadTooLarge(f"the body goes {excess} bytes past the upload's length")
        self._since_writeback += len(data)
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

    def commit(self) -> FileInfo:
        """End of the body: check the checksum, fsync as configured, complete if full."""
        info = self.info
        try:
            if self._checksum and self._hasher.digest() != self._checksum.digest:
                self._file.truncate(self.start)
                self._close()
                self._clear_unverified()
                raise ChecksumMismatch(
                    f"{self._checksum.algorithm} checksum of the body does not match;"
                    f" offset stays at {self.start}"
                )
            if self.store.durability is Durability.ALWAYS:
                os.fsync(self._file.fileno())
        finally:
            if not self._file.closed:
                self._close()
        self._clear_unverified()
        info.offset = self.start + self.written
        if info.size is not None and info.offset == info.size:
            self.store._complete(info)
        return self.store._refresh(info)

    def abort(self) -> FileInfo:
        """The body ended early. Without a checksum the bytes that arrived are kept;
        with one they cannot be verified, so the upload goes back to where it was."""
        if not self._file.closed:
            if self._checksum:
                self._file.truncate(self.start)
            self._close()
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
