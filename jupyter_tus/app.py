"""TusApp: the jupyter-server extension: settings, routes, events, recovery, cleanup."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import PeriodicCallback
from traitlets import (
    Any,
    Bool,
    CaselessStrEnum,
    Float,
    Int,
    TraitError,
    Type,
    Unicode,
    validate,
)
from traitlets.utils.importstring import import_item

from .filestore import Durability, FileStore
from .handlers import handlers
from .helpers import STORE_ENV
from .hooks import Hooks
from .manager import EVENT_SCHEMA_ID, EVENT_SCHEMA_PATH, UploadManager
from .quotas import Quotas
from .store import DataStore, StagingRefused, StorageUnavailable
from .workspace import Workspace

DEFAULT_STAGING = ".tus"


class TusApp(ExtensionApp):
    """Resumable uploads (tus 1.0.0) into the server's workspace."""

    name = "jupyter_tus"
    description = __doc__

    store_class = Type(
        default_value=FileStore,
        klass=object,
        config=True,
        help="""The store uploads are written to: a class or its import string.
        'jupyter_tus.filestore.FileStore' (the default) stages them in staging_dir and
        lands them in the server's root_dir; 'jupyter_tus.s3store.S3Store' writes them
        into a bucket (configured with c.S3Store.*, see docs/object-storage.md). A
        subclass of FileStore is built as the file store is; any other class as
        store_class(parent=app, expiration=..., max_size=..., lock_timeout=...,
        allow_hidden=...) and must offer jupyter_tus.store.DataStore. The extensions
        the server advertises (Tus-Extension) and its checksum algorithms follow what
        the store offers.""",
    )
    staging_dir = Unicode(
        DEFAULT_STAGING,
        config=True,
        help="""Where unfinished uploads are kept (<id> data and <id>.info). A relative
        path is taken from the server's root_dir; the default, '.tus', is hidden from
        the file browser. On another filesystem than root_dir, finished files are
        copied (then renamed) instead of renamed.""",
    )
    max_size = Int(
        0,
        config=True,
        help="""Largest upload accepted, in bytes (advertised as Tus-Max-Size). 0 means no
        limit but the free disk space, which is checked when the length is known.""",
    )
    max_chunk_size = Int(
        0,
        config=True,
        help="""Largest request body, in bytes, one PATCH (or a creation with data) may
        carry; 0: no limit. Set it below the body limit of a proxy in front of the
        server (nginx's client_max_body_size defaults to 1 MiB): clients read it before
        sending, from 'Upload-Limit: max-append-size=N' and 'Jupyter-Tus-Max-Chunk-Size:
        N' on every answer. A body announced over it gets 413 before a byte is stored;
        a chunked body that grows past it keeps its first N bytes, then gets 413.""",
    )
    max_staged_size = Int(
        0,
        config=True,
        help="""Bytes all unfinished uploads in the staging folder may take together,
        each counted by its declared length (a deferred length by the bytes received
        so far); 0: no limit. A creation (or the declaration of a deferred length)
        that would go over it is refused before any byte is sent: 507, or 413 when
        the upload alone is larger. Never in the middle of a PATCH.""",
    )
    quota = Int(
        0,
        config=True,
        help="""Bytes the workspace (root_dir, on its own filesystem, without the staging
        folder) may hold once every upload under way has landed; 0: no quota. A
        creation that would go over it gets 507 (413 when the upload alone is larger),
        with the numbers; so does one whose destination's filesystem lacks the free
        space for it and for what the uploads under way still have to write there.
        Never in the middle of a PATCH.""",
    )
    quota_rescan = Float(
        60.0,
        config=True,
        help="""Seconds a measurement of the workspace's size (a walk of root_dir, for
        'quota') is reused; files landed by uploads meanwhile are added to it, files
        changed by other means are seen at the next walk.""",
    )
    expiration = Float(
        7 * 24 * 3600.0,
        config=True,
        help="""Seconds an unfinished upload is kept after its last byte arrived
        (advertised as Upload-Expires). 0 keeps unfinished uploads forever.""",
    )
    cleanup_interval = Float(
        3600.0,
        config=True,
        help="""Seconds between two sweeps that remove expired unfinished uploads and
        retry the final move of finished uploads whose move failed. 0: no sweeps.""",
    )
    durability = CaselessStrEnum(
        [d.value for d in Durability],
        default_value=Durability.COMPLETE.value,
        config=True,
        help="""When received bytes are fsynced: 'always' (at the end of every PATCH: an
        acknowledged offset survives a power cut), 'complete' (once, when the upload
        completes, before the file lands), or 'never' (scratch disks).""",
    )
    lock_wait = Float(
        20.0,
        config=True,
        help="""Seconds a request waits for an upload that another request holds. The
        holder is asked to let go at once (it keeps what it received); after this
        time the newcomer gets 423 Locked.""",
    )
    idle_timeout = Float(
        60.0,
        config=True,
        help="""Seconds a PATCH may go without receiving a byte before it is ended (its
        bytes are kept and its lock released), so a dead connection never blocks a
        resume until TCP gives up.""",
    )
    drain_limit = Int(
        16 * 1024 * 1024,
        config=True,
        help="""Largest body, in bytes, read and discarded before an error is answered.
        Proxies such as configurable-http-proxy turn an answer to a half-sent body
        into a 503; a bigger body is answered at once and its connection closed.""",
    )
    send_104 = Bool(
        False,
        config=True,
        help="""Send the interim answer '104 Upload Resumption Supported' (with Location)
        as soon as an upload created by the IETF resumable-upload draft exists, before
        its body is read, so a client can resume a creation whose connection drops.
        Off by default: browsers never show 1xx answers to scripts, Python's
        http.client (requests, urllib3) takes a 104 for the final answer, and nginx
        relays a 104 as the final answer (the real one as its body). Only to draft
        requests over HTTP/1.1.""",
    )
    recover_on_start = Bool(
        True,
        config=True,
        help="Repair what a crash left in the staging directory when the server starts.",
    )

    pre_create = Any(
        None,
        allow_none=True,
        config=True,
        help="""Called before an upload is created: pre_create(info, request_context),
        a function (run in a worker thread) or an async function (run on the event
        loop), or its import string. info is a jupyter_tus.FileInfo (size, metadata,
        is_partial, is_final); request_context a jupyter_tus.hooks.RequestContext
        (username, remote_ip, headers without credentials, method). Raise
        jupyter_tus.hooks.HookRefused(status, message) to refuse; change info.metadata
        (or return a new dict) to change the destination or the metadata, which are
        then checked as usual. Any other error answers 500 and is logged.""",
    )
    post_finish = Any(
        None,
        allow_none=True,
        config=True,
        help="""Called after an upload finished and its file landed: post_finish(info),
        info.path being where it is (absolute). A function (worker thread) or an async
        function, or its import string. Runs in the background; an error is logged
        and counted, never undoing the landing. Not called for partial uploads.""",
    )
    pre_terminate = Any(
        None,
        allow_none=True,
        config=True,
        help="""Called before a DELETE removes an upload: pre_terminate(info,
        request_context), as pre_create. Raise HookRefused(status, message) to keep
        the upload. Not called when an upload expires.""",
    )

    @validate("pre_create", "post_finish", "pre_terminate")
    def _valid_hook(self, proposal: dict) -> object:
        value = proposal["value"]
        if isinstance(value, str):
            try:
                value = import_item(value)
            except Exception as exc:
                raise TraitError(
                    f"TusApp.{proposal['trait'].name}: cannot import {proposal['value']!r}: {exc}"
                ) from exc
        if value is not None and not callable(value):
            raise TraitError(f"TusApp.{proposal['trait'].name} must be callable, got {value!r}")
        return value

    _cleanup: PeriodicCallback | None = None

    @property
    def staging_path(self) -> Path:
        return Path(self.serverapp.root_dir, os.path.expanduser(self.staging_dir)).absolute()

    def initialize_settings(self) -> None:
        root_dir = self.serverapp.root_dir
        allow_hidden = getattr(self.serverapp.contents_manager, "allow_hidden", False)
        store = self.make_store(allow_hidden)
        # Kernels started by this server inherit it: jupyter_tus.get_info() & co find
        # the store without being told.
        if isinstance(store, FileStore):
            os.environ["JUPYTER_TUS_DIR"] = str(store.directory)
            os.environ.pop(STORE_ENV, None)
        else:
            os.environ.pop("JUPYTER_TUS_DIR", None)
            cls = type(store)
            settings = store.settings() if hasattr(store, "settings") else {}
            os.environ[STORE_ENV] = json.dumps(
                {"class": f"{cls.__module__}.{cls.__qualname__}", "settings": settings}
            )
        event_logger = self.serverapp.event_logger
        event_logger.register_event_schema(EVENT_SCHEMA_PATH)
        self.manager = UploadManager(
            store,
            root_dir,
            allow_hidden=allow_hidden,
            lock_wait=self.lock_wait,
            emit=lambda data: event_logger.emit(schema_id=EVENT_SCHEMA_ID, data=data),
            log=self.log,
            hooks=Hooks(self.pre_create, self.post_finish, self.pre_terminate),
            quotas=Quotas(
                store,
                root_dir,
                max_staged_size=self.max_staged_size,
                quota=self.quota,
                rescan=self.quota_rescan,
            ),
        )
        self.settings.update(jupyter_tus_manager=self.manager, jupyter_tus_config=self)
        try:
            store.claim()
        except (StagingRefused, StorageUnavailable, OSError) as exc:
            # The endpoint stays, answering 503 with the reason, rather than vanish (404).
            self.manager.unavailable = f"uploads are unavailable: {exc}"
            # tried again by the next requests (an object store that comes up later)
            self.manager.reopen = store.claim
            self.manager.recover_on_reopen = self.recover_on_start
            self.log.error("jupyter-tus: %s", self.manager.unavailable)
            return
        if self.recover_on_start:
            self.manager.recover()
        self.manager.recount()
        self.log.info(
            "jupyter-tus: uploads staged in %s",
            getattr(store, "location", None) or getattr(store, "directory", store),
        )

    def make_store(self, allow_hidden: bool) -> DataStore:
        """The store ``store_class`` names, built with the server's settings."""
        cls = self.store_class
        if issubclass(cls, FileStore):
            return cls(
                self.staging_path,
                durability=self.durability,
                expiration=self.expiration or None,
                max_size=self.max_size or None,
                lock_timeout=self.lock_wait,
                workspace=Workspace(self.serverapp.root_dir, allow_hidden=allow_hidden),
            )
        if self.quota:
            raise TraitError(
                "TusApp.quota measures root_dir: it works with the file store only"
                f" (TusApp.store_class is {cls.__module__}.{cls.__qualname__})"
            )
        store = cls(
            parent=self,
            expiration=self.expiration or None,
            max_size=self.max_size or None,
            lock_timeout=self.lock_wait,
            allow_hidden=allow_hidden,
        )
        if not isinstance(store, DataStore):
            raise TraitError(
                f"TusApp.store_class {cls.__module__}.{cls.__qualname__} does not offer"
                " jupyter_tus.store.DataStore"
            )
        return store

    def initialize_handlers(self) -> None:
        self.handlers.extend(handlers())

    async def _start_jupyter_server_extension(self, serverapp: object) -> None:
        if self.cleanup_interval:
            self._cleanup = PeriodicCallback(self._sweep, self.cleanup_interval * 1000)
            self._cleanup.start()

    async def _sweep(self) -> None:
        """Complete and move the uploads with all their bytes that wait for it, then
        remove expired unfinished uploads: blocking work in threads, events here."""
        if self.manager.unavailable:
            return
        loop = asyncio.get_running_loop()
        # Uploads with all their bytes first: those are completed, never expired.
        landed, refused = await loop.run_in_executor(None, self.manager.retry_landings)
        for info in landed:  # events are emitted on the event loop
            self.manager.completed(info)
        for info in refused:
            self.manager.refused(info)
        for info in await loop.run_in_executor(None, self.manager.remove_expired):
            self.manager.removed(info, "expired")
        # what other processes (kernels) did meanwhile, for the gauges
        await loop.run_in_executor(None, self.manager.recount)

    async def stop_extension(self) -> None:
        if self._cleanup is not None:
            self._cleanup.stop()
