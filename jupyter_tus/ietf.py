"""The IETF draft "Resumable Uploads for HTTP" on the tus endpoint, beside tus 1.0.0.

Source: draft-ietf-httpbis-resumable-upload (httpwg/http-extensions): interop version
8 is drafts -09 and later ("The current interop version is 8", appendix "Draft
Version Identification"; its change log bumps it "Since -08"), version 6 is drafts -04
and -05. Which one a request speaks is its ``Upload-Draft-Interop-Version`` header, as
tusd decides it (``pkg/handler/unrouted_handler.go``: ``usesIETFDraft``, which speaks
versions 3-6); a request without it is tus. Clients: tus-js-client's ``protocol:
'ietf-draft-05'`` and Apple's URLSession send 6; the draft's current text is 8.

What both versions share, and what this module implements on top of the tus handlers
(``handlers.py`` calls in here from one branch per verb; the store, the locks, the
destinations, landing, events and hooks are those of tus):

- creation: ``POST {base_url}api/tus/uploads`` with ``Upload-Complete: ?1`` (the body is
  the whole file: its length is ``Content-Length``) or ``?0`` (more follows), and
  ``Upload-Length`` when known. 201 with ``Location`` (path-only, the tus upload URL).
  The file's name comes from ``Content-Disposition`` (``filename*`` before
  ``filename``, RFC 6266), its type from ``Content-Type``; the folder and ``overwrite``
  from the creation URL's query (``?path=data&overwrite=1``) or, as tus-js-client sends
  them, from ``Upload-Metadata``;
- append: ``PATCH`` with ``Content-Type: application/partial-upload``,
  ``Upload-Offset`` and ``Upload-Complete``; 204;
- offset retrieval: ``HEAD`` (or ``GET``) of the upload: 204 with ``Upload-Offset``,
  ``Upload-Complete``, ``Upload-Length`` when known, ``Upload-Limit``,
  ``Cache-Control: no-store``;
- cancellation: ``DELETE``, as tus's termination;
- ``Upload-Limit`` (an RFC 9651 dictionary: ``max-size``, ``max-append-size``,
  ``max-age``, or ``expires`` in version 6; ``min-size=0`` when there is no limit) on
  every answer to a draft request, OPTIONS included;
- refusals as RFC 9457 problems (``application/problem+json``): an offset that is not
  the upload's is 409 ``mismatching-upload-offset`` with ``expected-offset``,
  ``provided-offset``, ``Upload-Offset`` and ``Upload-Complete: ?0``; lengths that
  disagree are 400 ``inconsistent-upload-length`` (version 8); an append to a finished
  upload is 400 ``completed-upload`` (version 6); any other refusal is an
  ``about:blank`` problem with the status of the tus table and its message as
  ``detail``;
- the interim ``104 Upload Resumption Supported`` answer (with ``Location``,
  ``Upload-Limit`` and ``Upload-Draft-Interop-Version``) as soon as a creation's upload
  exists, before its body is read, when ``c.TusApp.send_104`` is set. tornado has no
  API for 1xx answers: ``send_interim`` writes it on the connection's stream
  (HTTP/1.1 only), before anything else of the answer.

Where the store decides differently from the draft's letter (docs/protocol.md, "IETF
resumable uploads draft"): an upload whose length is known is complete, and lands, as
soon as its last byte arrives, whatever ``Upload-Complete`` said (the answer then says
``Upload-Complete: ?1``, as the draft lets a server do); an empty append with
``Upload-Complete: ?1`` to such an upload is answered again as the final answer (204,
``?1``).
"""

from __future__ import annotations

import dataclasses
import email.message
import json
import re
import time
from typing import TYPE_CHECKING, Any

import http_sf
from tornado import web

from . import protocol
from .protocol import OFFSET_CONTENT_TYPE, SF_INTEGER_MAX, InvalidHeader, WrongContentType
from .store import (
    FileInfo,
    LandingFailed,
    LandingRefused,
    StoreError,
    UploadNotPatchable,
    UploadTooLarge,
)

if TYPE_CHECKING:
    from .handlers import TusHandler, UploadsHandler

INTEROP_HEADER = "Upload-Draft-Interop-Version"
INTEROP_VERSIONS = (8, 6)  # newest first
PARTIAL_UPLOAD = "application/partial-upload"
PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPES = "https://iana.org/assignments/http-problem-types#"
_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")


