"""tus 1.0.0 over HTTP: one method per verb, errors mapped to statuses in one table.

The handlers speak HTTP only: they parse headers (``protocol``), call the manager and
the store, and turn named errors into status codes. Bodies stream straight into the
store as tornado hands them over, through the ``streaming.BodyStream`` each request
holds (the writes, the idle timer, the upload's lock and its let-go, the commit);
nothing is ever buffered whole.

Every refusal decided before the body is read is kept and answered only after the
body has been drained (up to ``drain_limit`` bytes): a proxy such as JupyterHub's
configurable-http-proxy turns an answer to a half-sent body into a 503.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import json
import mimetypes
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated, authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from tornado import web

from . import bodies, cors, ietf, metrics, protocol
from .hooks import SECRET_HEADERS, HookFailed, HookRefused, RequestContext
from .manager import UploadManager
from .protocol import OFFSET_CONTENT_TYPE, TUS_VERSION, ProtocolError
from .quotas import QuotaExceeded, StagingFull
from .store import (
    ChecksumMismatch,
    ChunkWriter,
    DestinationExists,
    DestinationRefused,
    FileInfo,
    InsufficientStorage,
    LandingFailed,
    LandingRefused,
    LengthAlreadyDeclared,
    OffsetMismatch,
    StagingRefused,
    StorageUnavailable,
    StoreError,
    UploadExpired,
    UploadGone,
    UploadIncomplete,
    UploadLocked,
    UploadNotFound,
    UploadNotPatchable,
    UploadQuarantined,
    UploadTooLarge,
    check_writable,
)
from .streaming import BodyStream

# The one table from a store error to its status (and reason phrase where tornado
# has none). Looked up along the exception's MRO, so subclasses may refine.
STORE_ERROR_STATUS: dict[type[StoreError], int] = {
    UploadNotFound: 404,
    UploadGone: 410,
    UploadExpired: 410,
    OffsetMismatch: 409,
    UploadTooLarge: 413,
    UploadLocked: 423,
    ChecksumMismatch: 460,
    UploadIncomplete: 400,
    UploadNotPatchable: 403,
    LengthAlreadyDeclared: 400,
    DestinationExists: 409,
    DestinationRefused: 403,
    LandingRefused: 403,
    InsufficientStorage: 507,
    LandingFailed: 503,
    UploadQuarantined: 503,
    StagingRefused: 503,
    StorageUnavailable: 503,
    HookFailed: 500,
    StagingFull: 507,
    QuotaExceeded: 507,
}
REASONS = {423: "Locked", 460: "Checksum Mismatch", 507: "Insufficient Storage"}

# Not part of tus: on the answers about a finished upload, where its file landed
# (relative to root_dir, percent-encoded UTF-8).
LANDED_PATH_HEADER = "Jupyter-Tus-Path"

# Served inline by GET; any other type is sent as an attachment.
INLINE_TYPES = frozenset(
    {
        "text/plain",
        "text/csv",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "audio/mpeg",
        "audio/ogg",
        "audio/wav",
        "video/mp4",
        "video/webm",
        "video/ogg",
    }
)
_MIME = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")
READ_BLOCK = 1024 * 1024
UNLIMITED_BODY = 1 << 62
# Chunked body pieces handed to data_received, read from the socket in halves of it
# (tornado: 64 KiB both): far fewer recv()/write() calls and trips through tornado's
# delegates per GiB. (Bodies with a Content-Length are read by ``bodies``: into a
# pooled buffer of the same size, or spliced into the file.)
BODY_CHUNK = 1024 * 1024
# A creation whose body is the whole upload, up to this many bytes, is received first
# and then created, written, completed and landed in one worker-thread hop
# (``UploadManager.create_whole``): the many small files of a folder dropped in the
# browser. The body is held in memory until then: less than one body piece.
WHOLE_BODY_MAX = 256 * 1024

# Reports (an event, a log line) to make on the event loop, collected by work done in
# a worker thread.
Reports = list[Callable[[], None]]


@dataclasses.dataclass
class _Whole:
    """A creation whose body is the whole upload, received before it is created."""

    size: int
    metadata: dict[str, str]
    partial: bool
    checksum: Any
    body: bytearray = dataclasses.field(default_factory=bytearray)


@dataclasses.dataclass
class _Created:
    """What a creation's worker-thread hop made: the upload, where it landed (an empty
    file lands at once), and the lock and writer for its body, if it has one."""

    info: FileInfo
    landed: str | None
    lock: Any = None
    writer: ChunkWriter | None = None
    error: BaseException | None = None


# What a request may be refused with: named store errors, protocol violations, hooks.
REFUSALS = (StoreError, ProtocolError, HookRefused)


def to_http_error(exc: Exception) -> web.HTTPError:
    """The HTTPError that answers ``exc``, with a one-line reason."""
    if isinstance(exc, web.HTTPError):
        return exc
    if isinstance(exc, HookRefused):  # an administrator's hook: its own status
        return web.HTTPError(exc.status, exc.message, reason=REASONS.get(exc.status, exc.reason))
    if isinstance(exc, ProtocolError):
        status, message = exc.status, exc.message
    else:
        status = next(
            (STORE_ERROR_STATUS[c] for c in type(exc).__mro__ if c in STORE_ERROR_STATUS), 500
        )
        message = str(exc)
    return web.HTTPError(status, message, reason=REASONS.get(status))


def tus_errors(method: Any) -> Any:
    """Answer the named errors a verb method raises with their status (the table)."""

    @functools.wraps(method)
    async def wrapper(self: TusHandler, *args: Any, **kwargs: Any) -> None:
        try:
            await method(self, *args, **kwargs)
        except REFUSALS as exc:
            self._error_code = type(exc).__name__
            raise to_http_error(exc) from exc

    return wrapper


@web.stream_request_body
class TusHandler(ExtensionHandlerMixin, APIHandler):
    """What every tus request shares: auth, version check, refusals, body, lock."""

    auth_resource = "contents"
    _takes_no_body = False  # a creation of an empty file, whose body must be empty

    def initialize(self, name: str, **kwargs: Any) -> None:
        super().initialize(name, **kwargs)
        # For clients that can only send GET and POST; it must take effect before
        # tornado dispatches and checks XSRF, hence here.
        override = self.request.headers.get("X-HTTP-Method-Override")
        # Never from or to HEAD: a HEAD's answer has no body and a body needs one.
        if override and "HEAD" not in (self.request.method, override.strip().upper()):
            self.request.method = override.strip().upper()
        self._refusal: web.HTTPError | None = None
        self._drained = 0
        # The body (its writer, the idle timer, the commit) and the upload's lock this
        # request holds (let go on a takeover): see ``streaming``.
        self.body = BodyStream(
            self.manager,
            self.tus_config.idle_timeout,
            self._body_error,
            self.request.connection.close,
            self.log,
        )
        self._error_code: str | None = None  # the name of the error answered, for metrics
        # Headers an error answer keeps (send_error clears the others): the Location of
        # an upload that exists, the offset it reached.
        self._error_headers: dict[str, str] = {}

    @property
    def manager(self) -> UploadManager:
        return self.settings["jupyter_tus_manager"]

    @property
    def tus_config(self) -> Any:
        return self.settings["jupyter_tus_config"]

    @functools.cached_property
    def draft(self) -> ietf.Draft | None:
        """The IETF resumable-upload draft this request speaks (its
        ``Upload-Draft-Interop-Version``: 8 or 6), or None for tus: see ``ietf``."""
        return ietf.requested(self.request.headers)

    def set_default_headers(self) -> None:
        super().set_default_headers()
        if self.draft is None:
            self.set_header("Tus-Resumable", TUS_VERSION)
        self.set_limit_headers()
        if self.draft is not None:
            ietf.set_default_headers(self, self.draft)
        cors.set_default_headers(self)

    def set_limit_headers(self) -> None:
        """The limits a client can read before sending, on every answer (errors too,
        so a refused client learns them): ``Upload-Limit: max-size=…, max-append-size=…``
        and ``Jupyter-Tus-Max-Chunk-Size: <max_chunk_size>``; none when unlimited."""
        config = self.tus_config
        limit = protocol.format_upload_limit(config.max_size, config.max_chunk_size)
        if limit is not None:
            self.set_header(protocol.UPLOAD_LIMIT_HEADER, limit)
        if config.max_chunk_size:
            self.set_header(protocol.MAX_CHUNK_SIZE_HEADER, str(config.max_chunk_size))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 412:
            self.set_header("Tus-Version", ",".join(protocol.SUPPORTED_VERSIONS))
        if self._refusal is not None and (
            not self._drainable() or self._drained > self.tus_config.drain_limit
        ):
            # Answered before the whole body was read: tornado closes the connection
            # after this reply, so say so, or a proxy may reuse it and fail.
            self.set_header("Connection", "close")
        for name, value in self._error_headers.items():
            self.set_header(name, value)
        if self.draft is not None:  # an RFC 9457 problem
            ietf.write_error(self, status_code, **kwargs)
            return
        super().write_error(status_code, **kwargs)

    def request_context(self) -> RequestContext:
        """Who asks, for the hooks: see ``hooks.RequestContext``."""
        user = self.current_user
        headers = {
            name: value
            for name, value in self.request.headers.items()
            if name.lower() not in SECRET_HEADERS
        }
        return RequestContext(
            username=getattr(user, "username", None) or str(user or ""),
            remote_ip=self.request.remote_ip,
            headers=headers,
            method=self.request.method or "",
            root_dir=self.manager.root_dir,
        )

    def upload_url(self, upload_id: str) -> str:
        """A path-only Location: right behind any proxy and under any base_url."""
        return url_path_join(self.base_url, "api/tus/uploads", upload_id)

    # ------------------------------------------------------------------ prepare

    # jupyter-server's authorizer, resource ``contents``. (One method per action: the
    # decorator fixes its action at the first call when left to guess it from the verb.)
    @authorized("read")
    async def _authorize_read(self) -> None:
        pass

    @authorized("write")
    async def _authorize_write(self) -> None:
        pass

    async def prepare(self) -> None:  # type: ignore[override]
        # Lift tornado's per-request body limit on these routes only.
        limit = self.tus_config.max_size or UNLIMITED_BODY
        connection = self.request.connection
        connection.set_max_body_size(max(limit, self.tus_config.drain_limit))
        if self.request.method in ("PATCH", "POST") and not bodies.install(
            connection, self.request.headers, self.body
        ):
            # A chunked body: larger pieces for this request only (params is shared by
            # the server).
            params = getattr(connection, "params", None)
            if params and params.chunk_size < BODY_CHUNK:
                connection.params = copy.copy(params)
                connection.params.chunk_size = BODY_CHUNK
                stream = getattr(connection, "stream", None)
                if stream is not None and stream.read_chunk_size < BODY_CHUNK // 2:
                    stream.read_chunk_size = BODY_CHUNK // 2
        try:
            await super().prepare()
            if cors.is_allowed_preflight(self):
                return  # carries no credentials; options() answers it
            if self.request.method in ("GET", "HEAD", "OPTIONS"):
                await self._authorize_read()
            else:
                await self._authorize_write()
            if self.request.method not in ("OPTIONS", "GET") and self.draft is None:
                version = self.request.headers.get("Tus-Resumable")
                if version not in protocol.SUPPORTED_VERSIONS:
                    raise protocol.VersionUnsupported(
                        ietf.unsupported(self.request.headers)
                        or f"Tus-Resumable {version!r} is not supported; this server speaks "
                        + ", ".join(protocol.SUPPORTED_VERSIONS)
                    )
            unavailable = await self.manager.available()
            if unavailable:
                raise web.HTTPError(503, unavailable)
            await self.prepare_request()
        except (web.HTTPError, *REFUSALS) as exc:
            self._refuse(exc)
            if not self._drainable():
                raise self._refusal from exc

    async def prepare_request(self) -> None:
        """Per-route checks and set-up before the body arrives."""

    def _refuse(self, exc: Exception) -> None:
        self._refusal = to_http_error(exc)
        self._error_code = type(exc).__name__
        self.body.stop_writing()

    def _drainable(self) -> bool:
        length = self.request.headers.get("Content-Length")
        if length is None:
            # No body (HEAD, GET, ...) or a chunked one (bounded in data_received). Even
            # an empty body must be "read": answering in prepare makes tornado close the
            # connection after the reply, without Connection: close, and the proxy's
            # next request on that pooled connection fails with a 503.
            return True
        return length.isdigit() and int(length) <= self.tus_config.drain_limit

    def raise_refusal(self) -> None:
        self.body.take_error()
        if self._refusal is not None:
            raise self._refusal

    # ------------------------------------------------------------------ body

    def data_received(self, chunk: bytes | memoryview) -> Awaitable[None] | None:
        # ``chunk`` may be a view of a buffer that is reused once this returns (or its
        # awaitable resolves): see ``bodies``. The body stream copies what it keeps.
        body = self.body
        body.take_error()
        if self._refusal is not None:
            self._drained += len(chunk)
            if self._drained > self.tus_config.drain_limit and not self._finished:
                self.send_error(self._refusal.status_code, exc_info=(None, self._refusal, None))
            return None
        if not body.receiving:
            if chunk and self._takes_no_body:
                self._refuse(UploadTooLarge("the body goes past the upload's length of 0"))
            return None
        return body.receive(chunk)

    def _body_error(self, exc: StoreError | None, overflow: FileInfo | None) -> None:
        """The body stream met a refusal (``BodyStream.on_error``): the bytes that fitted
        are kept; drain the rest, then answer it, with the offset the overflow reached."""
        if overflow is not None:
            self._error_headers["Upload-Offset"] = str(overflow.offset)
            if overflow.is_complete:
                self._error_headers.update(self.landed_path_header(overflow))
        if exc is not None:
            self._refuse(exc)

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in a worker thread: blocking file work never runs
        on the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))

    async def current_info(self, upload_id: str) -> FileInfo:
        """``_current`` in a worker thread, its reports made on the loop."""
        reports: Reports = []
        try:
            return await self._run(self._current, upload_id, reports)
        finally:
            for report in reports:
                report()

    def _current(self, upload_id: str, reports: Reports) -> FileInfo:
        """In a worker thread: the upload as a client may rely on it
        (``manager.check``), after settling what its bytes still need: an upload whose
        bytes all arrived without their commit is completed, a failed move retried
        (the caller holds the lock). So HEAD never says offset == length of an upload
        that has not landed, unless its move waits for a retry (503 then) or was
        refused (403). Completion and refusal are reported (``reports``) on the loop."""
        manager = self.manager
        info = manager.get_info(upload_id)
        if manager.needs_settling(info):
            try:
                info, landed = manager.settle(info)
            except LandingRefused:
                refused = manager.get_info(upload_id)
                reports.append(lambda: manager.refused(refused))
                raise
            if landed:
                where = manager.landed_relative(info)
                self.body.landed = (info, where)
                reports.append(lambda: manager.completed(info, landed=where))
        return manager.check(info)

    # ------------------------------------------------------------------ lock

    async def lock(self, upload_id: str) -> None:
        """The upload's lock, its holder asked to let go (``BodyStream.acquire``)."""
        await self.body.acquire(upload_id)

    async def locked(self, upload_id: str, work: Callable[..., Any], *args: Any) -> Any:
        """Take the upload's lock and do ``work(upload_id, *args, reports)`` (blocking
        work: read the record, settle, open the data file) in one worker-thread hop;
        return what it returns, or raise what it raised once the lock is ours
        (released when the request ends). ``reports`` it collects are made on the loop.
        A lock a PATCH kept (``UploadManager.park``) is taken over at once; one that
        another request holds is asked for on the loop (``manager.acquire``), and the
        work done in a second hop."""
        body = self.body
        body.upload_id = upload_id
        manager = self.manager
        reports: Reports = []
        if body.lock is None and (parked := manager.unpark(upload_id)) is not None:
            parked.kept.close()  # a PATCH kept it: ours now
            body.hold(upload_id, parked.lock)

        def hop(lock: Any) -> tuple[Any, Any, BaseException | None]:
            if lock is None:
                lock = manager.lock(upload_id)
                if not lock.acquire(blocking=False):
                    return None, None, None
            try:
                return lock, work(upload_id, *args, reports), None
            except Exception as exc:  # raised on the loop, the lock held until the end
                return lock, None, exc

        lock, value, error = await self._run(hop, body.lock)
        if lock is None:  # busy: ask its holder to let go, wait for it, then work
            await self.lock(upload_id)
            _, value, error = await self._run(hop, body.lock)
        elif body.lock is None:
            body.hold(upload_id, lock)
            if body.gone:  # the connection closed during the hop: let go now
                body.release()
        for report in reports:
            report()
        if error is not None:
            raise error
        return value

    def on_connection_close(self) -> None:
        self.body.connection_closed()
        super().on_connection_close()
        if not self.body.committing:
            self.body.release()

    def on_finish(self) -> None:
        self.body.finished()
        metrics.request_answered(self.request.method, self.get_status(), self._error_code)
        if not self.body.committing:
            self.body.release()

    # ------------------------------------------------------------------ responses

    def set_upload_headers(self, info: FileInfo) -> None:
        self.set_header("Upload-Offset", str(info.offset))
        if info.expires is not None and not info.is_complete:
            self.set_header("Upload-Expires", protocol.format_http_date(info.expires))
        self.set_landed_path(info)

    def set_landed_path(self, info: FileInfo) -> None:
        """Where a finished upload landed, as the contents API names it: a name taken
        during the upload makes it ``name (1).ext``, which the client cannot guess."""
        for name, value in self.landed_path_header(info).items():
            self.set_header(name, value)

    def landed_path_header(self, info: FileInfo) -> dict[str, str]:
        """``Jupyter-Tus-Path``, only for a file that is there now."""
        landed = self.landed_relative(info)
        return {} if landed is None else {LANDED_PATH_HEADER: urllib.parse.quote(landed)}

    def landed_relative(self, info: FileInfo) -> str | None:
        """``manager.landed_relative``, unless a worker thread looked it up already
        for this very ``info``."""
        known = self.body.landed
        if known is not None and known[0] is info:
            return known[1]
        return self.manager.landed_relative(info)

    @allow_unauthenticated  # for CORS preflights: prepare authenticates any other OPTIONS
    @tus_errors
    async def options(self, *args: str, **kwargs: str) -> None:
        self.raise_refusal()
        if cors.is_allowed_preflight(self):
            cors.answer_preflight(self)
            return
        self.set_header("Tus-Version", ",".join(protocol.SUPPORTED_VERSIONS))
        self.set_header("Tus-Extension", ",".join(self.manager.extensions))
        if self.manager.checksum_algorithms:
            self.set_header("Tus-Checksum-Algorithm", ",".join(self.manager.checksum_algorithms))
        if self.tus_config.max_size:
            self.set_header("Tus-Max-Size", str(self.tus_config.max_size))
        self.set_status(204)
        self.finish()

    def parse_checksum(self) -> Any:
        """The request's ``Upload-Checksum``, in an algorithm the store verifies."""
        return protocol.parse_checksum(
            self.request.headers.get("Upload-Checksum"), self.manager.checksum_algorithms
        )

    def require_extension(self, name: str, what: str) -> None:
        """Refuse (400) a request that needs an extension the store does not offer."""
        if name not in self.manager.extensions:
            raise protocol.InvalidHeader(
                f"{what}: this server's store does not offer the {name} extension"
                f" (Tus-Extension: {','.join(self.manager.extensions)})"
            )

    def require_content_type(self) -> None:
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type.lower() != OFFSET_CONTENT_TYPE:
            raise protocol.WrongContentType(f"Content-Type must be {OFFSET_CONTENT_TYPE}")

    def body_length(self) -> int | None:
        value = self.request.headers.get("Content-Length")
        return None if value is None else protocol.parse_non_negative("Content-Length", value)

    def check_length(self, size: int, offset: int) -> None:
        """A deferred length that can be declared: not below the bytes received, not
        over the maximum, not over the free space."""
        if size < offset:
            raise UploadTooLarge(f"{offset} bytes already received, more than {size}")
        max_size = self.tus_config.max_size
        if max_size and size > max_size:
            raise UploadTooLarge(f"Upload-Length {size} exceeds Tus-Max-Size {max_size}")
        self.manager.check_free_space(size - offset)

    def check_body_size(self) -> None:
        """A body announced (Content-Length) over ``max_chunk_size`` is refused before a
        byte of it is stored; a chunked one is cut at the limit by its writer."""
        limit = self.tus_config.max_chunk_size
        length = self.body_length()
        if limit and length is not None and length > limit:
            raise protocol.BodyTooLarge(
                f"a body of {length} bytes is over the largest body this server takes in"
                f" one request, {limit} bytes ({protocol.MAX_CHUNK_SIZE_HEADER}); send the"
                " file in smaller pieces"
            )

    async def open_writer(
        self, upload_id: str, offset: int, checksum: Any, length: int | None = None
    ) -> ChunkWriter:
        """The store's writer for this body, bounded by ``max_chunk_size`` (opened in
        a worker thread: it reads the record and opens the data file, or asks an
        object store)."""
        limit = self.tus_config.max_chunk_size or None
        return await self._run(
            self.manager.open_writer, upload_id, offset, checksum, length=length, limit=limit
        )

    def check_body_fits(self, info: FileInfo, offset: int) -> None:
        length = self.body_length()
        if length is not None and info.size is not None and offset + length > info.size:
            raise UploadTooLarge(
                f"body of {length} bytes at offset {offset} goes past the upload's"
                f" length of {info.size}"
            )


