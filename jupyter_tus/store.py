"""The storage side of tus: what an upload is and what a store must do with it.

This module knows nothing of HTTP, tornado or Jupyter, so that a kernel, a script or
a test can use a store directly. It mirrors tusd's ``DataStore`` design: a small core
interface (create, write at an offset, describe, read) and the optional capabilities
(terminate, concatenate, declare a deferred length, lock) as separate protocols, so a
front end advertises an extension only when its store really has it.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, ClassVar, Protocol, runtime_checkable

# --------------------------------------------------------------------------- errors


class StoreError(Exception):
    """Base class of every error a store raises on purpose.

    Each subclass names one way an operation can be refused; the HTTP layer maps each
    of them to one status code, as tusd's ``ErrXxx`` values do.
    """


class UploadNotFound(StoreError, KeyError):
    """No upload has this id (never had, or it was terminated or expired)."""

    def __str__(self) -> str:  # KeyError quotes its argument; a reason reads better
        return str(self.args[0]) if self.args else "upload not found"


class UploadExpired(StoreError):
    """The upload was left unfinished past its expiry; it is about to be removed."""


class OffsetMismatch(StoreError):
    """A write started somewhere else than at the upload's current offset."""

    def __init__(self, expected: int, given: int) -> None:
        super().__init__(f"upload is at offset {expected}, request starts at {given}")
        self.expected = expected
        self.given = given


class UploadTooLarge(StoreError):
    """A write or a declared length goes past the upload's size or the store's limit."""


class UploadLocked(StoreError):
    """Another writer holds the upload's lock and did not let go in time."""


class ChecksumMismatch(StoreError):
    """The bytes of a write do not match the checksum that came with them."""


class UploadIncomplete(StoreError):
    """The operation needs every byte of the upload, and some are still missing."""


class UploadNotPatchable(StoreError):
    """The upload takes no writes (a final concatenation, or it has already landed)."""


class LengthAlreadyDeclared(StoreError):
    """``declare_length`` on an upload whose size is already known."""


class DestinationRefused(StoreError):
    """The destination of an upload is not allowed (outside the root, hidden, ...)."""


class DestinationExists(DestinationRefused):
    """A file already exists where the upload would land, and overwrite was not asked."""


class LandingFailed(StoreError):
    """Every byte arrived, but moving the file to its destination failed; the move is
    retried on the upload's next request and by the periodic sweep."""


class LandingRefused(DestinationRefused):
    """Every byte arrived, but the destination cannot take the file and no retry will
    change that (a folder on the way is now a file, leads out of the root or into a
    hidden folder, a name too long). The bytes stay in the store, readable with
    ``get_reader``; the message says what to change."""


class UploadGone(UploadNotFound):
    """The upload landed, but its file was moved, deleted or changed since: the record
    no longer describes what is there (tusd answers 404 once its stored file is gone)."""


class UploadQuarantined(StoreError):
    """Recovery could not repair this upload at start; it is kept, untouched, for the
    administrator, and every other upload works."""


class StagingRefused(StoreError):
    """The staging directory holds files that are not this store's: the store will not
    take it over (it could delete them)."""


class InsufficientStorage(StoreError):
    """The disk is full, or too full to take the announced size."""


class StorageUnavailable(StoreError):
    """The storage behind the store did not answer, or refused the store's own
    credentials (an object store's endpoint down, throttling past the retries, access
    denied): nothing the client sent is at fault; it may retry later (503)."""


# --------------------------------------------------------------------------- FileInfo


