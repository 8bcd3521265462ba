"""S3Store: uploads written straight into S3-compatible object storage.

The design is tusd's ``pkg/s3store`` (and @tus/s3-store's), made to land files where
Jupyter users expect them and to survive a crash at any step:

- **One multipart upload per tus upload.** Bytes are buffered in memory up to
  ``part_size``; a full part goes to S3 in the background (a sender thread) while the
  body's next bytes fill the next part, one part at a time and in order (part ``n + 1``
  starts once S3 acknowledged part ``n``). So an upload holds at most two parts and a
  body piece in memory (the part on its way, the part filling), whatever its size, and
  receiving the body overlaps sending it. A part S3 does not acknowledge fails the
  write: the parts before it count, nothing after it does. The multipart upload is
  started with the first full part; a file smaller than that never needs one.
- **The tail.** What a write leaves after its last full part (S3 takes no part under
  5 MiB but the last) is put as a ``.part`` object and prepended to the next write,
  as tusd's s3store does; a rest of 5 MiB or more goes as a part at once.
- **The record.** ``<staging><id>.info`` holds the FileInfo and the S3 side of the
  upload: the multipart upload id, the parts counted so far ``[number, size, etag]``,
  the tail ``[key, size]`` and the next part number. The offset is the parts' sizes
  plus the tail's: only bytes S3 acknowledged, recorded after it did. Part numbers
  are never reused: the record notes where a write's parts start before it sends the
  first (``in_flight_from``). A write's record notes ``next_part`` there for the next
  write, so that one sends at once if this process wrote that record and no write
  has begun since (``_fresh``); otherwise (the upload's first part, after recovery or
  a cut-back, a record from another process) the write puts its note first. A
  write that ends without recording its parts (a crash, S3 failing) leaves that note,
  and the next write starts past every part S3 lists; a write cut back (checksum
  mismatch) moves ``next_part`` past its own. So ``recover()`` can adopt the parts a
  killed process had sent (acknowledged, not yet recorded) without ever adopting
  unverified or stale ones.
- **Landing.** When the last byte is in, the multipart upload is completed at the
  staging key ``<staging><id>`` and the object is copied (server side) to
  ``<prefix><path>/<filename>`` with ``If-None-Match: *`` unless ``overwrite``: a name
  taken since creation gets ``name (1).ext`` as in the workspace, never a clobbered
  object. Where the server ignores conditional writes (``conditional_writes``: probed
  at ``claim``), the name is checked with a HEAD just before the copy instead, which
  leaves a window of one request; docs/object-storage.md says so. The landed object
  carries ``x-amz-meta-tus-upload-id``, so a copy interrupted by a crash is
  recognised as our own. Its ETag is recorded: an object changed since answers as
  gone (UploadGone), as a moved file does in the workspace.

Layout under ``<prefix><staging_prefix>`` (``.tus/`` by default)::

    .jupyter-tus-store      the mark that the prefix is a store's (see ``claim``)
    <id>.info               the record (JSON), replaced whole by every PUT
    <id>.<8 hex>.part       the tail (a new name per write; the old one removed after)
    <id>                    the multipart upload's key, then the complete object

Locks are kept in this process (``locking.MemoryLocker``): one server per prefix.

The store API is synchronous and called from the server's worker threads, like the
file store's; so the client is boto3 (botocore's clients are thread-safe and pool
their connections), not aiobotocore, whose coroutines would need the server's event
loop from those threads (or a loop per thread) for no gain. See docs/object-storage.md.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import io
import json
import math
import mimetypes
import posixpath
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

from traitlets import CaselessStrEnum, Int, TraitError, Unicode, validate
from traitlets.config import LoggingConfigurable

from .checksums import CHECKSUM_ALGORITHMS, new_hasher
from .destinations import TRUE_VALUES, _check_part
from .locking import MemoryLock, MemoryLocker
from .store import (
    Checksum,
    ChecksumMismatch,
    DestinationExists,
    DestinationRefused,
    FileInfo,
    LandingFailed,
    LandingRefused,
    StagingRefused,
    StorageUnavailable,
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
    is_timestamp,
)
from .workspace import unique_name

MiB = 1024 * 1024
GiB = 1024 * MiB
PART_MIN = 5 * MiB  # S3: every part but the last is at least this
PART_MAX = 5 * GiB  # S3: no part (and no single CopyObject) is larger
MAX_PARTS = 10_000  # S3: part numbers 1..10000
# Part numbers an upload plans for when it picks its part size; the rest are room for
# writes cut back (a checksum mismatch uses numbers it does not keep).
PLANNED_PARTS = 9_000
OBJECT_MAX = 5 * 1024 * GiB  # S3: 5 TiB
READ_BLOCK = MiB
RECORD_MAX = 8 * MiB  # bytes: a record of 10000 parts is ~700 KB
DEFAULT_PART_SIZE = 16 * MiB
LAST_READ = 256  # records remembered for open_writer_at

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{32}$")
ENTRY_PATTERN = re.compile(r"^(?P<id>[A-Za-z0-9_-]{32})(?P<kind>|\.info|\.[0-9a-f]{8}\.part)$")
MARKER = ".jupyter-tus-store"
PROBE = ".conditional-write-probe"
UPLOAD_ID_META = "tus-upload-id"  # x-amz-meta-tus-upload-id on a landed object
KEY_MAX = 1024  # bytes of UTF-8: S3's longest key

# S3 error codes a caller interprets itself; any other error is the service's.
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_NO_UPLOAD = frozenset({"NoSuchUpload"})
_PRECONDITION = frozenset({"PreconditionFailed", "412"})
_CONDITIONAL_UNSUPPORTED = frozenset({"NotImplemented", "501", "InvalidArgument", "InvalidRequest"})
_INTERPRETED = _NOT_FOUND | _NO_UPLOAD | _PRECONDITION | _CONDITIONAL_UNSUPPORTED


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


@dataclasses.dataclass
class S3State:
    """The S3 side of one upload's record (see the module docstring)."""

    part_size: int = DEFAULT_PART_SIZE
    upload_id: str | None = None  # the multipart upload, once its first part went
    parts: list[list] = dataclasses.field(default_factory=list)  # [number, size, etag]
    next_part: int = 1
    tail: list | None = None  # [key, size] of the .part object, or None
    # Set (to its first part number) by a write before it sends its first part, and
    # cleared when the write is recorded: parts from there on that no record lists
    # were sent by a write that ended without its record (a crash, or S3 failing
    # under it). ``recover`` adopts them; the next write goes past them.
    in_flight_from: int | None = None
    saved: float = 0.0  # when the record was last written (seconds since the epoch)

    @property
    def stored(self) -> int:
        """Bytes S3 holds for the upload: the counted parts plus the tail."""
        return sum(p[1] for p in self.parts) + (self.tail[1] if self.tail else 0)


@dataclasses.dataclass(frozen=True)
class S3Destination:
    """Where an upload lands: ``path`` relative to the prefix (``folder/name.csv``),
    ``key`` the whole object key, ``overwrite`` whether it may replace an object."""

    path: str
    key: str
    overwrite: bool


