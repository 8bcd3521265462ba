"""The tus routes lift tornado's body limit for themselves only (a real server
process: the in-process test server does not apply ServerApp.max_body_size)."""

from __future__ import annotations

import json

import pytest
import requests

from .conftest import encode_metadata
from .servers import JupyterProcess

LIMIT = 1024 * 1024


@pytest.fixture
def small_limit_server(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    args = [f"--ServerApp.max_body_size={LIMIT}", f"--ServerApp.max_buffer_size={LIMIT}"]
    with JupyterProcess(root, args=args) as server:
        yield server


def test_tus_body_may_exceed_server_limit_but_other_routes_may_not(small_limit_server):
    server = small_limit_server
    data = b"q" * (3 * LIMIT)
    headers = {**server.auth, "Tus-Resumable": "1.0.0"}
    r = requests.post(
        server.endpoint,
        headers={
            **headers,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": encode_metadata({"filename": "big.bin"}),
        },
    )
    url = f"http://127.0.0.1:{server.port}{r.headers['Location']}"
    r = requests.patch(
        url,
        headers={
            **headers,
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
        data=data,
    )
    assert r.status_code == 204
    assert (server.root_dir / "big.bin").stat().st_size == len(data)

    body = json.dumps({"type": "file", "format": "text", "content": "x" * (3 * LIMIT)})
    try:
        r = requests.put(server.url + "api/contents/x.txt", headers=server.auth, data=body)
        refused = r.status_code >= 400
    except requests.RequestException:  # tornado drops the connection at the limit
        refused = True
    assert refused
    assert not (server.root_dir / "x.txt").exists()