@dataclasses.dataclass
class FileInfo:
    """What a store knows of one upload; saved as ``<id>.info`` by the file store.

    ``size`` is None while the length is deferred. ``offset`` is the number of bytes
    really stored. ``path`` is where the finished file lands (absolute); None keeps a
    finished upload in the store (partial uploads, or a store used without a workspace).
    """

    id: str = ""
    size: int | None = None
    offset: int = 0
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    is_partial: bool = False
    is_final: bool = False
    partial_uploads: list[str] = dataclasses.field(default_factory=list)
    path: str | None = None
    is_complete: bool = False
    overwrite: bool = False
    created: float = dataclasses.field(default_factory=time.time)
    expires: float | None = None
    # Set while a checksummed write is in progress: the offset to fall back to if it
    # cannot be verified (a crash mid-write must not count unverified bytes).
    unverified_from: int | None = None
    # What the landed file was when it landed: [st_dev, st_ino, st_size, st_mtime_ns].
    # Once the file there differs, the upload answers as gone (UploadGone).
    landed: list[int] | None = None
    # Why a finished upload could not land, for good (LandingRefused); its bytes stay.
    landing_error: str | None = None
    # Where the store keeps the bytes, for hooks and administrators (tusd's
    # FileInfo.Storage): {"type": "s3store", "bucket": ..., "key": ...} for S3Store,
    # the key being the landed object once landed. Empty for the file store.
    storage: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def filename(self) -> str:
        """The name the client gave the file, or the id when it gave none."""
        return self.metadata.get("filename") or self.id

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> FileInfo:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @staticmethod
    def has_record_types(data: dict) -> bool:
        """Do the FileInfo fields in ``data`` (a record's JSON object, as written by
        ``to_json``) have their JSON types (``RECORD_TYPES``; ``metadata`` and
        ``storage`` ``is_text`` to ``is_text``, ``partial_uploads`` and ``path``
        ``is_text``, no NUL in ``path``), and values a store writes (``is_count`` sizes
        and offsets, ``is_timestamp`` times)? A record of the wrong shape (someone
        else wrote it into the staging area) is no upload: each store's reader answers
        not-found rather than fail on it later (a 500)."""
        for name, types in RECORD_TYPES.items():
            if name in data and not isinstance(data[name], types):
                return False
        for name in ("size", "offset", "unverified_from"):
            if data.get(name) is not None and not is_count(data[name]):
                return False
        for name in ("created", "expires"):
            if data.get(name) is not None and not is_timestamp(data[name]):
                return False
        for name in ("metadata", "storage"):
            pairs = data.get(name, {}).items()
            if not all(is_text(k) and is_text(v) for k, v in pairs):
                return False
        path = data.get("path")
        if path is not None and (not is_text(path) or "\0" in path):
            return False  # (a path no file system or object store takes)
        return all(is_text(p) for p in data.get("partial_uploads", []))

    # How a notebook shows uploads (an HTML table), set by jupyter_tus.helpers when the
    # package is imported: this module imports nothing of the display (no import cycle
    # store -> display -> helpers -> store).
    html_table: ClassVar[Callable[[list[FileInfo]], str] | None] = None

    def _repr_html_(self) -> str | None:
        table = FileInfo.html_table
        return None if table is None else table([self])


# The JSON types of a record's FileInfo fields (FileInfo.has_record_types).
RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "size": (int, type(None)),
    "offset": (int,),
    "metadata": (dict,),
    "is_partial": (bool,),
    "is_final": (bool,),
    "partial_uploads": (list,),
    "path": (str, type(None)),
    "is_complete": (bool,),
    "overwrite": (bool,),
    "created": (int, float),
    "expires": (int, float, type(None)),
    "unverified_from": (int, type(None)),
    "landed": (list, type(None)),
    "landing_error": (str, type(None)),
    "storage": (dict,),
}


# The last second a record's time may name: 9999-12-31T23:59:59Z, datetime's last one
# (the listing's ISO dates, Upload-Expires' HTTP date).
LAST_TIMESTAMP = 253_402_300_799


def is_count(value: object) -> bool:
    """Is ``value`` a record's byte count (a size, an offset): an int >= 0, not a bool?"""
    return type(value) is int and value >= 0


def is_text(value: object) -> bool:
    """Is ``value`` a str that UTF-8 can encode (no lone surrogate, which JSON's
    ``\\ud800`` gives; tus metadata is UTF-8, a header or an object key needs it)?"""
    return isinstance(value, str) and not _SURROGATE.search(value)


_SURROGATE = re.compile("[\ud800-\udfff]")


def is_timestamp(value: object) -> bool:
    """Is ``value`` a record's time (seconds since the epoch): a number from 0 to
    LAST_TIMESTAMP, not NaN, not infinite (JSON's NaN and Infinity, which Python's json
    reads)?"""
    return type(value) in (int, float) and 0 <= value <= LAST_TIMESTAMP


def check_writable(info: FileInfo, offset: int) -> None:
    """What every store's writer checks before it takes a byte (tus 1.0.0, PATCH): the
    upload takes more data (else UploadNotPatchable: it is complete, or a final
    concatenation, whose bytes are its partials') and ``offset`` (bytes) is its offset
    (else OffsetMismatch, a 409)."""
    if info.is_complete or info.is_final:
        raise UploadNotPatchable(
            f"upload {info.id} takes no more data"
            + (" (it is complete)" if info.is_complete else " (it is a final concatenation)")
        )
    if offset != info.offset:
        raise OffsetMismatch(info.offset, offset)


