"""One description of an upload, in the same words everywhere: the JSON list the front
ends show (``GET {base_url}api/tus/uploads``), ``jupyter_tus.list_uploads()`` tables and
the ``%uploads`` magic.

Nothing here knows HTTP or a server; it reads what the store knows of an upload.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from pathlib import Path

from .store import FileInfo, UploadGone

# The states an upload can be in, as the server knows them (a front end adds its own:
# paused, retrying, failed, which only it can know).
UPLOADING = "uploading"  # created, bytes missing (some may be arriving right now)
DONE = "done"  # every byte arrived and the file is at its destination
LANDING = "landing"  # every byte arrived, the move waits for a retry (503 for a while)
REFUSED = "refused"  # every byte arrived, the destination cannot take it: bytes kept
GONE = "gone"  # it landed, and the file was moved, deleted or changed since
IN_STORE = "in the store"  # complete, without destination (a partial, or no filename)


def state(info: FileInfo, store: object | None = None) -> str:
    """One word for where an upload stands (see the constants above). ``store`` (a
    FileStore) tells a landed upload from one waiting to land or gone."""
    if not info.is_complete:
        return UPLOADING
    if not info.path:
        return IN_STORE
    if info.landing_error:
        return REFUSED
    if store is None:
        return DONE
    if store.landed_path(info) is None:
        return LANDING
    try:
        store.check_landed(info)
    except UploadGone:
        return GONE
    return DONE


def iso(timestamp: float | None) -> str | None:
    """Seconds since the epoch -> ISO 8601 in UTC (``2026-11-29T16:52:41Z``)."""
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def relative(path: str | None, root: str | os.PathLike | None) -> str | None:
    """``path`` as the file browser names it (relative to root_dir), or None when it is
    not under the root. A relative path is a store's own (S3Store: relative to its
    prefix) and stays as it is, as ``UploadManager.relative`` keeps it."""
    if path is None:
        return None
    if not os.path.isabs(path):
        return Path(path).as_posix()
    if root is None:
        return None
    with contextlib.suppress(ValueError):
        return Path(path).relative_to(root).as_posix()
    return None


def summary(info: FileInfo, store: object, root: str | os.PathLike) -> dict:
    """The JSON-ready description of one upload (no server paths: everything is
    relative to ``root``)::

        {"id", "filename", "destination" (relative, or null), "size" (bytes, null while
         deferred), "offset" (bytes), "state", "created", "last_activity", "expires"
         (ISO 8601 UTC, null when none), "landed_path" (relative, only once landed and
         unchanged), "message" (why, for refused and gone)}
    """
    current = state(info, store)
    data = {
        "id": info.id,
        "filename": info.filename,
        "destination": relative(info.path, root),
        "size": info.size,
        "offset": info.offset,
        "state": current,
        "created": iso(info.created),
        "last_activity": iso(store.last_activity(info)),
        "expires": iso(info.expires),
        "landed_path": relative(info.path, root) if current == DONE else None,
        "message": None,
    }
    if current == REFUSED:
        data["message"] = info.landing_error
    elif current == GONE:
        data["message"] = "the file was moved, deleted or changed since it landed"
    return data
