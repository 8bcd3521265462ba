"""Shared by the notebook-side tests: a real server process and uploads through its
HTTP endpoint (never by writing the store's files by hand)."""

from __future__ import annotations

import base64
from pathlib import Path

import requests

from .servers import JupyterProcess, jp_asyncio_loop, jp_server_cleanup  # noqa: F401

TUS = {"Tus-Resumable": "1.0.0"}


def metadata_header(metadata: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in metadata.items())


def upload(
    server: JupyterProcess,
    filename: str,
    data: bytes,
    *,
    path: str = "",
    send: int | None = None,
    filetype: str | None = None,
    chunk: int = 1 << 20,
) -> str:
    """Upload ``data`` as ``filename`` into ``path`` over HTTP; stop after ``send`` bytes
    (an unfinished upload). Returns the upload id."""
    metadata = {"filename": filename}
    if path:
        metadata["path"] = path
    if filetype:
        metadata["filetype"] = filetype
    r = requests.post(
        server.endpoint,
        headers={
            **server.auth,
            **TUS,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata_header(metadata),
        },
        timeout=30,
    )
    assert r.status_code == 201, (r.status_code, r.text)
    location = r.headers["Location"]
    upload_id = location.rstrip("/").rsplit("/", 1)[-1]
    url = server.url.rstrip("/") + location if location.startswith("/") else location
    end = len(data) if send is None else send
    offset = 0
    while offset < end:
        body = data[offset : min(end, offset + chunk)]
        r = requests.patch(
            url,
            data=body,
            headers={
                **server.auth,
                **TUS,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
            timeout=60,
        )
        assert r.status_code == 204, (r.status_code, r.text)
        offset = int(r.headers["Upload-Offset"])
    return upload_id


def staging(server: JupyterProcess) -> Path:
    return Path(server.root_dir) / ".tus"