class S3Store(LoggingConfigurable):
    """Uploads straight into a bucket (see the module docstring).

    On its own::

        store = S3Store(bucket="data", endpoint_url="http://127.0.0.1:8333")
        store.claim()
        upload_id = store.new_upload(FileInfo(size=3, path="raw/a.bin"))

    In the server: ``c.TusApp.store_class = "jupyter_tus.s3store.S3Store"`` and the
    ``c.S3Store.*`` settings below (docs/object-storage.md). Credentials come from the
    standard AWS chain (environment, shared files, container or instance roles).
    """

    endpoint_url = Unicode(
        None,
        allow_none=True,
        config=True,
        help="""URL of the S3 API, e.g. http://127.0.0.1:8333 (SeaweedFS), https://minio.example.org,
        https://storage.googleapis.com; None: AWS's own endpoint for the region.""",
    )
    bucket = Unicode(
        "", config=True, help="The bucket uploads land in (it must exist; it is never created)."
    )
    prefix = Unicode(
        "",
        config=True,
        help="""Key prefix every object of this server goes under, e.g. 'users/alice/' (one per
        JupyterHub user); '' uses the whole bucket. A prefix not ending in '/' gets one.
        A finished upload lands as <prefix><path>/<filename>.""",
    )
    region = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Region to sign requests for (None: from the AWS chain, e.g. AWS_DEFAULT_REGION).",
    )
    part_size = Int(
        DEFAULT_PART_SIZE,
        config=True,
        help="""Bytes per multipart part, 5 MiB to 5 GiB: the memory one upload in progress
        holds (at most two parts: one on its way to S3 while the next fills, plus a 1 MiB
        piece of body), and with S3's 10000 parts the largest upload of unknown length
        (9000 x part_size). An upload of known length uses bigger parts when it needs them.""",
    )
    staging_prefix = Unicode(
        ".tus/",
        config=True,
        help="""Where, under the prefix, unfinished uploads keep their records, tails and
        multipart uploads (hidden from Jupyter's file browser by its leading dot).""",
    )
    addressing_style = CaselessStrEnum(
        ["auto", "path", "virtual"],
        default_value="auto",
        config=True,
        help="""How the bucket is named in URLs: 'path' (http://host/bucket/key: MinIO, SeaweedFS,
        Ceph), 'virtual' (http://bucket.host/key), 'auto': path with an endpoint_url,
        virtual on AWS.""",
    )
    conditional_writes = CaselessStrEnum(
        ["auto", "on", "off"],
        default_value="auto",
        config=True,
        help="""Whether the server honours If-None-Match: * (no clobbering without overwrite):
        'auto' tries it once at start; 'off' checks the name with a HEAD just before the
        copy instead (a window of one request in which another writer may win).""",
    )

    @validate("part_size")
    def _valid_part_size(self, proposal: dict) -> int:
        value = proposal["value"]
        if not PART_MIN <= value <= PART_MAX:
            raise TraitError(f"S3Store.part_size must be 5 MiB to 5 GiB, got {value}")
        return value

    def __init__(
        self,
        *,
        expiration: float | None = None,
        max_size: int | None = None,
        lock_timeout: float | None = 20.0,
        allow_hidden: bool = False,
        client: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.expiration = expiration
        self.max_size = max_size
        self.lock_timeout = lock_timeout
        self.allow_hidden = allow_hidden
        self._client = client
        self._client_lock = threading.Lock()
        self._quarantined: dict[str, str] = {}
        self._activity: dict[str, float] = {}  # id -> when its record was last written
        self._last_read: dict[str, tuple[FileInfo, S3State]] = {}  # see open_writer_at
        self._conditional: bool | None = {"on": True, "off": False}.get(self.conditional_writes)
        self.copy_max = PART_MAX  # larger objects are copied part by part
        self.on_landing_failure: Callable[[FileInfo, StoreError], None] | None = None

    # What the protocol layer advertises for this store (tus checksum extension).
    checksum_algorithms = CHECKSUM_ALGORITHMS

    # ------------------------------------------------------------------ client & keys

    @property
    def client(self) -> Any:
        """The boto3 S3 client, made on first use (thread-safe, pooled)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        style = self.addressing_style
        if style == "auto":
            style = "path" if self.endpoint_url else "auto"
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": style},
            retries={"mode": "standard", "max_attempts": 5},
            max_pool_connections=32,
            connect_timeout=10,
            read_timeout=120,
            # Only the checksums S3 requires: S3-compatible servers differ in the newer
            # ones; tus carries its own (Upload-Checksum) end to end.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session(region_name=self.region or None)
        return session.client("s3", endpoint_url=self.endpoint_url or None, config=config)

    @property
    def root(self) -> str:
        """The prefix as used: '' or ending in '/'."""
        prefix = self.prefix.lstrip("/")
        return prefix if not prefix or prefix.endswith("/") else prefix + "/"

    def settings(self) -> dict[str, Any]:
        """Its ``c.S3Store.*`` settings, for another process to build the same store
        (a kernel: ``$JUPYTER_TUS_STORE``, helpers.default_store). No credentials."""
        return {name: getattr(self, name) for name in self.trait_names(config=True)}

    @property
    def location(self) -> str:
        """Where unfinished uploads are staged, as a URL: ``s3://<bucket>/<staging>``."""
        return f"s3://{self.bucket}/{self.staging}"

    @property
    def staging(self) -> str:
        staging = self.staging_prefix.strip("/")
        return f"{self.root}{staging}/" if staging else self.root

    def _check_id(self, upload_id: str) -> str:
        if not isinstance(upload_id, str) or not ID_PATTERN.match(upload_id):
            raise UploadNotFound(f"upload {upload_id!r} not found")
        return upload_id

    def _info_key(self, upload_id: str) -> str:
        return f"{self.staging}{self._check_id(upload_id)}.info"

    def _data_key(self, upload_id: str) -> str:
        return f"{self.staging}{self._check_id(upload_id)}"

    def _new_tail_key(self, upload_id: str) -> str:
        return f"{self.staging}{upload_id}.{secrets.token_hex(4)}.part"

    def key_of(self, path: str) -> str:
        """The object key of a destination path (relative to the prefix)."""
        return self.root + path

    def _storage(self, key: str, etag: str | None = None) -> dict[str, str]:
        storage = {"type": "s3store", "bucket": self.bucket, "key": key}
        if etag is not None:
            storage["etag"] = etag
        return storage

    # ------------------------------------------------------------------ S3 calls

    def _call(self, operation: str, **kwargs: Any) -> Any:
        """One S3 request. Errors the store interprets (not found, no such upload, a
        precondition, a conditional write the server does not take) pass as botocore's
        ClientError, as does any 4xx to a conditional write (``IfNoneMatch``: its
        caller sorts them); the service's own failures (unreachable, 5xx after retries,
        denied, no bucket, any other 4xx such as a RequestTimeout) become
        StorageUnavailable (a 503, never a 500)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code, status = _code(exc), _status(exc)
            interpreted = code in _INTERPRETED or status in (404, 412) or "IfNoneMatch" in kwargs
            if (
                status >= 500
                or status in (401, 403)
                or code in ("NoSuchBucket", "SlowDown")
                or not interpreted
            ):
                message = exc.response.get("Error", {}).get("Message") or code
                raise StorageUnavailable(
                    f"the object store refused {operation} ({code or status}: {message})"
                ) from exc
            raise
        except BotoCoreError as exc:
            raise StorageUnavailable(f"the object store did not answer {operation}: {exc}") from exc

    def _head(self, key: str) -> dict | None:
        """HEAD of ``key``, or None when there is no such object."""
        from botocore.exceptions import ClientError

        try:
            return self._call("head_object", Key=key)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND or _status(exc) == 404:
                return None
            raise

    def _get_bytes(self, key: str, limit: int) -> bytes | None:
        """A small object's bytes (at most ``limit``), or None when it is not there."""
        from botocore.exceptions import ClientError

        try:
            response = self._call("get_object", Key=key)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND or _status(exc) == 404:
                return None
            raise
        with contextlib.closing(response["Body"]) as body:
            return body.read(limit + 1)

    def _delete(self, key: str) -> None:
        self._call("delete_object", Key=key)  # S3 answers 204 for a missing key too

    def _list(self, prefix: str) -> Iterator[dict]:
        """Every object under ``prefix`` (``Key``, ``Size``, ``LastModified``, ...)."""
        token = None
        while True:
            kwargs = {"Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list_objects_v2", **kwargs)
            yield from page.get("Contents", [])
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def _list_parts(self, key: str, upload_id: str) -> list[dict]:
        parts, marker = [], 0
        while True:
            page = self._call("list_parts", Key=key, UploadId=upload_id, PartNumberMarker=marker)
            parts.extend(page.get("Parts", []))
            if not page.get("IsTruncated"):
                return parts
            marker = page["NextPartNumberMarker"]

    def _abort_multipart(self, key: str, upload_id: str | None) -> None:
        from botocore.exceptions import ClientError

        if upload_id:
            try:
                self._call("abort_multipart_upload", Key=key, UploadId=upload_id)
            except ClientError as exc:
                if _code(exc) not in _NO_UPLOAD and _status(exc) != 404:
                    raise

    # ------------------------------------------------------------------ records

    def _read(self, upload_id: str) -> tuple[FileInfo, S3State]:
        """The record of ``upload_id``: UploadNotFound if there is none (or the object
        there is not one of this store's records), UploadQuarantined if recovery set it
        aside."""
        if upload_id in self._quarantined:
            raise UploadQuarantined(
                f"upload {upload_id} could not be recovered when the server started"
                f" ({self._quarantined[upload_id]}); it is kept as it is for the"
                " administrator: upload the file again"
            )
        raw = self._get_bytes(self._info_key(upload_id), RECORD_MAX)
        if raw is None:
            raise UploadNotFound(f"upload {upload_id} not found")
        try:
            data = json.loads(raw) if len(raw) <= RECORD_MAX else None
        except ValueError:
            data = None
        record = _record(data, upload_id)
        if record is None:
            raise UploadNotFound(f"upload {upload_id} not found")
        info, state = record
        self._activity[upload_id] = state.saved
        with self._client_lock:  # for open_writer_at: the latest reads, by id
            self._last_read[upload_id] = (info, state)
            if len(self._last_read) > LAST_READ:
                del self._last_read[next(iter(self._last_read))]
        return info, state

    def _save(self, info: FileInfo, state: S3State) -> None:
        """Write the record whole (a PUT replaces an object atomically)."""
        state.saved = time.time()
        body = json.dumps(
            {"info": info.to_json(), "s3": dataclasses.asdict(state)}, separators=(",", ":")
        ).encode()
        self._call(
            "put_object", Key=self._info_key(info.id), Body=body, ContentType="application/json"
        )
        self._activity[info.id] = state.saved

    def _refresh(self, info: FileInfo, state: S3State) -> FileInfo:
        """Fill in what is derived: the offset (bytes S3 acknowledged) and the expiry."""
        if info.is_complete:
            info.offset = info.size or 0
            info.expires = None
            if info.is_partial and self.expiration is not None:
                info.expires = self._last_activity(info, state) + self.expiration
            return info
        stored = state.stored
        info.offset = stored if info.size is None else min(stored, info.size)
        if info.unverified_from is not None:
            info.offset = min(info.offset, info.unverified_from)
        if self.expiration is not None:
            info.expires = self._last_activity(info, state) + self.expiration
        return info

    def _last_activity(self, info: FileInfo, state: S3State) -> float:
        return max(info.created, state.saved)

    def last_activity(self, info: FileInfo) -> float:
        """When a byte last arrived or the record last changed (seconds since the
        epoch): what expiry counts from."""
        saved = self._activity.get(info.id)
        if saved is None:
            with contextlib.suppress(StoreError):
                saved = self._read(info.id)[1].saved
        return max(info.created, saved or 0.0)

    # ------------------------------------------------------------------ destinations

    def resolve_destination(
        self, metadata: dict[str, str], *, allow_hidden: bool | None = None
    ) -> S3Destination | None:
        """The destination named by the ``filename``, ``path`` and ``overwrite``
        metadata, checked as the workspace's are (destinations.py): a name, not a path;
        no '.', '..', NUL, hidden parts (unless allowed), parts over 255 bytes; the key
        within S3's 1024 bytes and outside the staging prefix; no object with that key
        (DestinationExists, 409) unless overwrite; not a "folder" (keys under it) and no
        folder on the way that is an object. None without a filename (the upload then
        stays in the store)."""
        hidden = self.allow_hidden if allow_hidden is None else allow_hidden
        filename = metadata.get("filename", "")
        if not filename:
            return None
        if "/" in filename or "\\" in filename:
            raise DestinationRefused("filename must be a name, not a path; put folders in 'path'")
        _check_part(filename, "filename", hidden)
        raw = metadata.get("path", "")
        if raw.startswith(("/", "\\")):
            raise DestinationRefused("path must be relative to the store's prefix")
        parts = [p for p in raw.replace("\\", "/").split("/") if p]
        for part in parts:
            _check_part(part, "path", hidden)
        path = "/".join([*parts, filename])
        key = self.key_of(path)
        if len(key.encode()) > KEY_MAX:
            raise DestinationRefused(f"path is too long for an object key ({KEY_MAX} bytes)")
        if key.startswith(self.staging) and self.staging != self.root:
            raise DestinationRefused("path leads into the store's staging prefix")
        overwrite = metadata.get("overwrite", "").strip().lower() in TRUE_VALUES
        for i in range(1, len(parts) + 1):
            folder = "/".join(parts[:i])
            if self._head(self.key_of(folder)) is not None:
                raise DestinationRefused(
                    f"{folder!r} is a file, not a folder; choose another folder or name"
                )
        if self._is_folder(key):
            raise DestinationExists(f"{path!r} is a folder")
        if not overwrite and self._head(key) is not None:
            raise DestinationExists(f"{path!r} already exists; set overwrite to replace it")
        return S3Destination(path, key, overwrite)

    def _is_folder(self, key: str) -> bool:
        page = self._call("list_objects_v2", Prefix=key + "/", MaxKeys=1)
        return bool(page.get("KeyCount") or page.get("Contents"))

    @staticmethod
    def _check_path(path: str) -> str:
        """A destination path as a record keeps it: relative, normalised, no '..'."""
        clean = posixpath.normpath(path)
        if path.startswith("/") or clean.startswith("..") or clean in ("", "."):
            raise DestinationRefused(f"destination {path!r} must be relative to the prefix")
        return clean

    # ------------------------------------------------------------------ core API

    def new_upload(self, info: FileInfo) -> str:
        """Create an upload from ``info`` (its id is chosen here) and return the id.
        ``info.path``, when set, is the destination relative to the prefix (see
        ``resolve_destination``). Only the record is written; the multipart upload
        starts with the first full part."""
        if info.size is not None and self.max_size is not None and info.size > self.max_size:
            raise UploadTooLarge(
                f"upload size {info.size} exceeds the maximum of {self.max_size} bytes"
            )
        state = S3State(part_size=self._part_size_for(info.size))
        info.id = secrets.token_urlsafe(24)  # 192 random bits
        info.offset = 0
        info.is_complete = False
        info.created = time.time()
        info.unverified_from = None
        info.landed = None
        info.landing_error = None
        if info.path is not None:
            info.path = self._check_path(info.path)
        info.storage = self._storage(self._data_key(info.id))
        self._save(info, state)
        if info.size == 0 and not info.is_final:
            with self.lock(info.id), contextlib.suppress(LandingFailed, LandingRefused):
                self._complete(info, state, b"")
        return info.id

    def _part_size_for(self, size: int | None) -> int:
        """The part size of an upload of ``size`` bytes: ``part_size``, or more when
        the upload needs more than PLANNED_PARTS of them (rounded up to a MiB)."""
        if size is None:
            return self.part_size
        if size > OBJECT_MAX:
            raise UploadTooLarge(f"upload size {size} exceeds S3's largest object (5 TiB)")
        need = math.ceil(size / PLANNED_PARTS / MiB) * MiB
        return max(self.part_size, min(need, PART_MAX))

    def _capacity(self, state: S3State) -> int:
        """The largest size an upload with this part size can reach."""
        return min(OBJECT_MAX, state.part_size * PLANNED_PARTS)

    def get_info(self, upload_id: str) -> FileInfo:
        info, state = self._read(self._check_id(upload_id))
        return self._refresh(info, state)

    def list_uploads(self) -> list[FileInfo]:
        """Every upload the store knows, finished or not, newest first."""
        infos = []
        for upload_id in self._record_ids():
            with contextlib.suppress(UploadNotFound, UploadQuarantined):
                infos.append(self.get_info(upload_id))
        return sorted(infos, key=lambda i: i.created, reverse=True)

    def _record_ids(self) -> list[str]:
        ids = []
        for obj in self._list(self.staging):
            match = ENTRY_PATTERN.match(obj["Key"][len(self.staging) :])
            if match and match["kind"] == ".info":
                ids.append(match["id"])
        return ids

    def open_writer(
        self,
        upload_id: str,
        offset: int,
        checksum: Checksum | None = None,
        length: int | None = None,
        limit: int | None = None,
    ) -> S3ChunkWriter:
        """Start a write at ``offset`` (see ``FileStore.open_writer``: ``length``
        declares a deferred length when the write commits, ``limit`` bounds this one
        write). The caller holds the lock."""
        info, state = self._read(self._check_id(upload_id))
        self._refresh(info, state)
        return S3ChunkWriter(self, info, state, offset, checksum, length, limit)

    def open_writer_at(
        self,
        info: FileInfo,
        offset: int,
        checksum: Checksum | None = None,
        length: int | None = None,
        limit: int | None = None,
        kept: Any = None,
    ) -> S3ChunkWriter:
        """``open_writer`` for an upload whose record the caller has just read
        (``get_info``, this very ``info`` object) under its lock: the record is not
        read again. Otherwise (``info`` from elsewhere) it is. ``kept`` is the file
        store's (a PATCH's open data file) and never comes here."""
        with self._client_lock:
            last = self._last_read.pop(info.id, None)
        if last is None or last[0] is not info:
            return self.open_writer(info.id, offset, checksum, length, limit)
        info, state = last
        self._refresh(info, state)
        return S3ChunkWriter(self, info, state, offset, checksum, length, limit)

    def write_chunk(
        self, upload_id: str, offset: int, src: BinaryIO, checksum: Checksum | None = None
    ) -> int:
        """Copy ``src`` to the upload at ``offset``, block by block; return the bytes
        written."""
        writer = self.open_writer(upload_id, offset, checksum)
        try:
            while block := src.read(READ_BLOCK):
                writer.write(block)
        except BaseException:
            writer.abort()
            raise
        info = writer.commit()
        return info.offset - offset

    def get_reader(self, upload_id: str) -> BinaryIO:
        """A seekable binary file object streaming the upload's bytes from the bucket
        (ranged GETs, nothing held whole): the landed object once landed (UploadGone
        if it was replaced or deleted since), else the complete object in staging.
        An unfinished upload's parts cannot be read back from S3: UploadIncomplete."""
        info, state = self._read(self._check_id(upload_id))
        self._refresh(info, state)
        if not info.is_complete:
            raise UploadIncomplete(
                f"upload {upload_id} is not complete ({info.offset} of {info.size} bytes);"
                " the bytes of an unfinished upload in object storage are readable once"
                " it completes"
            )
        landed = self.landed_path(info)
        key = self.key_of(landed) if landed else self._data_key(upload_id)
        etag = info.storage.get("etag") if landed else None
        raw = S3Reader(self, key, info.size or 0, etag, info)
        raw.open_now()
        return io.BufferedReader(raw, buffer_size=READ_BLOCK)

    # ------------------------------------------------------------------ locks

    @property
    def locker(self) -> MemoryLocker:
        """The locker this store is composed with (tusd's UseLocker): the locks of this
        staging area in this process, shared by every S3Store object over the same
        endpoint, bucket and staging prefix, so two of them (the server's and a
        script's in one process) exclude each other as file locks do; taking one asks
        the bucket whether the upload exists (a request: off the event loop)."""
        where = (self.endpoint_url or "", self.bucket, self.staging)
        with _LOCKERS_GUARD:
            shared = _LOCKERS.setdefault(where, MemoryLocker())
        return MemoryLocker(self.lock_timeout, self._exists, shared=shared)

    def _fresh(self) -> dict[str, int]:
        """For ``_PartSink``: the uploads whose next write needs no note (see
        ``S3ChunkWriter._keep``), shared as ``locker``'s locks are (the lock held covers it)."""
        where = (self.endpoint_url or "", self.bucket, self.staging)
        with _LOCKERS_GUARD:
            return _FRESH.setdefault(where, {})

    @staticmethod
    def _senders() -> concurrent.futures.ThreadPoolExecutor:
        with _LOCKERS_GUARD:
            if not _SENDERS:
                _SENDERS.append(
                    concurrent.futures.ThreadPoolExecutor(SENDERS, thread_name_prefix="s3-part")
                )
            return _SENDERS[0]

    def lock(self, upload_id: str, timeout: float | None = None) -> MemoryLock:
        """The upload's lock, not yet taken (``with store.lock(id): ...``), held in
        this process only. Taking it raises UploadNotFound if the upload is gone."""
        return self.locker.lock(self._check_id(upload_id), timeout)

    def _exists(self, upload_id: str) -> bool:
        return self._head(self._info_key(upload_id)) is not None

    def on_release_request(self, upload_id: str, callback: Callable[[], None]) -> None:
        self.locker.on_release_request(upload_id, callback)

    def request_release(self, upload_id: str) -> bool:
        return self.locker.request_release(upload_id)

    # ------------------------------------------------------------------ capabilities

    def check_free_space(self, size: int) -> None:
        """Object storage has no free space to check; S3's own limit is checked."""
        if size > OBJECT_MAX:
            raise UploadTooLarge(f"{size} bytes exceed S3's largest object (5 TiB)")

    def declare_length(self, upload_id: str, size: int) -> FileInfo:
        """Declare a deferred length; complete at once when every byte is in."""
        info, state = self._read(self._check_id(upload_id))
        self._refresh(info, state)
        self._check_declarable(info, state, size)
        info.size = size
        self._save(info, state)
        if info.offset == size:
            self._complete(info, state)
        return self._refresh(info, state)

    def _check_declarable(self, info: FileInfo, state: S3State, size: int) -> None:
        check_declarable(info, size, self.max_size)
        if size > self._capacity(state):
            raise UploadTooLarge(
                f"an upload of unknown length can reach {self._capacity(state)} bytes here"
                f" ({PLANNED_PARTS} parts of {state.part_size}); declare the length at"
                " creation for a bigger file"
            )

    def terminate(self, upload_id: str) -> None:
        """Forget an upload: abort its multipart upload and remove every object it has
        in staging (tails, the complete object), the record last. The caller holds the
        lock. An object that already landed is the user's and stays."""
        _info, state = self._read(self._check_id(upload_id))
        self._abort_multipart(self._data_key(upload_id), state.upload_id)
        # every object named by the id (<id>, <id>.*.part), whatever the record says;
        # the record last, so a crash leaves a record without bytes (recover drops it)
        for obj in list(self._list(self._data_key(upload_id))):
            if obj["Key"] != self._info_key(upload_id):
                self._delete(obj["Key"])
        self._delete(self._info_key(upload_id))
        self._activity.pop(upload_id, None)
        self._fresh().pop(upload_id, None)

    def concat_uploads(self, final_id: str, partial_ids: Iterable[str]) -> FileInfo:
        """Fill the final upload with the partials' bytes in order, complete and land
        it, then remove the partials. Server side (UploadPartCopy) when every partial
        but the last has at least 5 MiB (S3's smallest part); otherwise the partials
        are streamed through this process part by part. The caller holds the final
        upload's lock."""
        partial_ids = list(partial_ids)
        with contextlib.ExitStack() as held:
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
            info, state = self._read(self._check_id(final_id))
            size = sum(p.size or 0 for p in partials)
            if size > OBJECT_MAX:
                raise UploadTooLarge(f"{size} bytes exceed S3's largest object (5 TiB)")
            self._abort_multipart(self._data_key(final_id), state.upload_id)  # a redo
            state = S3State(part_size=self._part_size_for(size))
            info.size = size
            info.partial_uploads = partial_ids
            self._save(info, state)
            sources = [(self._data_key(p.id), p.size or 0) for p in partials if p.size]
            try:
                if sources and all(s >= PART_MIN for _, s in sources[:-1]):
                    self._concat_by_part_copy(info, state, sources)
                else:
                    sink = _PartSink(self, info, state)
                    for key, length in sources:
                        self._stream_into(key, length, sink)
                    sink.finish()
                    state.parts, state.next_part = sink.new_parts, sink.part_no
                    self._complete_sink(info, state, sink)
            except (LandingFailed, LandingRefused):  # completion is recorded: used up
                self._terminate_all(partial_ids)
                raise
            self._terminate_all(partial_ids)
        return self.get_info(final_id)

    def _concat_by_part_copy(
        self, info: FileInfo, state: S3State, sources: list[tuple[str, int]]
    ) -> None:
        """UploadPartCopy of each partial (in ranges of at most 5 GiB), then completion."""
        key = self._data_key(info.id)
        state.upload_id = self._call("create_multipart_upload", Key=key)["UploadId"]
        self._save(info, state)
        number = 1
        for source, length in sources:
            count = math.ceil(length / PART_MAX)
            step = math.ceil(length / count)
            for start in range(0, length, step):
                end = min(start + step, length) - 1
                result = self._call(
                    "upload_part_copy",
                    Key=key,
                    UploadId=state.upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": source},
                    CopySourceRange=f"bytes={start}-{end}",
                )
                state.parts.append([number, end - start + 1, result["CopyPartResult"]["ETag"]])
                number += 1
        state.next_part = number
        self._complete(info, state, b"")

    def _stream_into(self, key: str, length: int, sink: _PartSink) -> None:
        """Feed the object ``key`` to ``sink`` block by block (bounded memory)."""
        response = self._call("get_object", Key=key)
        got = 0
        with contextlib.closing(response["Body"]) as body:
            while block := body.read(READ_BLOCK):
                sink.add(block)
                got += len(block)
        if got != length:
            raise UploadNotFound(f"the bytes of {key} changed while they were read")

    def _terminate_all(self, upload_ids: list[str]) -> None:
        for upload_id in dict.fromkeys(upload_ids):
            with contextlib.suppress(UploadNotFound):
                self.terminate(upload_id)

    def _remove_partials(self, partial_ids: list[str]) -> None:
        for pid in partial_ids:
            with contextlib.suppress(UploadNotFound, UploadLocked), self.lock(pid, timeout=0):
                self.terminate(pid)

    def expired_uploads(self, now: float | None = None) -> Iterator[str]:
        """Ids of unfinished uploads (and finished partials) whose expiry has passed.
        On the way, abandoned multipart uploads under the staging prefix (no record
        names them, older than the expiration) are aborted: S3 keeps and bills their
        parts until someone does (``clean_abandoned``)."""
        if self.expiration is None:
            return
        now = time.time() if now is None else now
        with contextlib.suppress(StoreError):
            self.clean_abandoned(now - self.expiration)
        for info in self.list_uploads():
            if (
                (not info.is_complete or info.is_partial)
                and not self.is_full(info)
                and info.expires is not None
                and info.expires <= now
            ):
                yield info.id

    def clean_abandoned(self, before: float | None = None) -> list[str]:
        """Abort the multipart uploads under the staging prefix that no record names
        (started ``before`` that time, default: any); return their keys."""
        named = {}
        for upload_id in self._record_ids():
            with contextlib.suppress(StoreError):
                named[upload_id] = self._read(upload_id)[1].upload_id
        aborted = []
        marker: dict[str, str] = {}
        while True:
            page = self._call("list_multipart_uploads", Prefix=self.staging, **marker)
            for upload in page.get("Uploads", []):
                name = upload["Key"][len(self.staging) :]
                initiated = upload.get("Initiated")
                if before is not None and initiated and initiated.timestamp() > before:
                    continue
                if ENTRY_PATTERN.match(name) and named.get(name) == upload["UploadId"]:
                    continue
                if not ENTRY_PATTERN.match(name):
                    continue  # not the store's: left alone
                self._abort_multipart(upload["Key"], upload["UploadId"])
                aborted.append(upload["Key"])
            if not page.get("IsTruncated"):
                return aborted
            marker = {
                "KeyMarker": page.get("NextKeyMarker", ""),
                "UploadIdMarker": page.get("NextUploadIdMarker", ""),
            }

    # ------------------------------------------------------------------ settling

    @staticmethod
    def is_full(info: FileInfo) -> bool:
        """Not complete, yet every byte is there (verified): a write that ended
        without its commit left it so."""
        return (
            not info.is_complete
            and info.size is not None
            and info.offset >= info.size
            and info.unverified_from is None
        )

    def _awaits_landing(self, info: FileInfo) -> bool:
        return bool(
            info.is_complete and info.path and not info.landing_error and "etag" not in info.storage
        )

    def needs_settling(self, info: FileInfo) -> bool:
        """Does ``settle`` have work to do? (No request: from the info alone.)"""
        return self.is_full(info) or self._awaits_landing(info)

    def settle(self, info: FileInfo) -> bool:
        """Complete an upload whose bytes all arrived without their commit, and land
        one whose landing failed before; True if it landed now. LandingFailed (may
        pass) or LandingRefused (for good). The caller holds the lock."""
        current, state = self._read(info.id)
        self._refresh(current, state)
        if self.is_full(current):
            self._complete(current, state)
            return bool(current.path)
        if self._awaits_landing(current):
            self._land_checked(current, state)
            return True
        return False

    def pending_landings(self) -> Iterator[FileInfo]:
        for info in self.list_uploads():
            if self.needs_settling(info):
                yield info

    def landed_path(self, info: FileInfo) -> str | None:
        """The destination (relative to the prefix) once the upload landed there."""
        if not info.is_complete or not info.path or info.landing_error:
            return None
        return info.path if "etag" in info.storage else None

    def check_landed(self, info: FileInfo) -> None:
        """UploadGone if the landed object was deleted or replaced since: its ETag, and
        the upload's id in its metadata (an ETag is the MD5 of the bytes on most
        servers: an object put again with the same bytes is another file, as a file
        replaced in the workspace is)."""
        path = self.landed_path(info)
        if path is None:
            return
        head = self._head(self.key_of(path))
        if (
            head is None
            or head.get("ETag") != info.storage.get("etag")
            or head.get("Metadata", {}).get(UPLOAD_ID_META) != info.id
        ):
            raise UploadGone(
                f"the object of upload {info.id} ({info.filename}) was deleted or replaced"
                " since it landed; upload it again"
            )

    # ------------------------------------------------------------------ completion

    def _complete_sink(self, info: FileInfo, state: S3State, sink: _PartSink) -> None:
        rest = sink.take()
        self._complete(info, state, rest)

    def _complete(
        self,
        info: FileInfo,
        state: S3State,
        last: bytes | bytearray | None = None,
        staged: bool = False,
    ) -> None:
        """All bytes are in: make the staged object whole, record completion, land.

        ``last`` is what follows the counted parts (a writer's buffer); None reads the
        tail object. Completion is recorded before the landing, so a crash between the
        two leaves a record ``recover()`` finishes; a completion cut short by a crash
        (the multipart upload done, the record not yet written) is recognised by the
        staged object's size (``staged``: it is whole already)."""
        key = self._data_key(info.id)
        size = info.size or 0
        old_tail = state.tail
        if not staged:
            self._make_whole(info, state, last)
        state.tail = None
        state.in_flight_from = None
        self._fresh().pop(info.id, None)
        info.is_complete = True
        info.offset = size
        info.unverified_from = None
        info.storage = self._storage(key)
        self._save(info, state)
        if old_tail:
            self._delete(old_tail[0])
        if info.path is not None:
            self._land_checked(info, state)

    def _make_whole(self, info: FileInfo, state: S3State, last: bytes | bytearray | None) -> None:
        """The staged object ``<staging><id>``, whole: one PUT for an upload that never
        needed a part, else the last part and CompleteMultipartUpload."""
        from botocore.exceptions import ClientError

        key = self._data_key(info.id)
        size = info.size or 0
        old_tail = state.tail
        if last is None:
            last = b""
            if old_tail:
                last = self._get_bytes(old_tail[0], PART_MAX)
                if last is None or len(last) != old_tail[1]:
                    raise UploadNotFound(f"the staged bytes of upload {info.id} are gone")
        if state.upload_id is None:
            if len(last) != size:
                raise UploadNotFound(f"the staged bytes of upload {info.id} are incomplete")
            self._call("put_object", Key=key, Body=bytes(last))
        else:
            if last or not state.parts:
                if state.next_part > MAX_PARTS:
                    raise UploadTooLarge(f"upload {info.id} used all of S3's {MAX_PARTS} parts")
                result = self._call(
                    "upload_part",
                    Key=key,
                    UploadId=state.upload_id,
                    PartNumber=state.next_part,
                    Body=last,
                )
                state.parts.append([state.next_part, len(last), result["ETag"]])
                state.next_part += 1
            try:
                self._call(
                    "complete_multipart_upload",
                    Key=key,
                    UploadId=state.upload_id,
                    MultipartUpload={
                        "Parts": [{"PartNumber": n, "ETag": etag} for n, _size, etag in state.parts]
                    },
                )
            except ClientError as exc:
                if _code(exc) not in _NO_UPLOAD:
                    raise
                head = self._head(key)  # completed before a crash?
                if head is None or head.get("ContentLength") != size:
                    raise UploadNotFound(f"the staged bytes of upload {info.id} are gone") from exc

    def _land_checked(self, info: FileInfo, state: S3State) -> None:
        try:
            self._land_sorted(info, state)
        except (LandingFailed, LandingRefused) as exc:
            if self.on_landing_failure is not None:
                self.on_landing_failure(info, exc)
            raise

    def _land_sorted(self, info: FileInfo, state: S3State) -> None:
        """``_land``, its failures sorted: LandingFailed for what may pass (the
        service unavailable), LandingRefused for what no retry fixes (recorded)."""
        from botocore.exceptions import ClientError

        try:
            self._land(info, state)
        except StorageUnavailable as exc:
            raise LandingFailed(
                f"all {info.offset} bytes arrived, but copying them to their destination"
                f" failed ({exc}); the server retries"
            ) from exc
        except ClientError as exc:
            self._refuse_landing(info, state, f"the object store refused the copy ({_code(exc)})")
            raise LandingRefused(info.landing_error) from exc
        except LandingRefused as exc:
            self._refuse_landing(info, state, str(exc))
            raise LandingRefused(info.landing_error) from exc

    def _refuse_landing(self, info: FileInfo, state: S3State, reason: str) -> None:
        info.landing_error = (
            f"all {info.offset} bytes arrived, but {reason}; the bytes are kept:"
            " download them (GET on the upload) or upload the file again elsewhere"
        )
        self._save(info, state)

    def _land(self, info: FileInfo, state: S3State) -> None:
        """Copy the staged object to its destination, server side: with
        ``If-None-Match: *`` unless overwrite (a name taken meanwhile gets a unique
        one), or after a HEAD where the server ignores conditions. Then record the
        landed object's ETag, then remove the staged object."""
        from botocore.exceptions import ClientError

        staged = self._data_key(info.id)
        conditional = not info.overwrite and self.supports_conditional_writes()
        self._check_folders(info.path)
        while True:
            key = self.key_of(info.path)
            if len(key.encode()) > KEY_MAX:
                raise LandingRefused(f"the key {info.path!r} is longer than {KEY_MAX} bytes")
            if not info.overwrite and not conditional:
                there = self._head(key)
                if there is not None:
                    if there.get("Metadata", {}).get(UPLOAD_ID_META) == info.id:
                        etag = there["ETag"]  # our own copy, before a crash
                        break
                    self._rename_for(info, state)
                    continue
            try:
                etag = self._copy(staged, key, info, if_none_match=conditional)
                break
            except ClientError as exc:
                if not conditional or _code(exc) not in _PRECONDITION:
                    raise
            there = self._head(key)
            if there is not None and there.get("Metadata", {}).get(UPLOAD_ID_META) == info.id:
                etag = there["ETag"]
                break
            self._rename_for(info, state)
        info.storage = self._storage(key, etag)
        self._save(info, state)
        self._delete(staged)

    def _check_folders(self, path: str) -> None:
        """LandingRefused if a folder of ``path`` is an object (put there since the
        upload was created), as a file on the way refuses a landing in the workspace
        (``workspace.Workspace.open_folder``): one HEAD per folder."""
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folder = "/".join(parts[:i])
            if self._head(self.key_of(folder)) is not None:
                raise LandingRefused(
                    f"{folder!r} is a file, not a folder; rename it or upload to another folder"
                )

    def _rename_for(self, info: FileInfo, state: S3State) -> None:
        """The destination's name was taken since creation: ``name (1).ext``, ...,
        counted from the name asked for; recorded before the copy is tried."""
        folder, _, name = info.path.rpartition("/")
        asked = info.metadata.get("filename") or name
        prefix = self.key_of(f"{folder}/" if folder else "")
        name = unique_name(asked, lambda n: self._head(prefix + n) is not None)
        info.path = f"{folder}/{name}" if folder else name
        self._save(info, state)

    def _content_type(self, info: FileInfo) -> str:
        filetype = info.metadata.get("filetype", "").strip().lower()
        if re.match(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$", filetype):
            return filetype
        return mimetypes.guess_type(info.filename)[0] or "application/octet-stream"

    def _copy(self, source: str, key: str, info: FileInfo, *, if_none_match: bool) -> str:
        """Server-side copy of ``source`` to ``key`` carrying the upload's id and
        content type; return the new object's ETag. One CopyObject up to
        ``copy_max`` bytes, a multipart copy (UploadPartCopy in ranges) above."""
        from botocore.exceptions import ClientError

        size = info.size or 0
        extra: dict[str, Any] = {"IfNoneMatch": "*"} if if_none_match else {}
        meta = {"Metadata": {UPLOAD_ID_META: info.id}, "ContentType": self._content_type(info)}
        if size <= self.copy_max:
            result = self._call(
                "copy_object",
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": source},
                MetadataDirective="REPLACE",
                **meta,
                **extra,
            )
            etag = result["CopyObjectResult"]["ETag"]
            return etag if etag.startswith('"') else f'"{etag}"'
        upload_id = self._call("create_multipart_upload", Key=key, **meta)["UploadId"]
        try:
            step = max(PART_MIN, self.copy_max, math.ceil(size / MAX_PARTS))
            parts = []
            for number, start in enumerate(range(0, size, step), 1):
                end = min(start + step, size) - 1
                result = self._call(
                    "upload_part_copy",
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": source},
                    CopySourceRange=f"bytes={start}-{end}",
                )
                parts.append({"PartNumber": number, "ETag": result["CopyPartResult"]["ETag"]})
            result = self._call(
                "complete_multipart_upload",
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **extra,
            )
        except (ClientError, StoreError):
            with contextlib.suppress(ClientError, StoreError):
                self._abort_multipart(key, upload_id)
            raise
        head = self._head(key)
        return head["ETag"] if head else result["ETag"]

    def supports_conditional_writes(self) -> bool:
        """Does the server refuse ``If-None-Match: *`` on an existing key? Asked once
        (``conditional_writes = auto``): a probe object put twice."""
        if self._conditional is None:
            self._conditional = self._probe_conditional()
        return self._conditional

    def _probe_conditional(self) -> bool:
        from botocore.exceptions import ClientError

        key = f"{self.staging}{PROBE}-{secrets.token_hex(4)}"
        try:
            self._call("put_object", Key=key, Body=b"")
            try:
                self._call("put_object", Key=key, Body=b"", IfNoneMatch="*")
            except ClientError as exc:
                if _code(exc) in _PRECONDITION or _status(exc) == 412:
                    return True
                if _code(exc) in _CONDITIONAL_UNSUPPORTED or _status(exc) in (400, 501):
                    return False
                raise
            return False  # the second write went through: conditions are ignored
        finally:
            with contextlib.suppress(StoreError, ClientError):
                self._delete(key)

    # ------------------------------------------------------------------ start & recovery

    def claim(self) -> None:
        """Make the staging prefix this store's, or refuse it (StagingRefused): the
        bucket must exist and be reachable with the credentials the AWS chain gives;
        an unmarked staging prefix holding objects that are not the store's is not
        taken over. Also learns whether the server honours conditional writes.
        Without boto3 installed: StagingRefused naming the extra that brings it."""
        try:
            import boto3  # noqa: F401 (the client's, made later)
            from botocore.exceptions import ClientError, NoCredentialsError
        except ImportError as exc:
            raise StagingRefused(
                f"S3Store needs boto3, which is not installed ({exc}):"
                " pip install 'jupyter-tus[s3]'"
            ) from exc

        if not self.bucket:
            raise StagingRefused("no bucket: set c.S3Store.bucket")
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except NoCredentialsError as exc:
            raise StagingRefused(
                "no credentials for the object store: the AWS chain found none"
                " (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws, a role)"
            ) from exc
        except ClientError as exc:
            status = _status(exc)
            what = {404: "does not exist", 403: "is not ours to use (access denied)"}.get(
                status, f"cannot be used ({_code(exc) or status})"
            )
            raise StagingRefused(f"the bucket {self.bucket!r} {what}") from exc
        except Exception as exc:  # botocore's connection and credential errors
            raise StagingRefused(
                f"the object store at {self.endpoint_url or 'AWS'} cannot be reached: {exc}"
            ) from exc
        marker = self.staging + MARKER
        if self._head(marker) is None:
            foreign = [
                o["Key"][len(self.staging) :]
                for o in self._list(self.staging)
                if not _is_store_name(o["Key"][len(self.staging) :])
            ]
            if foreign:
                shown = ", ".join(repr(n) for n in foreign[:3]) + (
                    ", ..." if len(foreign) > 3 else ""
                )
                raise StagingRefused(
                    f"the staging prefix {self.staging!r} already holds objects that are not"
                    f" uploads ({shown}); the store will not share it: set"
                    " c.S3Store.staging_prefix to a new prefix"
                )
            self._call(
                "put_object",
                Key=marker,
                Body=b'{"store": "jupyter_tus.s3store.S3Store", "version": 1}\n',
            )
        if self.conditional_writes == "auto":
            self._conditional = self._probe_conditional()

    def quarantined(self) -> dict[str, str]:
        return dict(self._quarantined)

    def recover(self) -> list[str]:
        """Repair what a crash can leave behind; return one line per repair.

        Upload by upload: adopt the parts a killed write had sent (not for a
        checksummed write: those are cut back), complete uploads whose bytes all
        arrived or whose completion was cut short, finish landings, redo interrupted
        concatenations, drop records whose bytes are gone; then remove the store's
        stray tails and abort multipart uploads no record names. An upload that fails
        is quarantined (kept, reported, UploadQuarantined) and the others go on."""
        report: list[str] = []
        self._quarantined.clear()
        entries: dict[str, list[str]] = {}
        foreign = []
        for obj in self._list(self.staging):
            name = obj["Key"][len(self.staging) :]
            if name == MARKER:
                continue
            if name.startswith(PROBE):
                self._delete(obj["Key"])
                continue
            match = ENTRY_PATTERN.match(name)
            if not match:
                foreign.append(name)
                continue
            entries.setdefault(match["id"], []).append(match["kind"])
        if foreign:
            shown = ", ".join(sorted(foreign)[:10]) + (", ..." if len(foreign) > 10 else "")
            report.append(f"left alone {len(foreign)} objects that are not uploads: {shown}")
        for upload_id, kinds in sorted(entries.items()):
            if ".info" not in kinds:
                if "" in kinds:
                    report.append(f"left alone {upload_id}: an object without its record")
                for kind in kinds:
                    if kind.endswith(".part"):
                        self._delete(f"{self.staging}{upload_id}{kind}")
                        report.append(f"removed stray tail {upload_id}{kind}")
                continue
            try:
                line = self._recover_locked(upload_id, kinds)
            except Exception as exc:  # one upload never stops the others, nor the start
                reason = f"{type(exc).__name__}: {exc}"
                self._quarantined[upload_id] = reason
                line = f"quarantined {upload_id}: {reason}"
            if line:
                report.append(line)
        for key in self.clean_abandoned():
            report.append(f"aborted the abandoned multipart upload of {key}")
        return report

    def _recover_locked(self, upload_id: str, kinds: list[str]) -> str | None:
        try:
            info, state = self._read(upload_id)
        except UploadNotFound:
            return f"left alone {upload_id}.info: not an upload record"
        lock = self.lock(upload_id)
        try:
            if not lock.acquire(blocking=False):
                return None
        except UploadNotFound:
            return None
        try:
            line = self._recover_one(info, state)
            # tails no record names (a write killed between its new tail and its record)
            current = None if info.is_complete else (state.tail or [None])[0]
            for kind in kinds:
                key = f"{self.staging}{upload_id}{kind}"
                if kind.endswith(".part") and key != current:
                    with contextlib.suppress(UploadNotFound):
                        self._read(upload_id)  # still there (not terminated just now)
                        self._delete(key)
            return line
        finally:
            lock.release()

    def _recover_one(self, info: FileInfo, state: S3State) -> str | None:
        from botocore.exceptions import ClientError

        key = self._data_key(info.id)
        if info.is_complete:
            line = None
            if self._awaits_landing(info):
                try:
                    self._land_checked(info, state)
                    line = f"finished landing {info.id} at {info.path}"
                except LandingFailed as exc:
                    line = f"could not land {info.id} yet, the sweep retries: {exc}"
                except LandingRefused as exc:
                    line = f"cannot land {info.id}, its bytes are kept: {exc}"
            elif self.landed_path(info) and self._head(key) is not None:
                self._delete(key)  # landed; the staged copy's removal was cut short
                line = f"removed the staged copy of {info.id}, which had landed"
            if info.is_final and any(self._exists(p) for p in info.partial_uploads):
                self._remove_partials(info.partial_uploads)
                line = line or f"removed the used partial uploads of {info.id}"
            return line
        if info.is_final:
            if info.partial_uploads and all(self._exists(p) for p in info.partial_uploads):
                self.concat_uploads(info.id, info.partial_uploads)
                return f"redid concatenation of {info.id}"
            return None
        line = None
        if state.upload_id is not None:
            try:
                listed = self._list_parts(key, state.upload_id)
            except ClientError as exc:
                if _code(exc) not in _NO_UPLOAD and _status(exc) != 404:
                    raise
                head = self._head(key)
                if (
                    head is not None
                    and info.size is not None
                    and head["ContentLength"] == info.size
                ):
                    try:  # the completion was cut short after S3 had done it
                        self._complete(info, state, staged=True)
                    except (LandingFailed, LandingRefused) as landing:
                        return f"completed {info.id}, cut short at completion; {landing}"
                    return f"completed {info.id}, cut short at completion"
                self.terminate(info.id)
                return f"removed {info.id}, whose multipart upload was gone"
            numbers = {p["PartNumber"]: p for p in listed}
            if info.unverified_from is not None:
                state.next_part = max([state.next_part, *[n + 1 for n in numbers]])
                state.in_flight_from = None
                info.unverified_from = None
                self._save(info, state)
                line = f"cut {info.id} back to its last verified offset {state.stored}"
            elif state.in_flight_from is not None:
                adopted = []
                n = state.in_flight_from
                total = state.stored - (state.tail[1] if state.tail else 0)
                while n in numbers and (
                    info.size is None or total + numbers[n]["Size"] <= info.size
                ):
                    adopted.append([n, numbers[n]["Size"], numbers[n]["ETag"]])
                    total += numbers[n]["Size"]
                    n += 1
                state.next_part = max([state.next_part, *[m + 1 for m in numbers]])
                state.in_flight_from = None
                if adopted:
                    old_tail = state.tail
                    state.parts.extend(adopted)
                    state.tail = None  # the first adopted part began with it
                self._save(info, state)
                if adopted:
                    if old_tail:
                        self._delete(old_tail[0])
                    line = f"kept {len(adopted)} parts {info.id} had sent before the crash"
        elif info.unverified_from is not None:
            info.unverified_from = None
            self._save(info, state)
            line = f"cut {info.id} back to its last verified offset {state.stored}"
        if state.tail and self._head(state.tail[0]) is None:
            self.terminate(info.id)
            return f"removed {info.id}, whose staged tail was gone"
        self._refresh(info, state)
        if self.is_full(info):
            try:
                self._complete(info, state)
            except (LandingFailed, LandingRefused) as exc:
                return f"completed {info.id} whose bytes had all arrived; {exc}"
            return f"completed {info.id} whose bytes had all arrived"
        return line


_LOCKERS: dict[tuple[str, str, str], MemoryLocker] = {}
_LOCKERS_GUARD = threading.Lock()
# Per staging area (as _LOCKERS): upload id -> the part number its record, written by
# this process, notes as the next write's start, while no write has begun since.
_FRESH: dict[tuple[str, str, str], dict[str, int]] = {}
# The threads that send parts in the background (_PartSink), shared by every store.
_SENDERS: list[concurrent.futures.ThreadPoolExecutor] = []
SENDERS = 16  # threads: parts sent at once by all uploads of the process


class _PartSink:
    """Bytes in, whole parts out: buffers up to the upload's part size; each full part
    is uploaded in the background (a worker thread of the store) while the next one
    fills, one part at a time and in order, so part ``n + 1`` starts only once S3 has
    acknowledged part ``n``. Memory: the part being sent, the part filling and one
    piece of body, at most ``2 * part_size`` plus a piece (a full part waits for the
    one before it).

    A part S3 does not acknowledge ends the sink: its error is raised by the next
    ``add``, ``send`` or ``finish``, and only the parts acknowledged before it count
    (``new_parts``); the bytes after them are dropped (``failed``), never moved up."""

    def __init__(
        self, store: S3Store, info: FileInfo, state: S3State, head: bytes | None = None
    ) -> None:
        self.store = store
        self.info = info
        self.state = state
        # The part filling, ``filled`` bytes of it used: a buffer that grows with the
        # body up to part_size, or, once a part was acknowledged, that part's buffer
        # filled again in place (``_spare``). So a write allocates at most two parts'
        # buffers however many it sends, and a short write only what it holds.
        self.buffer: bytearray | None = None
        self.filled = 0
        self._spare: bytearray | None = None
        self.part_no = state.next_part
        self.new_parts: list[list] = []
        self.failed: BaseException | None = None
        self._pending: tuple[concurrent.futures.Future, bytearray] | None = None
        self._noted = False
        if head:
            self.add(head)

    def add(self, data: bytes | bytearray | memoryview) -> None:
        if self.failed is not None:
            raise self.failed
        size = self.state.part_size
        view = memoryview(data).cast("B")
        while view:
            if self.buffer is None:
                self.buffer, self._spare = self._spare or bytearray(), None
                self.filled = 0
            n = min(len(view), size - self.filled)
            if self.filled == len(self.buffer):
                self.buffer += view[:n]  # growing
            else:
                self.buffer[self.filled : self.filled + n] = view[:n]  # a spare
            self.filled += n
            view = view[n:]
            if self.filled == size:
                part, self.buffer, self.filled = self.buffer, None, 0
                self.send(part, background=True)

    def send(self, part: bytearray, background: bool = False) -> None:
        """Upload ``part`` as the next part number (not yet recorded: the caller
        records ``new_parts`` with its commit), after the part before it is
        acknowledged; ``background``: return once it is on its way (``finish`` waits
        for it)."""
        self.finish()
        try:
            number = self._number()
        except BaseException as exc:  # (the multipart upload or the record refused)
            self.failed = exc  # ends the sink as a refused part does: nothing after counts
            raise
        if background:
            future = self.store._senders().submit(self._upload, number, part)
            self._pending = (future, part)
        else:
            self._collect(lambda: self._upload(number, part))

    def finish(self) -> None:
        """Wait for the part on its way; raise its error (or an earlier one)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            future, part = pending
            self._collect(future.result)
            if len(part) == self.state.part_size:
                self._spare = part  # acknowledged: its buffer takes the next part
        if self.failed is not None:
            raise self.failed

    def _collect(self, result: Callable[[], list]) -> None:
        try:
            self.new_parts.append(result())
        except BaseException as exc:
            self.failed = exc
            raise

    def _number(self) -> int:
        """The next part's number, after what a crash or a failure needs to know: the
        multipart upload started, and the record noting where this write's parts
        start (``in_flight_from``) unless the record already does (``_fresh``)."""
        store, state = self.store, self.state
        if self.part_no > MAX_PARTS:
            raise UploadTooLarge(f"upload {self.info.id} used all of S3's {MAX_PARTS} parts")
        if not self._noted:
            self._noted = True
            # True if this process wrote the record last, noting this very part
            # number as the next write's start, and no write has begun since.
            fresh = store._fresh().pop(self.info.id, None) == self.part_no
            if state.upload_id is None:
                key = store._data_key(self.info.id)
                state.upload_id = store._call("create_multipart_upload", Key=key)["UploadId"]
            elif fresh and state.in_flight_from == self.part_no:
                return self._take_number()
            elif state.in_flight_from is not None:
                # a write before this one sent parts it never recorded: go past them
                listed = store._list_parts(store._data_key(self.info.id), state.upload_id)
                self.part_no = max([self.part_no, *[p["PartNumber"] + 1 for p in listed]])
            # so termination, recovery and the next write know of the parts to come
            state.in_flight_from = self.part_no
            store._save(self.info, state)
            if self.part_no > MAX_PARTS:
                raise UploadTooLarge(f"upload {self.info.id} used all of S3's {MAX_PARTS} parts")
        return self._take_number()

    def _take_number(self) -> int:
        number = self.part_no
        self.part_no += 1  # taken even if the part fails: never reused
        return number

    def _upload(self, number: int, part: bytearray) -> list:
        """UploadPart (in the caller's thread or a sender's); ``[number, size, etag]``."""
        from botocore.exceptions import ClientError

        store = self.store
        try:
            result = store._call(
                "upload_part",
                Key=store._data_key(self.info.id),
                UploadId=self.state.upload_id,
                PartNumber=number,
                Body=part,
            )
        except ClientError as exc:
            if _code(exc) not in _NO_UPLOAD:
                # any other refusal of a part (400 RequestTimeout after botocore's
                # retries, a digest it did not take...) is the object store failing, not
                # the tus client: a StoreError (503), never a 500
                message = exc.response.get("Error", {}).get("Message") or _code(exc)
                raise StorageUnavailable(
                    f"the object store refused upload_part ({_code(exc) or _status(exc)}:"
                    f" {message})"
                ) from exc
            raise UploadNotFound(
                f"the multipart upload of upload {self.info.id} is gone (aborted outside"
                " the server, e.g. by a bucket lifecycle rule); upload the file again"
            ) from exc
        return [number, len(part), result["ETag"]]

    def take(self) -> bytearray:
        """The bytes after the last full part (the buffer, cut to them in place)."""
        rest, self.buffer, self._spare = self.buffer, None, None
        if rest is None:
            return bytearray()
        del rest[self.filled :]
        self.filled = 0
        return rest


class S3ChunkWriter:
    """One write into an S3Store upload (the ChunkWriter of store.py): the body goes
    into a part buffer as it arrives; full parts go to S3 at once, in the background
    while the next one fills (``_PartSink``); ``commit`` waits for them, then keeps
    the rest as the tail (or as a part, or completes the upload)."""

    # For the handlers: a write() may upload a part (network I/O) and commit() puts
    # objects: never on the event loop (see docs/object-storage.md, phase 2).
    writes_may_block = True

    def __init__(
        self,
        store: S3Store,
        info: FileInfo,
        state: S3State,
        offset: int,
        checksum: Checksum | None,
        length: int | None = None,
        limit: int | None = None,
    ) -> None:
        check_writable(info, offset)
        if length is not None:
            store._check_declarable(info, state, length)
        self.store = store
        self.info = info
        self.state = state
        self.start = offset
        self.written = 0
        self.declares = length
        bound = info.size if length is None else length
        if bound is None:
            bound = store._capacity(state)
            if store.max_size is not None:
                bound = min(bound, store.max_size)
        self._room = bound - offset
        self._edge = "the upload's length"
        if limit is not None and limit < self._room:
            self._room = limit
            self._edge = f"the largest body the server takes in one request ({limit} bytes)"
        self._checksum = checksum
        self._hasher = new_hasher(checksum.algorithm) if checksum else None
        self._sink: _PartSink | None = None
        self._done = False
        if checksum:
            # Until the checksum is checked, a crash must not count this write's parts.
            info.unverified_from = offset
            store._save(info, state)

    def fits(self, n: int) -> bool:
        return self.written + n <= self._room

    def _open_sink(self) -> _PartSink:
        head = None
        tail = self.state.tail
        if tail:
            head = self.store._get_bytes(tail[0], PART_MAX)
            if head is None or len(head) != tail[1]:
                raise UploadNotFound(f"the staged bytes of upload {self.info.id} are gone")
        return _PartSink(self.store, self.info, self.state, head)

    def write(self, data: bytes) -> None:
        """Take ``data`` now. A full part goes to S3 in the background; a write that
        fills the next one first waits for it to be acknowledged, and a part S3 did
        not acknowledge raises its error here (or in ``commit``). Past the length (or
        the write's limit), the part that fits is kept and UploadTooLarge raised."""
        excess = None
        if self.written + len(data) > self._room:
            excess = self.written + len(data) - self._room
            data = data[: len(data) - excess]
        if data:
            if self._sink is None:
                self._sink = self._open_sink()
            if self._hasher:
                self._hasher.update(data)
            self._sink.add(data)
            self.written += len(data)
        if excess:
            raise UploadTooLarge(f"the body goes {excess} bytes past {self._edge}")

    def commit(self) -> FileInfo:
        """End of the body: check the checksum, then keep the rest (tail or part) and
        record the write, or complete and land the upload if it is full."""
        self._done = True
        info, state = self.info, self.state
        if self._checksum and self._hasher.digest() != self._checksum.digest:
            self._cut_back()
            raise ChecksumMismatch(
                f"{self._checksum.algorithm} checksum of the body does not match;"
                f" offset stays at {self.start}"
            )
        if self.declares is not None:
            info.size = self.declares
        end = self.start + self.written
        if info.size is not None and end == info.size:
            sink = self._sink or self._open_sink()
            try:
                sink.finish()
            except Exception:
                if self.declares is not None:
                    info.size = None  # a write cut short declares nothing
                self._keep()  # records the parts acknowledged before; raises
                raise
            state.parts = state.parts + sink.new_parts
            state.next_part = sink.part_no
            self.store._complete(info, state, sink.take())
            return self.store._refresh(info, state)
        self._keep()
        return self.store._refresh(info, state)

    def abort(self) -> FileInfo:
        """The body ended early: keep what arrived (a checksummed write goes back to
        where it started, its bytes unverifiable)."""
        if self._done:
            return self.store.get_info(self.info.id)
        self._done = True
        if self._checksum:
            self._cut_back()
        else:
            self._keep(report=False)
        return self.store._refresh(self.info, self.state)

    def _keep(self, report: bool = True) -> None:
        """Record the parts S3 acknowledged and put the rest as the new tail (or, from
        5 MiB, as one more part); then remove the old tail. After a part S3 did not
        acknowledge (sent in the background, see ``_PartSink``), only the parts before
        it are recorded, the bytes after them are dropped (the offset stops where the
        acknowledged parts end) and the part's error is raised (``report``; abort
        keeps what it can quietly).

        The record notes ``next_part`` as where the next write's parts start
        (``in_flight_from``), so that write sends its first part without writing the
        record first (``_PartSink._number``)."""
        info, state, sink = self.info, self.state, self._sink
        info.unverified_from = None
        if sink is None:  # nothing arrived
            if self._checksum:
                self.store._save(info, state)
            return
        failure = None
        try:
            sink.finish()
        except Exception as exc:
            failure = exc
        old_tail = state.tail
        rest = sink.take()
        if failure is not None:
            # the first part of the write began with the tail: kept if none counts
            new_tail = None if sink.new_parts else old_tail
        else:
            if len(rest) >= PART_MIN:
                sink.send(rest)
                rest = bytearray()
            new_tail = None
            if rest:
                key = self.store._new_tail_key(info.id)
                self.store._call("put_object", Key=key, Body=rest)
                new_tail = [key, len(rest)]
        state.parts = state.parts + sink.new_parts
        state.next_part = sink.part_no
        state.in_flight_from = state.next_part
        state.tail = new_tail
        self.store._save(info, state)
        self.store._fresh()[info.id] = state.next_part
        if old_tail and (new_tail is None or old_tail[0] != new_tail[0]):
            self.store._delete(old_tail[0])
        if failure is not None and report:
            raise failure

    def _cut_back(self) -> None:
        """Forget this write: its parts stay unlisted (their numbers are not reused),
        the old tail is untouched; only the record changes."""
        if self._sink is not None:
            with contextlib.suppress(Exception):  # forgotten, acknowledged or not
                self._sink.finish()
            self.state.next_part = max(self.state.next_part, self._sink.part_no)
            self._sink = None
        self.state.in_flight_from = None
        self.info.unverified_from = None
        self.store._save(self.info, self.state)


class S3Reader(io.RawIOBase):
    """A seekable, read-only file object on one object, streamed with ranged GETs
    (``Range: bytes=<pos>-``, ``If-Match`` the recorded ETag when given): a seek drops
    the stream and the next read opens one at the new position."""

    def __init__(
        self, store: S3Store, key: str, size: int, etag: str | None, info: FileInfo
    ) -> None:
        super().__init__()
        self._store = store
        self._key = key
        self._size = size
        self._etag = etag
        self._info = info
        self._pos = 0
        self._body: Any = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        position = base + offset
        if position < 0:
            raise ValueError("negative seek position")
        if position != self._pos:
            self._drop()
            self._pos = position
        return self._pos

    def open_now(self) -> None:
        """Start the stream at once, so that a missing or replaced object is known
        before anything is sent (UploadGone / UploadNotFound)."""
        if self._pos < self._size:
            self._open()

    def _open(self) -> None:
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {"Key": self._key, "Range": f"bytes={self._pos}-"}
        if self._etag:
            kwargs["IfMatch"] = self._etag
        try:
            answer = self._store._call("get_object", **kwargs)
        except ClientError as exc:
            if (
                _code(exc) in _PRECONDITION
                or _code(exc) in _NOT_FOUND
                or _status(exc) in (404, 412)
            ):
                if self._etag:
                    raise UploadGone(
                        f"the object of upload {self._info.id} ({self._info.filename}) was"
                        " deleted or replaced since it landed"
                    ) from exc
                raise UploadNotFound(
                    f"the bytes of upload {self._info.id} are no longer there"
                ) from exc
            raise
        if self._etag and answer.get("Metadata", {}).get(UPLOAD_ID_META) != self._info.id:
            # the same bytes put again keep the ETag: another upload's (or someone's)
            # object now, as check_landed says
            answer["Body"].close()
            raise UploadGone(
                f"the object of upload {self._info.id} ({self._info.filename}) was"
                " deleted or replaced since it landed"
            )
        self._body = answer["Body"]

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size or not len(buffer):
            return 0
        if self._body is None:
            self._open()
        data = self._body.read(min(len(buffer), self._size - self._pos))
        if not data:
            raise OSError(f"the object {self._key} ended early at {self._pos} bytes")
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n

    def _drop(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            with contextlib.suppress(Exception):
                body.close()

    def close(self) -> None:
        self._drop()
        super().close()


def _is_store_name(name: str) -> bool:
    return name == MARKER or name.startswith(PROBE) or bool(ENTRY_PATTERN.match(name))


def _record(data: object, upload_id: str) -> tuple[FileInfo, S3State] | None:
    """The FileInfo and S3State a record's JSON describes, or None when it is not one
    of this store's records (another id, fields of the wrong type)."""
    if not isinstance(data, dict):
        return None
    raw_info, raw_state = data.get("info"), data.get("s3")
    if not isinstance(raw_info, dict) or not isinstance(raw_state, dict):
        return None
    if raw_info.get("id") != upload_id or not FileInfo.has_record_types(raw_info):
        return None
    for name, types in _STATE_TYPES.items():
        if name in raw_state and not isinstance(raw_state[name], types):
            return None
    if "saved" in raw_state and not is_timestamp(raw_state["saved"]):
        return None
    info = FileInfo.from_json(raw_info)
    known = {f.name for f in dataclasses.fields(S3State)}
    state = S3State(**{k: v for k, v in raw_state.items() if k in known})
    if not all(_is_shaped(p, (int, int, str)) for p in state.parts):
        return None
    if state.tail is not None and not _is_shaped(state.tail, (str, int)):
        return None
    return info, state


# The JSON types of a record's S3State fields; a part is [number, size, etag], a tail
# [key, size].
_STATE_TYPES: dict[str, tuple[type, ...]] = {
    "part_size": (int,),
    "upload_id": (str, type(None)),
    "parts": (list,),
    "next_part": (int,),
    "tail": (list, type(None)),
    "in_flight_from": (int, type(None)),
    "saved": (int, float),
}


def _is_shaped(item: object, types: tuple[type, ...]) -> bool:
    return (
        isinstance(item, list)
        and len(item) == len(types)
        and all(isinstance(v, t) for v, t in zip(item, types, strict=True))
    )