class UploadsHandler(TusHandler):
    """The creation endpoint: ``api/tus/uploads`` (OPTIONS, POST)."""

    _final_of: list[str] | None = None
    _info: FileInfo | None = None

    async def prepare_request(self) -> None:
        if self.request.method != "POST":
            return
        if self.draft is not None:
            await ietf.prepare_creation(self)
            return
        headers = self.request.headers
        if headers.get("Upload-Concat") is not None:
            self.require_extension("concatenation", "Upload-Concat")
        concat = protocol.parse_concat(headers.get("Upload-Concat"))
        metadata = protocol.parse_metadata(headers.get("Upload-Metadata"))
        size = self._parse_length(concat is not None and concat[0] == "final")
        partial = concat is not None and concat[0] == "partial"
        if concat is not None and concat[0] == "final":
            self._final_of = [self._id_from_url(url) for url in concat[1]]
        body = self._has_body()
        if body:
            self.check_body_size()  # before the upload exists: nothing to clean up
        # What refuses the body is answered once the upload exists, with its Location.
        refusal, checksum = self._body_refusal(size) if body else (None, None)
        if self.manager.hooks.pre_create is not None:
            metadata = await self.manager.pre_create(
                size, metadata, self.request_context(), partial=partial, final_of=self._final_of
            )
        if body and refusal is None and self._fits_whole(size, concat):
            # Received first, then created, written and landed in one hop (post).
            self.body.start_whole(_Whole(size, metadata, partial, checksum))
            return
        # Created, locked and its writer opened for the body in one hop.
        with_body = body and refusal is None
        created = await self._run(self._create, size, metadata, partial, with_body, checksum)
        self._info = info = created.info
        self.body.landed = (info, created.landed)
        # From here on the upload exists: every answer, errors too, says where (and,
        # for an empty file that landed at once, where it landed).
        self._error_headers["Location"] = self.upload_url(info.id)
        self._error_headers.update(self.landed_path_header(info))
        if created.lock is not None:
            self.body.hold(info.id, created.lock)
        if refusal is not None:
            raise refusal
        if created.error is not None:
            raise created.error
        if not body:
            return
        if info.is_complete:  # an empty file, complete at creation
            self._takes_no_body = True  # a chunked body may still bring bytes
            return
        writer = created.writer
        if writer is None:  # its lock was taken meanwhile (the sweep): wait for it
            await self.lock(info.id)
            writer = await self.open_writer(info.id, 0, checksum)
        self.body.start(writer)

    def _body_refusal(self, size: int | None) -> tuple[Exception | None, Any]:
        """Why a creation's body is refused (and the Upload-Checksum it brings)."""
        try:
            if self._final_of is not None:
                raise UploadNotPatchable("a final concatenation takes no body")
            self.require_content_type()
            self.check_body_fits(FileInfo(size=size), 0)
            return None, self.parse_checksum()
        except REFUSALS as exc:
            return exc, None

    def _fits_whole(self, size: int | None, concat: Any) -> bool:
        """A body that is the whole upload, small enough to receive before creating it
        (``WHOLE_BODY_MAX``), for a store that can create it in one go."""
        return (
            concat is None
            and size is not None
            and 0 < size <= WHOLE_BODY_MAX
            and self.request.headers.get("Content-Length") == str(size)
            and self.manager.creates_whole
        )

    def _create(
        self,
        size: int | None,
        metadata: dict[str, str],
        partial: bool,
        with_body: bool,
        checksum: Any,
    ) -> _Created:
        """In a worker thread: create the upload; for a body, take its lock and open its
        writer. A refusal once the upload exists comes back in ``error``."""
        manager = self.manager
        info = manager.create(size, metadata, partial=partial, final_of=self._final_of)
        created = _Created(info, manager.landed_relative(info))
        if not with_body or info.is_complete:
            return created
        lock = manager.lock(info.id)
        try:
            if not lock.acquire(blocking=False):
                return created
        except StoreError as exc:  # gone already (terminated by someone)
            created.error = exc
            return created
        created.lock = lock
        try:
            created.writer = manager.open_writer_at(
                info, 0, checksum, limit=self.tus_config.max_chunk_size or None
            )
        except Exception as exc:
            created.error = exc
        return created

    def _concatenate(self, final_id: str, partial_ids: list[str], reports: Reports) -> FileInfo:
        """In a worker thread, under the final upload's lock: the concatenation, and
        where it landed."""
        info = self.manager.concatenate(final_id, partial_ids)
        self.body.landed = (info, self.manager.landed_relative(info))
        return info

    async def _create_whole(self) -> None:
        """A small creation with its whole body, received: create, write, verify,
        complete and land it in one worker-thread hop (``manager.create_whole``)."""
        whole, self.body.whole = self.body.whole, None
        self.body.committing = True
        try:
            info, landed, error = await self._run(
                self.manager.create_whole,
                whole.size,
                whole.metadata,
                whole.body,
                whole.checksum,
                partial=whole.partial,
            )
        finally:
            self.body.committing = False
        self._info, self.body.landed = info, (info, landed)
        self.set_header("Location", self.upload_url(info.id))
        self._error_headers["Location"] = self.upload_url(info.id)
        self._error_headers.update(self.landed_path_header(info))
        if error is not None:  # the upload exists: a wrong checksum, a landing that failed
            if isinstance(error, LandingRefused):
                self.manager.refused(info)
            raise error
        self.manager.completed(info, landed=landed)
        self.set_header("Upload-Offset", str(info.offset))
        self.set_landed_path(info)
        self.set_status(201)
        self.finish()

    def _parse_length(self, final: bool) -> int | None:
        headers = self.request.headers
        length, defer = headers.get("Upload-Length"), headers.get("Upload-Defer-Length")
        if final:
            return None
        if length is not None and defer is not None:
            raise protocol.InvalidHeader("send Upload-Length or Upload-Defer-Length, not both")
        if defer is not None:
            self.require_extension("creation-defer-length", "Upload-Defer-Length")
            if defer.strip() != "1":
                raise protocol.InvalidHeader("Upload-Defer-Length must be 1")
            return None
        if length is None:
            raise protocol.InvalidHeader("missing Upload-Length (or Upload-Defer-Length: 1)")
        size = protocol.parse_non_negative("Upload-Length", length)
        max_size = self.tus_config.max_size
        if max_size and size > max_size:
            raise UploadTooLarge(f"Upload-Length {size} exceeds Tus-Max-Size {max_size}")
        return size

    def _id_from_url(self, url: str) -> str:
        """The id of a partial upload named by URL; it must be one of this server's."""
        path = urllib.parse.urlsplit(url).path
        prefix = url_path_join(self.base_url, "api/tus/uploads/")
        if not path.startswith(prefix) or "/" in path[len(prefix) :]:
            raise protocol.InvalidHeader(f"Upload-Concat names an unknown upload URL {url[:80]!r}")
        return path[len(prefix) :]

    def _has_body(self) -> bool:
        length = self.request.headers.get("Content-Length")
        if length is not None:
            return length.strip() not in ("", "0")
        return "chunked" in self.request.headers.get("Transfer-Encoding", "").lower()

    @web.authenticated  # also checked in prepare; says so to jupyter-server
    @tus_errors
    async def post(self) -> None:
        if self.draft is not None:
            await ietf.create(self)
            return
        if self.body.whole is not None:
            self.raise_refusal()
            await self._create_whole()
            return
        if self._info is not None:
            self.set_header("Location", self.upload_url(self._info.id))
        self.raise_refusal()
        info = self._info
        if self._final_of is not None:
            try:
                info = await self.locked(info.id, self._concatenate, self._final_of)
            except StoreError:
                self.manager.refresh(info.id)
                raise
            self.manager.completed(info, **self.body.known_landing(info))
        elif self.body.writer is not None:
            info = await self.body.commit()
        elif info.is_complete:  # an empty file is complete at creation
            if info.path and self.landed_relative(info) is None:
                if info.landing_error:
                    self.manager.refused(info)
                    raise LandingRefused(info.landing_error)
                raise LandingFailed(
                    "the empty file could not be created at its destination yet; the server retries"
                )
            self.manager.completed(info, **self.body.known_landing(info))
        if info.expires is not None and not info.is_complete:
            self.set_header("Upload-Expires", protocol.format_http_date(info.expires))
        if self.body.writer is not None or self._has_body():
            self.set_header("Upload-Offset", str(info.offset))
        self.set_landed_path(info)
        self.set_status(201)
        self.finish()

    @web.authenticated  # also checked in prepare; says so to jupyter-server
    @tus_errors
    async def get(self) -> None:
        """Not part of tus: this server's uploads as JSON, ``{"uploads": [...]}``, each
        as ``summary.summary`` describes it plus its ``url`` (path-only). Unfinished ones
        and those finished in the last ``finished_within`` seconds (default a day), at
        most the ``finished_limit`` latest of them (default all)."""
        self.raise_refusal()
        within = self.get_query_argument("finished_within", "86400")
        seconds = protocol.parse_non_negative("finished_within", within)
        limit = self.get_query_argument("finished_limit", None)
        if limit is not None:
            limit = protocol.parse_non_negative("finished_limit", limit)
        uploads = await self._run(self.manager.listing, float(seconds), limit)
        for upload in uploads:
            upload["url"] = self.upload_url(upload["id"])
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"uploads": uploads}))


