"""Hooks: an administrator's Python callables at three points of an upload's life.

tusd's hooks (``pre-create``, ``post-finish``, ``pre-terminate``) and @tus/server's
``onUploadCreate``/``onUploadFinish``, in Jupyter's style: traitlets of ``TusApp``
(``c.TusApp.pre_create = my_function``, or an import string ``"mymodule.my_function"``),
each a plain function or an ``async def``:

- ``pre_create(info, request_context)``: before an upload is created. Raise
  ``HookRefused(status, message)`` to refuse it (nothing is created; the client gets
  that status and message). Change ``info.metadata`` in place, or return a new
  metadata dict, to change where the file lands (``filename``, ``path``, ``overwrite``)
  or what it carries; the destination is then checked by the usual rules.
- ``post_finish(info)``: after an upload finished and its file landed (``info.path``,
  absolute). Runs in the background, the client's answer does not wait for it; an
  error is logged and counted, and never undoes the landing.
- ``pre_terminate(info, request_context)``: before a DELETE removes an upload; raise
  ``HookRefused`` to keep it.

A plain function runs in a worker thread (it may block: walk folders, read files); an
``async def`` runs on the server's event loop (it must not block). Any exception other
than ``HookRefused`` in a ``pre_`` hook is logged and answered 500 (``HookFailed``),
nothing created or removed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from .store import FileInfo, StoreError

# Request headers a hook never sees: credentials.
SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-xsrftoken"})


class HookRefused(Exception):
    """Raised by a ``pre_create`` or ``pre_terminate`` hook to refuse the request:
    the client gets ``status`` (400-599; default 403) and ``message``, one line in plain
    words, as every refusal of the server (``{"message": ...}``)."""

    def __init__(self, status: int = 403, message: str = "refused by the server's policy") -> None:
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"HookRefused status must be 400-599, got {status!r}")
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def reason(self) -> str | None:
        """The reason phrase for a status without a standard one (e.g. 499)."""
        return None if self.status in http.client.responses else "Refused"


class HookFailed(StoreError):
    """A hook raised something other than HookRefused, or returned what it may not:
    a fault of the server's configuration (500), logged with its traceback."""


@dataclasses.dataclass(frozen=True)
class RequestContext:
    """Who asks, handed to ``pre_create`` and ``pre_terminate``.

    ``username``: jupyter-server's ``current_user.username`` (its identity provider:
    the token's user on a single-user server, the hub's user behind JupyterHub).
    ``remote_ip``: the client's address as tornado has it (the proxy's X-Real-Ip /
    X-Forwarded-For when ``ServerApp.trust_xheaders``). ``headers``: the request's
    headers, names in canonical case, without credentials (``Authorization``,
    ``Cookie``, ``Proxy-Authorization``, ``X-XSRFToken``). ``method``: ``POST`` or
    ``DELETE``. ``root_dir``: the server's root directory (absolute), where the
    metadata's ``path`` starts."""

    username: str
    remote_ip: str | None
    headers: Mapping[str, str]
    method: str
    root_dir: str


@dataclasses.dataclass(frozen=True)
class Hooks:
    """The configured hooks (each None when unset)."""

    pre_create: Callable[..., Any] | None = None
    post_finish: Callable[..., Any] | None = None
    pre_terminate: Callable[..., Any] | None = None


def is_async(hook: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(
        getattr(hook, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


async def call(hook: Callable[..., Any], *args: Any) -> Any:
    """Call ``hook(*args)``: an ``async def`` on the event loop, a plain function in a
    worker thread (an awaitable it returns is awaited on the loop)."""
    if is_async(hook):
        return await hook(*args)
    result = await asyncio.get_running_loop().run_in_executor(None, lambda: hook(*args))
    if inspect.isawaitable(result):
        result = await result
    return result


def new_metadata(draft: FileInfo, result: Any) -> dict[str, str]:
    """The metadata a ``pre_create`` hook leaves: the dict it returned, else the draft's
    (changed in place or not). HookFailed unless every key and value is a string."""
    metadata = draft.metadata if result is None else result
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise HookFailed(
            "the server's pre_create hook returned metadata that is not a dict of strings"
        )
    return dict(metadata)