@dataclasses.dataclass
class Draft:
    """One request that speaks the draft: its interop version, and what it asked."""

    version: int
    # Upload-Complete of a creation or append: True when this body ends the file.
    complete: bool | None = None
    # An empty append with Upload-Complete: ?1 to an upload that is complete already:
    # answered as its final answer again (draft -09+, "Upload Append": "The server can
    # choose to replay the final response").
    replay: FileInfo | None = None


def requested(headers: Any) -> Draft | None:
    """The draft a request speaks (``Upload-Draft-Interop-Version: 8`` or ``6``), or
    None: a request without it (or with a version this server does not speak) is tus."""
    value = headers.get(INTEROP_HEADER)
    if value is None:
        return None
    value = value.strip()
    return Draft(int(value)) if value in ("8", "6") else None


def unsupported(headers: Any) -> str | None:
    """The refusal's message for a request naming an interop version we do not speak
    (and no tus version), or None."""
    value = headers.get(INTEROP_HEADER)
    if value is None or requested(headers) is not None:
        return None
    return (
        f"{INTEROP_HEADER} {value.strip()[:20]!r} is not supported; this server speaks the"
        " resumable-upload draft's interop versions 8 and 6, and tus (Tus-Resumable: 1.0.0)"
    )


# ---------------------------------------------------------------- header fields


def _item(headers: Any, name: str) -> Any:
    """The bare value of an RFC 9651 Item header (parameters dropped), or None when
    the header is missing or is no Item: the draft says such a value "MUST cause the
    entire header field to be ignored"."""
    value = headers.get(name)
    if value is None:
        return None
    try:
        return http_sf.parse(value.encode("latin-1"), tltype="item")[0]
    except (http_sf.StructuredFieldError, UnicodeEncodeError, ValueError):
        return None


def sf_integer(headers: Any, name: str) -> int | None:
    """A non-negative Integer field (``Upload-Offset``, ``Upload-Length``); None when
    missing or anything else."""
    value = _item(headers, name)
    return value if type(value) is int and value >= 0 else None


def sf_boolean(headers: Any, name: str) -> bool | None:
    """A Boolean field (``Upload-Complete: ?1`` / ``?0``); None when missing or else."""
    value = _item(headers, name)
    return value if type(value) is bool else None


def upload_limit(config: Any, draft: Draft, info: FileInfo | None = None) -> str:
    """``Upload-Limit``: ``max-size`` (``max_size``), ``max-append-size``
    (``max_chunk_size``), and for an unfinished upload with an expiry its remaining
    lifetime in whole seconds (``max-age``; version 6 called it ``expires``). With no
    limit at all, ``min-size=0`` ("it MUST use min-size=0 instead of an empty header
    value")."""
    limits: dict[str, int] = {}
    if config.max_size:
        limits["max-size"] = config.max_size
    if config.max_chunk_size:
        limits["max-append-size"] = config.max_chunk_size
    if info is not None and info.expires is not None and not info.is_complete:
        key = "max-age" if draft.version >= 8 else "expires"
        limits[key] = max(0, int(info.expires - time.time()))
    limits = {k: v for k, v in limits.items() if v <= SF_INTEGER_MAX} or {"min-size": 0}
    return http_sf.ser(limits)


def disposition_filename(value: str | None) -> str | None:
    """The file name of a ``Content-Disposition`` (RFC 6266): ``filename*`` (RFC 8187,
    ``UTF-8''na%C3%AFve.txt``) before ``filename``; a plain ``filename`` sent as raw
    UTF-8 is read as UTF-8. None without one. Raises InvalidHeader for a
    ``filename*`` that does not decode in its charset."""
    if not value:
        return None
    message = email.message.Message()
    message["Content-Disposition"] = value
    plain = extended = None
    for name, param in (message.get_params(header="content-disposition") or [])[1:]:
        if name.lower() != "filename":
            continue
        if isinstance(param, tuple):  # filename*: (charset, language, %-decoded text)
            charset, _, text = param
            try:
                extended = text.encode("latin-1").decode(charset or "utf-8")
            except (UnicodeError, LookupError):
                raise InvalidHeader(
                    f"Content-Disposition filename* is not valid {charset[:20]!r} text"
                ) from None
        else:
            try:
                plain = param.encode("latin-1").decode("utf-8")
            except UnicodeError:
                plain = param
    return extended or plain or None


