"""Shared fixtures: an in-process jupyter server with the extension (pytest-jupyter),
and a thin tus client over its ``jp_fetch``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from dataclasses import dataclass

import pytest
from tornado.httpclient import HTTPResponse

from .backends import backend_bucket, backend_fixture  # noqa: F401 (fixtures)
from .s3server import s3_env, s3_server  # noqa: F401 (fixtures)

# The fixtures above are registered here, once for every module: a session fixture
# imported into several modules would be set up once per module (a SeaweedFS each).

TUS = {"Tus-Resumable": "1.0.0"}
OFFSET_TYPE = {"Content-Type": "application/offset+octet-stream"}


@pytest.fixture
def tus_config() -> dict:
    """Override in a test module to set TusApp traits."""
    return {}


@pytest.fixture
def jp_server_config(tus_config):
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_tus": True}},
        "TusApp": tus_config,
    }


def encode_metadata(metadata: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in metadata.items())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def creation_headers(
    size: int | None, metadata: dict | None, headers: dict | None, with_body: bool
) -> dict:
    """The headers of a creation POST: length (or deferred), metadata, body type."""
    h = dict(headers or {})
    if size is None:
        h.setdefault("Upload-Defer-Length", "1")
    else:
        h.setdefault("Upload-Length", str(size))
    if metadata:
        h["Upload-Metadata"] = encode_metadata(metadata)
    if with_body:
        h.update(OFFSET_TYPE)
    return h


@dataclass
class TusClient:
    """Raw tus requests against the test server; never raises on an error status."""

    fetch: object
    base_url: str

    async def request(
        self, method: str, upload_id: str | None = None, headers=None, body=None, **kw
    ) -> HTTPResponse:
        parts = ["api", "tus", "uploads"] + ([upload_id] if upload_id else [])
        merged = {**TUS, **(headers or {})}
        merged = {k: v for k, v in merged.items() if v is not None}
        if body is None and method in ("POST", "PATCH"):
            body = b""
        return await self.fetch(
            *parts,
            method=method,
            headers=merged,
            body=body,
            raise_error=False,
            allow_nonstandard_methods=True,
            **kw,
        )

    async def create(
        self, size: int | None, metadata: dict | None = None, headers=None, body=None
    ) -> HTTPResponse:
        h = creation_headers(size, metadata, headers, with_body=body is not None)
        return await self.request("POST", headers=h, body=body)

    async def create_id(self, size: int | None, metadata: dict | None = None, **kw) -> str:
        r = await self.create(size, metadata, **kw)
        assert r.code == 201, r.body
        return r.headers["Location"].rstrip("/").rsplit("/", 1)[-1]

    async def patch(self, upload_id: str, offset: int, data: bytes, headers=None):
        h = {**OFFSET_TYPE, "Upload-Offset": str(offset), **(headers or {})}
        return await self.request("PATCH", upload_id, headers=h, body=data)

    async def head(self, upload_id: str, headers=None) -> HTTPResponse:
        return await self.request("HEAD", upload_id, headers=headers)


@pytest.fixture
def tus(jp_fetch, jp_base_url) -> TusClient:
    return TusClient(jp_fetch, jp_base_url)


@pytest.fixture
def tus_app(jp_serverapp):
    return next(iter(jp_serverapp.extension_manager.extension_apps["jupyter_tus"]))


@pytest.fixture
def staging(jp_root_dir):
    return jp_root_dir / ".tus"


@pytest.fixture
def server_process(tmp_path):
    """A real ``jupyter server`` process with the extension, on a fresh root_dir."""
    from .servers import JupyterProcess

    root = tmp_path / "root"
    root.mkdir()
    server = JupyterProcess(root)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def events(jp_serverapp) -> list[dict]:
    """The upload events the server emits during the test."""
    from jupyter_tus.manager import EVENT_SCHEMA_ID

    received: list[dict] = []

    async def listener(logger, schema_id, data):
        received.append(dict(data))

    jp_serverapp.event_logger.add_listener(schema_id=EVENT_SCHEMA_ID, listener=listener)
    return received


async def wait_events(events: list[dict], n: int) -> None:
    """Wait until ``n`` events arrived (a poll with a deadline)."""
    deadline = time.monotonic() + 10
    while len(events) < n:
        assert time.monotonic() < deadline, events
        await asyncio.sleep(0.01)
