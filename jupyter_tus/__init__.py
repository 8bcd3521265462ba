"""jupyter-tus: resumable uploads (tus 1.0.0) into Jupyter's workspace."""

from __future__ import annotations

from importlib import metadata as _metadata

from .filestore import Durability, FileStore, UploadLock

# Notebook helpers (light: jupyter_server is imported only to find a running server).
from .helpers import AmbiguousName, get_info, get_reader, list_uploads, load
from .store import (
    Checksum,
    ChecksumMismatch,
    DataStore,
    FileInfo,
    OffsetMismatch,
    StoreError,
    UploadIncomplete,
    UploadLocked,
    UploadNotFound,
)

try:
    # One version source: labextension/package.json, read at build time by
    # hatch-nodejs-version into the installed distribution's metadata.
    __version__ = _metadata.version("jupyter-tus")
except _metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"

__all__ = [
    "AmbiguousName",
    "Checksum",
    "ChecksumMismatch",
    "DataStore",
    "Durability",
    "FileInfo",
    "FileStore",
    "OffsetMismatch",
    "StoreError",
    "UploadIncomplete",
    "UploadLock",
    "UploadLocked",
    "UploadNotFound",
    "UploadWidget",
    "__version__",
    "get_info",
    "get_reader",
    "list_uploads",
    "load",
]


def __getattr__(name: str) -> object:
    # UploadWidget pulls in ipywidgets/anywidget: only when asked for.
    if name == "UploadWidget":
        from .widget import UploadWidget

        return UploadWidget
    raise AttributeError(f"module 'jupyter_tus' has no attribute {name!r}")


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext jupyter_tus``: the ``%uploads`` and ``%upload`` magics."""
    from .magics import load_ipython_extension as load_magics

    load_magics(ipython)


def _jupyter_labextension_paths() -> list[dict]:
    return [{"src": "labextension", "dest": "jupyter-tus"}]


def _jupyter_server_extension_points() -> list[dict]:
    from .app import TusApp

    return [{"module": "jupyter_tus", "app": TusApp}]