def representation_metadata(handler: TusHandler) -> dict[str, str]:
    """The upload's metadata (the tus keys, for ``destinations``) from a draft
    creation: ``Upload-Metadata`` if sent (tus-js-client sends it), then the creation
    URL's ``path`` and ``overwrite`` query arguments, then the representation's own
    fields: ``filename`` from ``Content-Disposition``, ``filetype`` from
    ``Content-Type`` (not ``application/partial-upload``, tus-js-client's body type)."""
    headers = handler.request.headers
    metadata = protocol.parse_metadata(headers.get("Upload-Metadata"))
    for key in ("path", "overwrite"):
        value = handler.get_query_argument(key, None)
        if value is not None:
            metadata[key] = value
    filename = disposition_filename(headers.get("Content-Disposition"))
    if filename is not None:
        metadata["filename"] = filename
    content_type = headers.get("Content-Type")
    if content_type is not None:
        media = content_type.split(";")[0].strip().lower()
        if not _MEDIA_TYPE.match(media):
            raise InvalidHeader(f"Content-Type {content_type[:60]!r} is not a media type")
        if media not in (PARTIAL_UPLOAD, OFFSET_CONTENT_TYPE):
            metadata["filetype"] = media
    return metadata


def _body_length(handler: TusHandler) -> int | None:
    """The request body's length: ``Content-Length``, 0 without a body, None for a
    chunked body (known only at its end)."""
    length = handler.body_length()
    if length is not None:
        return length
    chunked = "chunked" in handler.request.headers.get("Transfer-Encoding", "").lower()
    return None if chunked else 0


# ---------------------------------------------------------------- problems


