"""Real clients in other processes against a real ``jupyter server`` process."""

from __future__ import annotations

import os

import requests
from tusclient import client as tus_client

from .conftest import encode_metadata, file_sha256


def test_tuspy_uploads_in_chunks(server_process, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    c = tus_client.TusClient(server_process.endpoint, headers=server_process.auth)
    uploader = c.uploader(
        str(src), chunk_size=512 * 1024, metadata={"filename": "big.bin", "path": "in"}
    )
    uploader.upload()
    landed = server_process.root_dir / "in" / "big.bin"
    assert file_sha256(landed) == file_sha256(src)


def test_restart_keeps_unfinished_upload_resumable(server_process):
    data = os.urandom(200_000)
    headers = {**server_process.auth, "Tus-Resumable": "1.0.0"}
    r = requests.post(
        server_process.endpoint,
        headers={
            **headers,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": encode_metadata({"filename": "r.bin"}),
        },
    )
    assert r.status_code == 201
    url = f"http://127.0.0.1:{server_process.port}{r.headers['Location']}"
    patch = {**headers, "Content-Type": "application/offset+octet-stream"}
    r = requests.patch(url, headers={**patch, "Upload-Offset": "0"}, data=data[:70_000])
    assert r.status_code == 204
    server_process.kill()
    server_process.start()
    r = requests.head(url, headers=headers)
    assert r.status_code == 200 and r.headers["Upload-Offset"] == "70000"
    r = requests.patch(url, headers={**patch, "Upload-Offset": "70000"}, data=data[70_000:])
    assert r.status_code == 204
    assert (server_process.root_dir / "r.bin").read_bytes() == data