class UploadHandler(TusHandler):
    """One upload: ``api/tus/uploads/<id>`` (OPTIONS, HEAD, PATCH, DELETE, GET)."""

    async def prepare_request(self) -> None:
        upload_id = self.path_kwargs.get("upload_id") or self.path_args[0]
        method = self.request.method
        if self.draft is not None:
            await ietf.prepare_upload_request(self, upload_id)
        elif method == "PATCH":
            await self._prepare_patch(upload_id)
        elif method == "DELETE" and "termination" not in self.manager.extensions:
            # as tusd, whose router has no DELETE route without a Terminater
            self._error_headers["Allow"] = "OPTIONS, HEAD, PATCH, GET"
            raise protocol.MethodNotAllowed(
                "this server's store does not offer the termination extension"
            )
        elif method == "HEAD":
            self._head_info = await self.locked(upload_id, self._current)
        elif method == "DELETE":
            await self.locked(upload_id, _nothing)

    _head_info: FileInfo | None = None

    async def _prepare_patch(self, upload_id: str) -> None:
        headers = self.request.headers
        self.require_content_type()
        self.check_body_size()
        offset = protocol.parse_non_negative("Upload-Offset", headers.get("Upload-Offset"))
        checksum = self.parse_checksum()
        length = headers.get("Upload-Length")
        parked = self.manager.unpark(upload_id)
        if parked is not None and checksum is None and length is None:
            # The same client's next PATCH: the lock, the record and the open data file
            # are still here (``UploadManager.park``); nothing to read or open.
            self.body.hold(upload_id, parked.lock)
            self.body.start(self._resume(parked, offset))
            return
        if parked is not None:  # a checksum or a length to record: the full way
            parked.kept.close()
            self.body.hold(upload_id, parked.lock)
        # The lock, the record, settling and the writer: one worker-thread hop.
        self.body.start(await self.locked(upload_id, self._open_patch, offset, checksum, length))

    def _resume(self, parked: Any, offset: int) -> ChunkWriter:
        """A writer on the file a PATCH kept open (``parked``), checked against the
        info it committed; a refusal closes the file (the lock stays ours)."""
        try:
            info = self.manager.check(parked.info)  # expiry: no I/O for an unfinished one
            check_writable(info, offset)  # (the writer's own check, before the body's)
            self.check_body_fits(info, offset)
            return self.manager.open_writer_at(
                info, offset, limit=self.tus_config.max_chunk_size or None, kept=parked.kept
            )
        except BaseException:
            parked.kept.close()
            raise

    def _open_patch(
        self, upload_id: str, offset: int, checksum: Any, length: str | None, reports: Reports
    ) -> ChunkWriter:
        """In a worker thread, under the upload's lock: check the PATCH against the
        upload and open its writer."""
        info = self._current(upload_id, reports)
        check_writable(info, offset)  # (the writer's own check, before the body's)
        declares = None
        record = info
        if length is not None:
            size = protocol.parse_non_negative("Upload-Length", length)
            if info.size is None:
                # Declared when the write commits: a PATCH refused or cut short
                # declares nothing. Refused now if it cannot be declared at all.
                self.check_length(size, offset)
                if self.manager.quotas.enabled:
                    self.manager.check_length(info, size)
                info, declares = dataclasses.replace(info, size=size), size
            elif size != info.size:
                raise protocol.InvalidHeader(
                    f"Upload-Length {size} differs from the upload's length {info.size}"
                )
        self.check_body_fits(info, offset)
        return self.manager.open_writer_at(
            record, offset, checksum, length=declares, limit=self.tus_config.max_chunk_size or None
        )

    @web.authenticated  # also checked in prepare; says so to jupyter-server
    @tus_errors
    async def head(self, upload_id: str) -> None:
        if self.draft is not None:
            await ietf.answer_offset(self, upload_id)
            return
        self.raise_refusal()
        info = self._head_info or await self.current_info(upload_id)
        self.set_header("Cache-Control", "no-store")
        self.set_upload_headers(info)
        if info.size is not None:
            self.set_header("Upload-Length", str(info.size))
        else:
            self.set_header("Upload-Defer-Length", "1")
        if info.metadata:
            self.set_header("Upload-Metadata", protocol.format_metadata(info.metadata))
        if info.is_partial:
            self.set_header("Upload-Concat", "partial")
        elif info.is_final:
            urls = " ".join(self.upload_url(p) for p in info.partial_uploads)
            self.set_header("Upload-Concat", f"final;{urls}")
        self.set_status(200)
        self.finish()

    @web.authenticated  # also checked in prepare; says so to jupyter-server
    @tus_errors
    async def patch(self, upload_id: str) -> None:
        if self.draft is not None:
            await ietf.append(self, upload_id)
            return
        self.raise_refusal()
        info = await self.body.commit(park=True)
        self.set_upload_headers(info)
        self.set_status(204)
        self.finish()

    @web.authenticated  # also checked in prepare; says so to jupyter-server
    @tus_errors
    async def delete(self, upload_id: str) -> None:
        self.raise_refusal()
        await self.manager.terminate_upload(upload_id, self.request_context())
        self.set_status(204)
        self.finish()

    @web.authenticated  # also checked in prepare; says so to jupyter-server
    @tus_errors
    async def get(self, upload_id: str) -> None:
        if self.draft is not None:  # the draft's GET retrieves the offset, as HEAD
            await ietf.answer_offset(self, upload_id)
            return
        self.raise_refusal()
        # the record, and the file opened (never a FIFO, never through a symlink): off
        # the loop, in one hop
        info, reader = await self._run(self._open_for_get, upload_id)
        remaining = info.size or 0
        with reader:
            filetype = info.metadata.get("filetype", "").lower()
            if not _MIME.match(filetype):
                filetype = mimetypes.guess_type(info.filename)[0] or "application/octet-stream"
            disposition = "inline" if filetype in INLINE_TYPES else "attachment"
            quoted = urllib.parse.quote(info.filename)
            self.set_header("Content-Type", filetype)
            self.set_header("Content-Length", str(info.size or 0))
            self.set_header("X-Content-Type-Options", "nosniff")
            self.set_header(
                "Content-Disposition",
                f"{disposition}; filename=\"{quoted}\"; filename*=UTF-8''{quoted}",
            )
            # each read off the loop: a disk read, or a network read from a bucket
            while remaining and (block := await self._run(reader.read, min(READ_BLOCK, remaining))):
                remaining -= len(block)
                self.write(block)
                await self.flush()
        if remaining:  # the file shrank while it was sent: never a short, "complete" body
            self.log.warning("upload %s: its file changed while it was sent", upload_id)
            self.request.connection.close()
            return
        self.finish()

    def _open_for_get(self, upload_id: str) -> tuple[FileInfo, Any]:
        info = self.manager.get_complete_info(upload_id)
        return info, self.manager.get_reader(upload_id)


def _nothing(upload_id: str, reports: Reports) -> None:
    """The work of a DELETE's lock hop: the lock alone."""


def handlers() -> list[tuple[str, type[TusHandler]]]:
    return [
        (r"api/tus/uploads/?", UploadsHandler),
        (r"api/tus/uploads/(?P<upload_id>[^/]+)/?", UploadHandler),
    ]