def check_declarable(info: FileInfo, size: int, max_size: int | None) -> None:
    """A length of ``size`` bytes declared now for an upload created without one (tus
    creation-defer-length): LengthAlreadyDeclared when it has a length already;
    UploadTooLarge when more bytes than ``size`` have arrived or ``size`` is over the
    store's ``max_size`` (None: no maximum)."""
    if info.size is not None:
        raise LengthAlreadyDeclared(f"upload {info.id} already has a length of {info.size}")
    if size < info.offset:
        raise UploadTooLarge(f"{info.offset} bytes already received, more than {size}")
    if max_size is not None and size > max_size:
        raise UploadTooLarge(f"upload size {size} exceeds the maximum of {max_size} bytes")


@dataclasses.dataclass(frozen=True)
class Checksum:
    """An expected digest for the bytes of one write: ``algorithm`` and raw ``digest``."""

    algorithm: str
    digest: bytes


# --------------------------------------------------------------------------- protocols


class ChunkWriter(Protocol):
    """Receives the bytes of one write as they arrive, then commits or gives up.

    The push form suits a web server that is handed the body piece by piece; the
    stores' ``write_chunk`` is the pull form built on it. ``info`` is the upload as it
    was when the write started, ``start`` the offset it started at, ``written`` the
    bytes taken so far, ``declares`` a deferred length this write declares on commit.
    """

    info: FileInfo
    start: int
    written: int
    declares: int | None

    def fits(self, n: int) -> bool:
        """Would ``n`` more bytes stay within the length (or the write's limit)?"""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> FileInfo:
        """Verify (checksum), make durable as configured, and return the new info."""

    def abort(self) -> FileInfo:
        """Keep the bytes that arrived (unless a checksum makes them unverifiable)."""


class UploadLockLike(Protocol):
    """One upload's exclusive lock (``locking.FileLock``, ``locking.MemoryLock``):
    ``acquire`` raises UploadNotFound for an upload that does not exist; used as a
    context manager it waits its timeout, then raises UploadLocked."""

    held: bool

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool: ...

    def release(self) -> None: ...

    def __enter__(self) -> UploadLockLike: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class DataStore(Protocol):
    """The core every store has: create, write at an offset, describe, read; take
    over its storage (``claim``) and repair it after a crash (``recover``)."""

    def new_upload(self, info: FileInfo) -> str: ...

    def write_chunk(
        self, upload_id: str, offset: int, src: BinaryIO, checksum: Checksum | None = None
    ) -> int: ...

    def open_writer(
        self,
        upload_id: str,
        offset: int,
        checksum: Checksum | None = None,
        length: int | None = None,
        limit: int | None = None,
    ) -> ChunkWriter: ...

    def get_info(self, upload_id: str) -> FileInfo: ...

    def get_reader(self, upload_id: str) -> BinaryIO: ...

    def list_uploads(self) -> list[FileInfo]: ...

    def claim(self) -> None: ...

    def recover(self) -> list[str]: ...

    def quarantined(self) -> dict[str, str]: ...


@runtime_checkable
class TerminaterDataStore(Protocol):
    def terminate(self, upload_id: str) -> None: ...


@runtime_checkable
class ConcaterDataStore(Protocol):
    def concat_uploads(self, final_id: str, partial_ids: Iterable[str]) -> FileInfo: ...


@runtime_checkable
class LengthDeclarableDataStore(Protocol):
    def declare_length(self, upload_id: str, size: int) -> FileInfo: ...


@runtime_checkable
class LockerDataStore(Protocol):
    """Per-upload locks, and the takeover: the holder registers how it lets go, a
    newcomer asks it to (tusd's ``Locker`` with ``requestUnlock``). The stores do it
    through the ``locking.Locker`` they are composed with (their ``locker``), which
    the manager uses directly."""

    def lock(self, upload_id: str, timeout: float | None = None) -> UploadLockLike: ...

    def on_release_request(self, upload_id: str, callback: Callable[[], None]) -> None: ...

    def request_release(self, upload_id: str) -> bool: ...


@runtime_checkable
class ExpiringDataStore(Protocol):
    def expired_uploads(self, now: float | None = None) -> Iterator[str]: ...

    def last_activity(self, info: FileInfo) -> float: ...


@runtime_checkable
class LandingDataStore(Protocol):
    """A store whose finished uploads land at a destination (``info.path``), where
    the landing can fail and be retried (``settle``), and the landed file can be
    changed by others since (``check_landed`` raises UploadGone)."""

    def needs_settling(self, info: FileInfo) -> bool: ...

    def settle(self, info: FileInfo) -> bool: ...

    def pending_landings(self) -> Iterator[FileInfo]: ...

    def landed_path(self, info: FileInfo) -> str | None: ...

    def check_landed(self, info: FileInfo) -> None: ...