class Problem(web.HTTPError):
    """A refusal with one of the draft's problem types (RFC 9457), answered as
    ``application/problem+json`` with its members and header fields. ``TYPES`` maps an
    interop version to the problem type URI it defines (a version without one gets
    ``about:blank``)."""

    STATUS = 400
    TYPES: dict[int, str] = {}
    TITLE = ""

    def __init__(
        self,
        draft: Draft,
        detail: str,
        members: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(self.STATUS, detail)
        self.detail = detail
        self.problem_type = self.TYPES.get(draft.version)
        self.members = members or {}
        self.headers = headers or {}


class MismatchingOffset(Problem):
    """``Upload-Offset`` is not the upload's offset: 409, ``Upload-Offset`` (the
    right one) and ``Upload-Complete: ?0`` ("Upload Append", "Mismatching Offset")."""

    STATUS = 409
    TYPES = dict.fromkeys(INTEROP_VERSIONS, PROBLEM_TYPES + "mismatching-upload-offset")
    TITLE = "Mismatching Upload Offset"

    def __init__(self, draft: Draft, expected: int, provided: int) -> None:
        super().__init__(
            draft,
            f"the upload is at offset {expected}, the request starts at {provided}",
            {"expected-offset": expected, "provided-offset": provided},
            {"Upload-Offset": str(expected), "Upload-Complete": "?0"},
        )


class InconsistentLength(Problem):
    """Two lengths of one upload that disagree (``Upload-Length``, ``Content-Length``
    with ``Upload-Complete: ?1``, the length recorded before): 400 ("Inconsistent
    Length", version 8; version 6 says 400 without a type)."""

    TYPES = {8: PROBLEM_TYPES + "inconsistent-upload-length"}
    TITLE = "Inconsistent Upload Length Values"

    def __init__(self, draft: Draft, detail: str, offset: int | None = None) -> None:
        headers = {"Upload-Complete": "?0"}
        if offset is not None:
            headers["Upload-Offset"] = str(offset)
        super().__init__(draft, detail, headers=headers)


class CompletedUpload(Problem):
    """An append to an upload that is complete: 400 (version 6 types it
    ``completed-upload``; version 8 has no type for it)."""

    TYPES = {6: PROBLEM_TYPES + "completed-upload"}
    TITLE = "Upload Is Completed"


def write_error(handler: TusHandler, status_code: int, **kwargs: Any) -> None:
    """An error answer to a draft request: an RFC 9457 problem. A ``Problem`` brings
    its type, members and header fields; any other refusal is ``about:blank`` with the
    status's reason phrase as ``title`` and the one-line message as ``detail``."""
    exc_info = kwargs.get("exc_info")
    exc = exc_info[1] if exc_info else None
    reason = handler._reason
    if isinstance(exc, Problem):
        for name, value in exc.headers.items():
            handler.set_header(name, value)
        body: dict[str, Any] = {"type": exc.problem_type or "about:blank"}
        body["title"] = exc.TITLE if exc.problem_type else reason
        body.update(status=status_code, detail=exc.detail, **exc.members)
    else:
        if isinstance(exc, web.HTTPError):
            detail = exc.get_message() or reason
        else:
            detail = "Unhandled error"
        body = {"type": "about:blank", "title": reason, "status": status_code, "detail": detail}
    if exc is not None and handler._error_code is None:
        handler._error_code = type(exc).__name__
    handler.log.warning("wrote error: %r", body["detail"])
    handler.finish(json.dumps(body), set_content_type=PROBLEM_JSON)


# ---------------------------------------------------------------- answers


def set_default_headers(handler: TusHandler, draft: Draft) -> None:
    """On every answer to a draft request (errors too): the interop version it speaks,
    ``Upload-Limit``, and on OPTIONS ``Accept-Patch`` (drafts -10 and -11 ask for it)."""
    handler.set_header(INTEROP_HEADER, str(draft.version))
    handler.set_header(protocol.UPLOAD_LIMIT_HEADER, upload_limit(handler.tus_config, draft))
    if handler.request.method == "OPTIONS":
        handler.set_header("Accept-Patch", PARTIAL_UPLOAD)


def set_upload_state(handler: TusHandler, draft: Draft, info: FileInfo) -> None:
    """The state of an upload as the draft tells it: ``Upload-Offset``,
    ``Upload-Complete`` (?1 once complete), ``Upload-Length`` when known,
    ``Upload-Limit`` with its remaining lifetime, and ``Jupyter-Tus-Path`` once landed."""
    handler.set_header("Upload-Offset", str(info.offset))
    handler.set_header("Upload-Complete", "?1" if info.is_complete else "?0")
    if info.size is not None:
        handler.set_header("Upload-Length", str(info.size))
    handler.set_header(protocol.UPLOAD_LIMIT_HEADER, upload_limit(handler.tus_config, draft, info))
    handler.set_landed_path(info)


def send_interim(handler: TusHandler, draft: Draft, location: str) -> bool:
    """Write ``104 Upload Resumption Supported`` (``Location``, ``Upload-Limit``,
    ``Upload-Draft-Interop-Version``) on the connection now, if ``send_104`` is set;
    whether it was written.

    tornado has no API for informational answers: the bytes go straight onto the
    HTTP/1.1 connection's ``IOStream``, which keeps writes in order, so the 104
    precedes tornado's own ``100 (Continue)`` (written once ``prepare`` returns) and
    the final answer. Only on HTTP/1.1 (1xx do not exist in HTTP/1.0), only while
    nothing of the answer was written."""
    if not handler.tus_config.send_104 or handler._headers_written:
        return False
    request = handler.request
    stream = getattr(request.connection, "stream", None)
    if request.version != "HTTP/1.1" or stream is None or stream.closed():
        return False
    fields = {
        INTEROP_HEADER: str(draft.version),
        "Location": location,
        protocol.UPLOAD_LIMIT_HEADER: upload_limit(handler.tus_config, draft),
    }
    lines = ["HTTP/1.1 104 Upload Resumption Supported"]
    lines += [f"{name}: {value}" for name, value in fields.items()]
    text = "\r\n".join(lines) + "\r\n\r\n"
    if any("\r" in v or "\n" in v for v in fields.values()):
        return False
    try:
        stream.write(text.encode("latin-1"))
    except UnicodeEncodeError:
        return False
    return True


# ---------------------------------------------------------------- creation


async def prepare_creation(handler: UploadsHandler) -> None:
    """``UploadsHandler.prepare_request`` for a draft POST: check the lengths, create
    the upload (hooks, destination, quotas as for tus), announce it (104), and start
    streaming the body into it. Raises InvalidHeader (400), InconsistentLength (400),
    UploadTooLarge (413), or what creation raises (403, 409, 507, ...)."""
    draft: Draft = handler.draft
    headers = handler.request.headers
    complete = sf_boolean(headers, "Upload-Complete")
    if complete is None:
        raise InvalidHeader(
            "a creation by the resumable-upload draft needs Upload-Complete: ?1 (the body"
            " is the whole file) or ?0 (more follows in PATCH requests)"
        )
    if "Upload-Concat" in headers:
        raise InvalidHeader(
            "Upload-Concat (concatenation) is a tus extension: send Tus-Resumable: 1.0.0"
            f" without {INTEROP_HEADER}"
        )
    draft.complete = complete
    size = sf_integer(headers, "Upload-Length")
    body = _body_length(handler)
    if complete and body is not None:
        if size is not None and size != body:
            raise InconsistentLength(
                draft,
                f"Upload-Length is {size}, but the whole file (Upload-Complete: ?1) is"
                f" a body of {body} bytes",
            )
        size = body
    if size is not None and body is not None and body > size:
        raise InconsistentLength(
            draft, f"a body of {body} bytes is longer than Upload-Length {size}"
        )
    max_size = handler.tus_config.max_size
    if size is not None and max_size and size > max_size:
        raise UploadTooLarge(
            f"an upload of {size} bytes is over the largest upload this server takes,"
            f" {max_size} bytes (Upload-Limit max-size)"
        )
    metadata = representation_metadata(handler)
    if body != 0:
        handler.check_body_size()  # before the upload exists: nothing to clean up
    info = await handler.manager.create_upload(size, metadata, handler.request_context())
    handler._info = info
    location = handler.upload_url(info.id)
    # From here on every answer, errors too, says where the upload is.
    handler._error_headers["Location"] = location
    handler._error_headers.update(handler.landed_path_header(info))
    send_interim(handler, draft, location)
    if body == 0:
        return
    checksum = handler.parse_checksum()
    if info.is_complete:  # an empty file, complete at creation
        handler._takes_no_body = True  # a chunked body may still bring bytes
        return
    await handler.lock(info.id)
    handler.body.start(await handler.open_writer(info.id, 0, checksum))


async def create(handler: UploadsHandler) -> None:
    """``UploadsHandler.post`` for a draft POST, once the body is in: commit it, end
    the upload if ``Upload-Complete: ?1`` asks so, and answer 201 with ``Location``,
    the upload's state and limits."""
    draft: Draft = handler.draft
    info = handler._info
    if info is not None:
        handler.set_header("Location", handler.upload_url(info.id))
    handler.raise_refusal()
    if handler.body.writer is not None:
        info = await handler.body.commit()
    elif info.is_complete:  # an empty file is complete at creation
        if info.path and handler.manager.landed_relative(info) is None:
            if info.landing_error:
                handler.manager.refused(info)
                raise LandingRefused(info.landing_error)
            raise LandingFailed(
                "the empty file could not be created at its destination yet; the server retries"
            )
        handler.manager.completed(info)
    info = await _complete_if_asked(handler, draft, info)
    set_upload_state(handler, draft, info)
    handler.set_status(201)
    handler.finish()


async def _complete_if_asked(handler: TusHandler, draft: Draft, info: FileInfo) -> FileInfo:
    """After a body with ``Upload-Complete: ?1``: the upload must now be complete. A
    deferred length (a chunked body) is declared as the bytes received, which lands
    the file; a known length not reached is InconsistentLength (the bytes stay: the
    upload goes on from its offset). The caller holds the lock."""
    if not draft.complete or info.is_complete:
        return info
    if info.size is not None:
        raise InconsistentLength(
            draft,
            f"Upload-Complete: ?1, but {info.offset} of the upload's {info.size} bytes arrived",
            offset=info.offset,
        )
    manager = handler.manager
    if manager.quotas.enabled:
        await handler._run(manager.check_length, info, info.offset)
    try:
        info = await handler._run(manager.declare_length, info.id, info.offset)
    except LandingRefused:
        manager.refused(await handler._run(manager.get_info, info.id))
        raise
    except StoreError:
        manager.refresh(info.id)
        raise
    if info.is_complete:
        manager.completed(info)
    else:
        manager.track(info)
    return info


# ---------------------------------------------------------------- the upload


async def prepare_upload_request(handler: TusHandler, upload_id: str) -> None:
    """``UploadHandler.prepare_request`` for a draft request: an append (PATCH) is
    checked and its body started; offset retrieval (HEAD, GET) and cancellation
    (DELETE) take the upload's lock. Version 6 refuses the fields it forbids there
    (draft -05: HEAD without ``Upload-Offset``, ``Upload-Complete``, ``Upload-Length``;
    DELETE without the first two) with 400."""
    draft: Draft = handler.draft
    method = handler.request.method
    if method == "PATCH":
        await prepare_append(handler, draft, upload_id)
        return
    if draft.version == 6 and method in ("HEAD", "GET", "DELETE"):
        forbidden = ("Upload-Offset", "Upload-Complete")
        if method != "DELETE":
            forbidden += ("Upload-Length",)
        sent = [name for name in forbidden if name in handler.request.headers]
        if sent:
            raise InvalidHeader(f"a {method} of an upload may not carry {', '.join(sent)}")
    if method in ("HEAD", "GET", "DELETE"):
        await handler.lock(upload_id)


async def prepare_append(handler: TusHandler, draft: Draft, upload_id: str) -> None:
    """Check an append before its body: ``Content-Type: application/partial-upload``
    (else 415), ``Upload-Offset`` (400 when missing, 409 ``MismatchingOffset`` when it
    is not the upload's), ``Upload-Complete`` (required by version 8; version 6 takes
    its absence as ?0), the lengths it implies (``InconsistentLength``); a length
    learnt now is declared when the write commits. Then start streaming the body."""
    headers = handler.request.headers
    media = headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media != PARTIAL_UPLOAD:
        raise WrongContentType(f"an append (PATCH) has Content-Type: {PARTIAL_UPLOAD}")
    offset = sf_integer(headers, "Upload-Offset")
    if offset is None:
        raise InvalidHeader("missing Upload-Offset (a non-negative integer)")
    complete = sf_boolean(headers, "Upload-Complete")
    if complete is None:
        if draft.version >= 8:
            raise InvalidHeader("missing Upload-Complete (?1 if this body ends the file, else ?0)")
        complete = False
    draft.complete = complete
    handler.check_body_size()
    checksum = handler.parse_checksum()
    stated = sf_integer(headers, "Upload-Length")
    body = _body_length(handler)
    await handler.lock(upload_id)
    info = await handler.current_info(upload_id)
    if info.is_final:
        raise UploadNotPatchable(f"upload {upload_id} is a final concatenation: it takes no data")
    if info.is_complete:
        if complete and body == 0 and offset == info.offset:
            draft.replay = info
            return
        raise CompletedUpload(draft, f"upload {upload_id} is complete: it takes no more data")
    if offset != info.offset:
        raise MismatchingOffset(draft, info.offset, offset)
    if complete and body is not None:
        whole = offset + body
        if stated is not None and stated != whole:
            raise InconsistentLength(
                draft,
                f"Upload-Length is {stated}, but this body (Upload-Complete: ?1) ends the"
                f" file at {whole} bytes",
                offset,
            )
        stated = whole
    declares = None
    if stated is not None:
        if info.size is not None and stated != info.size:
            raise InconsistentLength(
                draft, f"the upload's length is {info.size}, this request says {stated}", offset
            )
        if stated < offset:
            raise InconsistentLength(
                draft, f"{offset} bytes already arrived, more than the length {stated}", offset
            )
        if info.size is None:
            # Declared when the write commits (a write refused or cut short declares
            # nothing); refused now if it cannot be declared at all.
            handler.check_length(stated, offset)
            if handler.manager.quotas.enabled:
                await handler._run(handler.manager.check_length, info, stated)
            info, declares = dataclasses.replace(info, size=stated), stated
    if info.size is not None and body is not None and offset + body > info.size:
        raise InconsistentLength(
            draft,
            f"a body of {body} bytes at offset {offset} goes past the upload's length of"
            f" {info.size}",
            offset,
        )
    handler.body.start(await handler.open_writer(upload_id, offset, checksum, length=declares))


async def append(handler: TusHandler, upload_id: str) -> None:
    """``UploadHandler.patch`` for a draft append, once the body is in: commit it, end
    the upload if asked, answer 204 with its state."""
    draft: Draft = handler.draft
    handler.raise_refusal()
    if draft.replay is not None:
        info = draft.replay
    else:
        info = await handler.body.commit()
        info = await _complete_if_asked(handler, draft, info)
    set_upload_state(handler, draft, info)
    handler.set_status(204)
    handler.finish()


async def answer_offset(handler: TusHandler, upload_id: str) -> None:
    """Offset retrieval (HEAD or GET): 204 with the upload's state, never cached. An
    upload whose bytes all arrived without their commit is settled first (as tus's
    HEAD does), so ``Upload-Complete: ?1`` always means landed."""
    draft: Draft = handler.draft
    handler.raise_refusal()
    info = await handler.current_info(upload_id)
    handler.set_header("Cache-Control", "no-store")
    set_upload_state(handler, draft, info)
    handler.set_status(204)
    handler.finish()
