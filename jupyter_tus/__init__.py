"""jupyter-tus: resumable uploads (tus 1.0.0) into Jupyter's workspace."""

from __future__ import annotations

from .filestore import Durability, FileStore, UploadLock
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

__version__ = "0.1.0"

__all__ = [
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
    "__version__",
]


def _jupyter_server_extension_points() -> list[dict]:
    from .app import TusApp

    return [{"module": "jupyter_tus", "app": TusApp}]
