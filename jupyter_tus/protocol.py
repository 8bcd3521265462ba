"""The tus 1.0.0 vocabulary: versions, extensions, and the codecs of its headers.

Pure functions over strings, so every rule can be tested without a server; the
handlers call them and map ``ProtocolError`` to the status each carries.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import re

from .checksums import CHECKSUM_ALGORITHMS
from .store import (
    Checksum,
    ConcaterDataStore,
    ExpiringDataStore,
    LengthDeclarableDataStore,
    TerminaterDataStore,
)

TUS_VERSION = "1.0.0"
SUPPORTED_VERSIONS = (TUS_VERSION,)
EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "concatenation",
    "checksum",
    "expiration",
)


def store_extensions(store: object) -> tuple[str, ...]:
    """The extensions a server over ``store`` advertises (Tus-Extension), in
    ``EXTENSIONS`` order: creation and creation-with-upload always; the others only
    when the store has the capability (``store``'s protocols, as tusd's composer
    decides from the store's interfaces): ``creation-defer-length``
    (LengthDeclarableDataStore), ``termination`` (TerminaterDataStore),
    ``concatenation`` (ConcaterDataStore), ``checksum`` (a non-empty
    ``checksum_algorithms``), ``expiration`` (ExpiringDataStore)."""
    has = {
        "creation": True,
        "creation-with-upload": True,
        "creation-defer-length": isinstance(store, LengthDeclarableDataStore),
        "termination": isinstance(store, TerminaterDataStore),
        "concatenation": isinstance(store, ConcaterDataStore),
        "checksum": bool(store_checksum_algorithms(store)),
        "expiration": isinstance(store, ExpiringDataStore),
    }
    return tuple(name for name in EXTENSIONS if has[name])


def store_checksum_algorithms(store: object) -> tuple[str, ...]:
    """The checksum algorithms ``store`` verifies (Tus-Checksum-Algorithm): its
    ``checksum_algorithms`` (a subset of ``checksums.CHECKSUM_ALGORITHMS``), none if
    it has no such attribute."""
    return tuple(a for a in getattr(store, "checksum_algorithms", ()) if a in CHECKSUM_ALGORITHMS)


OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
# The largest request body the server takes (``max_chunk_size``), for clients to read
# before sending: the IETF resumable-upload draft's ``Upload-Limit`` (a structured-field
# dictionary, RFC 8941: ``max-size``, ``max-append-size``), and the same number in a
# header of ours that tus clients can read without parsing a dictionary.
UPLOAD_LIMIT_HEADER = "Upload-Limit"
MAX_CHUNK_SIZE_HEADER = "Jupyter-Tus-Max-Chunk-Size"
SF_INTEGER_MAX = 999_999_999_999_999  # RFC 8941, 3.3.1: at most 15 digits

_NON_NEGATIVE = re.compile(r"^[0-9]{1,19}$")
_METADATA_KEY = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class ProtocolError(Exception):
    """A request that breaks a rule of the protocol; ``status`` says which kind."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidHeader(ProtocolError):
    status = 400


class VersionUnsupported(ProtocolError):
    status = 412


class WrongContentType(ProtocolError):
    status = 415


class MethodNotAllowed(ProtocolError):
    status = 405


class BodyTooLarge(ProtocolError):
    """A request body over the server's largest body per request (``max_chunk_size``)."""

    status = 413


def parse_non_negative(name: str, value: str | None) -> int:
    """An integer header such as ``Upload-Offset``; missing or malformed is a 400."""
    if value is None:
        raise InvalidHeader(f"missing {name} header")
    value = value.strip()
    if not _NON_NEGATIVE.match(value):
        raise InvalidHeader(f"{name} must be a non-negative integer, got {value[:40]!r}")
    return int(value)


def parse_metadata(value: str | None) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (value optional)."""
    result: dict[str, str] = {}
    if not value or not value.strip():
        return result
    for pair in value.split(","):
        parts = pair.strip().split(" ")
        if len(parts) > 2 or not parts[0]:
            raise InvalidHeader(f"Upload-Metadata pair {pair.strip()[:60]!r} is malformed")
        key = parts[0]
        if not _METADATA_KEY.match(key):
            raise InvalidHeader(f"Upload-Metadata key {key[:40]!r} is not allowed")
        if key in result:
            raise InvalidHeader(f"Upload-Metadata key {key!r} appears twice")
        try:
            raw = base64.b64decode(parts[1], validate=True) if len(parts) == 2 else b""
            result[key] = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidHeader(
                f"Upload-Metadata value of {key!r} is not base64 of UTF-8 text"
            ) from None
    return result


def format_metadata(metadata: dict[str, str]) -> str:
    return ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}" if v else k for k, v in metadata.items()
    )


def parse_concat(value: str | None) -> tuple[str, list[str]] | None:
    """``Upload-Concat``: ``partial``, or ``final;<url> <url> ...`` (URLs kept as given)."""
    if value is None:
        return None
    value = value.strip()
    if value == "partial":
        return "partial", []
    if value.startswith("final;"):
        urls = value[len("final;") :].split()
        if not urls:
            raise InvalidHeader("Upload-Concat final lists no partial uploads")
        return "final", urls
    raise InvalidHeader(f"Upload-Concat must be 'partial' or 'final;<urls>', got {value[:60]!r}")


def parse_checksum(
    value: str | None, algorithms: tuple[str, ...] = CHECKSUM_ALGORITHMS
) -> Checksum | None:
    """``Upload-Checksum: <algorithm> <base64 digest>``; ``algorithms``: those the
    store verifies (an other one, or any when there are none, is a 400)."""
    if value is None:
        return None
    parts = value.strip().split(" ")
    if len(parts) != 2:
        raise InvalidHeader("Upload-Checksum must be '<algorithm> <base64 digest>'")
    algorithm, encoded = parts[0].lower(), parts[1]
    if algorithm not in algorithms:
        raise InvalidHeader(
            f"checksum algorithm {algorithm[:20]!r} is not supported;"
            f" use one of {', '.join(algorithms)}"
            if algorithms
            else "this server verifies no checksums (no Upload-Checksum)"
        )
    try:
        digest = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidHeader("Upload-Checksum digest is not base64") from None
    return Checksum(algorithm, digest)


def format_http_date(timestamp: float) -> str:
    """``Upload-Expires`` uses the RFC 7231 date format."""
    return email.utils.formatdate(timestamp, usegmt=True)


def format_upload_limit(max_size: int | None, max_append_size: int | None) -> str | None:
    """``Upload-Limit`` (draft-ietf-httpbis-resumable-upload, "Upload-Limit"): an RFC 8941
    dictionary of integers, e.g. ``max-size=1000, max-append-size=100``; a limit that is
    unset (None or 0) or beyond a structured-field integer is left out. None when no
    limit is left."""
    members = [
        f"{key}={value}"
        for key, value in (("max-size", max_size), ("max-append-size", max_append_size))
        if value and 0 < value <= SF_INTEGER_MAX
    ]
    return ", ".join(members) or None
