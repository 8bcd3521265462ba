"""UploadWidget: resumable uploads from a notebook, straight to the tus endpoint.

    w = jupyter_tus.UploadWidget(path="data"); w     # a drop zone
    df = jupyter_tus.load(w.uploads[-1])            # in the next cell

The browser sends the bytes over HTTP to ``{base_url}api/tus/uploads`` with tus-js-client
(chunked, resumable, even after a page reload); the kernel only hears the id of each
finished upload and reads its :class:`~jupyter_tus.FileInfo` from the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from . import helpers
from .store import FileInfo, StoreError

log = logging.getLogger(__name__)

Callback = Callable[[FileInfo], Any]

_ESM = Path(__file__).parent / "static" / "widget.js"
if not _ESM.is_file():
    raise ImportError(
        f"the UploadWidget front end {_ESM} is not built: reinstall jupyter-tus "
        "(pip install -e . builds it) or run `npm run build:widget` in labextension/"
    )


class UploadWidget(anywidget.AnyWidget):
    """A drop zone that uploads files into the workspace with tus.

    ``path``: destination folder relative to the server's root_dir (default: the
    kernel's working directory, so ``load("name")`` finds the file); ``accept``: file
    types as for ``<input accept>``; ``multiple``; ``overwrite``: replace an existing
    file; ``chunk_size``: bytes per PATCH; ``endpoint``: another tus URL than the page's
    server. ``uploads`` lists the finished uploads (observe it with ``observe``);
    ``on_complete(fn)`` calls ``fn(info)`` for each.
    """

    _esm = _ESM

    path = traitlets.Unicode("", help="Destination folder relative to root_dir.").tag(sync=True)
    accept = traitlets.Unicode("", help="Accepted file types, e.g. '.csv,.parquet'.").tag(sync=True)
    multiple = traitlets.Bool(True, help="Allow several files at once.").tag(sync=True)
    overwrite = traitlets.Bool(False, help="Replace a file of the same name.").tag(sync=True)
    chunk_size = traitlets.Int(8 * 1024 * 1024, help="Bytes per PATCH request.").tag(sync=True)
    endpoint = traitlets.Unicode("", help="tus creation URL; '' = the page's server.").tag(
        sync=True
    )
    error = traitlets.Unicode("", help="Why uploads are not possible, as the browser saw it.")
    uploads = traitlets.List(help="FileInfo of each finished upload, oldest first.")

    def __init__(
        self,
        path: str | None = None,
        *,
        store: helpers.StoreLike = None,
        **kwargs: Any,
    ) -> None:
        if path is None:
            path = helpers.workspace_path()
        super().__init__(path=path.strip("/"), **kwargs)
        self._store = store
        self._callbacks: list[Callback] = []
        self.on_msg(self._on_message)

    def on_complete(self, callback: Callback, remove: bool = False) -> None:
        """Call ``callback(info)`` whenever an upload finishes (``remove`` to stop)."""
        if remove:
            self._callbacks.remove(callback)
        else:
            self._callbacks.append(callback)

    def _on_message(self, _widget: object, content: dict, _buffers: list) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "unavailable":
            self.error = str(content.get("message", "the tus endpoint is unreachable"))
        elif kind == "complete":
            self._completed(content)

    def _completed(self, content: dict) -> None:
        upload_id = str(content.get("id") or "")
        try:
            info = helpers.get_info(upload_id, self._store)
        except (LookupError, StoreError, OSError) as exc:
            # A kernel that cannot see the server's store (another machine): keep what
            # the browser knows.
            log.warning(
                "jupyter-tus: upload %s finished but its info is unreadable: %s", upload_id, exc
            )
            size = content.get("size")
            info = FileInfo(
                id=upload_id,
                size=size if isinstance(size, int) else None,
                offset=size if isinstance(size, int) else 0,
                metadata={"filename": str(content.get("filename") or upload_id)},
                is_complete=True,
            )
        self.uploads = [*self.uploads, info]
        for callback in list(self._callbacks):
            try:
                callback(info)
            except Exception:
                log.exception("jupyter-tus: on_complete callback %r failed", callback)
