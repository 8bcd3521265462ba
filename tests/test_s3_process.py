"""S3Store behind a real ``jupyter server`` process: real tus clients (tuspy in chunks;
tus-js-client under Node in chunks, resumed, in parallel), and a kill -9 of the server
in the middle of a PATCH, then a restart: the upload resumes from what S3
acknowledged and lands intact (issue 11, phase 2)."""

from __future__ import annotations

import hashlib
import json
import os
import socket

import pytest
import requests
from tusclient import client as tus_client

from tests.servers import JupyterProcess, jp_asyncio_loop, jp_server_cleanup, run_tus_js, wait_until  # noqa: F401

from .conftest import encode_metadata

MiB = 1024 * 1024
PREFIX = "me/"


def store_args(s3_server, bucket: str) -> list[str]:
    """The command line that makes a server's store S3Store on ``bucket`` under PREFIX."""
    return [
        "--TusApp.store_class=jupyter_tus.s3store.S3Store",
        f"--S3Store.endpoint_url={s3_server.endpoint_url}",
        f"--S3Store.bucket={bucket}",
        f"--S3Store.prefix={PREFIX}",
    ]


@pytest.fixture
def s3_process(s3_server, tmp_path):
    """A server process whose store is S3Store on a fresh bucket of ``s3_server``."""
    bucket = s3_server.new_bucket()
    root = tmp_path / "root"
    root.mkdir()
    args = [*store_args(s3_server, bucket), f"--S3Store.part_size={5 * MiB}"]
    server = JupyterProcess(root, args=args, env=s3_server.env())
    server.bucket = bucket
    server.s3 = s3_server.client()
    server.start()
    yield server
    server.stop()


def landed(server, path: str) -> bytes:
    return server.s3.get_object(Bucket=server.bucket, Key=PREFIX + path)["Body"].read()


def test_tuspy_uploads_into_the_bucket(s3_process, tmp_path):
    src = tmp_path / "big.bin"
    data = os.urandom(11 * MiB + 123)
    src.write_bytes(data)
    client = tus_client.TusClient(s3_process.endpoint, headers=s3_process.auth)
    uploader = client.uploader(
        str(src), chunk_size=3 * MiB, metadata={"filename": "big.bin", "path": "in"}
    )
    uploader.upload()
    assert hashlib.sha256(landed(s3_process, "in/big.bin")).digest() == (
        hashlib.sha256(data).digest()
    )
    # and GET streams it back from the bucket
    r = requests.get(uploader.url, headers=s3_process.auth)
    assert r.status_code == 200 and r.content == data


def _acknowledged_parts(server) -> int:
    """Parts S3 holds for the (one) multipart upload under way in the bucket."""
    uploads = server.s3.list_multipart_uploads(Bucket=server.bucket).get("Uploads", [])
    if not uploads:
        return 0
    u = uploads[0]
    parts = server.s3.list_parts(Bucket=server.bucket, Key=u["Key"], UploadId=u["UploadId"])
    return len(parts.get("Parts", []))


def test_kill_9_mid_patch_and_restart_lose_nothing(s3_process):
    data = os.urandom(12 * MiB + 7)
    headers = {**s3_process.auth, "Tus-Resumable": "1.0.0"}
    r = requests.post(
        s3_process.endpoint,
        headers={
            **headers,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": encode_metadata({"filename": "k.bin"}),
        },
    )
    assert r.status_code == 201
    path = r.headers["Location"]
    url = f"http://127.0.0.1:{s3_process.port}{path}"
    # A PATCH of the whole file that stops sending after 7 MiB: the server sends the
    # first part (5 MiB) to S3 and holds the rest in memory when it is killed.
    sock = socket.create_connection(("127.0.0.1", s3_process.port))
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {s3_process.auth['Authorization']}\r\n"
        "Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Upload-Offset: 0\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    sock.sendall(head.encode() + data[: 7 * MiB])
    wait_until(lambda: _acknowledged_parts(s3_process) >= 1, what="a part acknowledged by S3")
    s3_process.kill()
    sock.close()
    s3_process.start()
    r = requests.head(url, headers=headers)
    assert r.status_code == 200
    offset = int(r.headers["Upload-Offset"])
    assert offset == 5 * MiB  # the acknowledged part, adopted by recovery
    patch = {**headers, "Content-Type": "application/offset+octet-stream"}
    r = requests.patch(url, headers={**patch, "Upload-Offset": str(offset)}, data=data[offset:])
    assert r.status_code == 204, r.text
    assert r.headers["Upload-Offset"] == str(len(data))
    assert landed(s3_process, "k.bin") == data


NODE_UPLOAD = r"""
const fs = require('fs');
const o = JSON.parse(process.env.UPLOAD_OPTIONS);
const tus = require(process.env.TUS_JS_CLIENT);
// a Buffer for parallel uploads (sliced into partial uploads), else a stream
const source = o.parallel ? fs.readFileSync(o.file) : fs.createReadStream(o.file);
const upload = new tus.Upload(source, {
  endpoint: o.endpoint,
  uploadUrl: o.uploadUrl || null,
  headers: o.headers,
  chunkSize: o.chunkSize || Infinity,
  parallelUploads: o.parallel || 1,
  metadata: o.metadata,
  retryDelays: [],
  onChunkComplete(size, accepted) {
    if (o.stopAfter && accepted >= o.stopAfter) {
      upload.abort().then(() => {
        console.log(JSON.stringify({ stopped: upload.url }));
        process.exit(0);
      });
    }
  },
  onError(err) { console.error(String(err)); process.exit(1); },
  onSuccess() { console.log(JSON.stringify({ done: upload.url })); },
});
upload.start();
"""


def tus_js(server, src, tmp_path, **options) -> dict:
    """One tus-js-client (tus 1.0.0) upload under Node; what it printed last."""
    script = tmp_path / "upload.js"
    script.write_text(NODE_UPLOAD)
    done = run_tus_js(script, server, src, timeout=120, **options)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_tus_js_client_uploads_into_the_bucket(s3_process, tmp_path):
    """In chunks, stopped and resumed from the server's offset; and in parallel
    (tus-js-client's parallelUploads: partial uploads, then a final concatenation)."""
    data = os.urandom(11 * MiB + 5)
    src = tmp_path / "js.bin"
    src.write_bytes(data)
    first = tus_js(s3_process, src, tmp_path, chunkSize=3 * MiB, stopAfter=6 * MiB)
    url = first["stopped"]  # absolute
    r = requests.head(url, headers={**s3_process.auth, "Tus-Resumable": "1.0.0"})
    assert r.headers["Upload-Offset"] == str(6 * MiB)
    tus_js(s3_process, src, tmp_path, chunkSize=3 * MiB, uploadUrl=url)
    assert landed(s3_process, "js.bin") == data
    src2 = tmp_path / "parallel.bin"
    src2.write_bytes(data[::-1])
    tus_js(s3_process, src2, tmp_path, parallel=2)
    assert landed(s3_process, "parallel.bin") == data[::-1]


def test_a_bucket_missing_at_start_is_taken_once_it_exists(s3_server, tmp_path):
    """The object store not ready when the server starts (a bucket created later, as
    when MinIO or a bucket's provisioning comes up after the single-user server): the
    endpoint answers 503 naming the bucket, and the requests after the bucket exists
    start the store again, without restarting the server."""
    import secrets

    bucket = f"tus-later-{secrets.token_hex(4)}"
    root = tmp_path / "root"
    root.mkdir()
    with JupyterProcess(root, args=store_args(s3_server, bucket), env=s3_server.env()) as server:
        r = requests.options(server.endpoint, headers=server.auth)
        assert r.status_code == 503 and bucket in r.json()["message"]
        s3_server.new_bucket(bucket)
        wait_until(
            lambda: requests.options(server.endpoint, headers=server.auth).status_code == 204,
            what="the store started again",
        )
        client = tus_client.TusClient(server.endpoint, headers=server.auth)
        src = tmp_path / "a.txt"
        src.write_bytes(b"hello")
        client.uploader(str(src), metadata={"filename": "a.txt"}).upload()
    s3 = s3_server.client()
    assert s3.get_object(Bucket=bucket, Key=PREFIX + "a.txt")["Body"].read() == b"hello"


def test_without_boto3_the_endpoint_says_which_extra_to_install(tmp_path):
    """S3Store chosen where boto3 is not installed (fault injection: a sitecustomize
    that makes importing boto3 and botocore fail in the server process): the endpoint
    answers 503 naming the extra, rather than the extension failing to load (404, a
    traceback in the log)."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('boto3', 'botocore'):\n"
        "            raise ImportError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Hide())\n"
    )
    root = tmp_path / "root"
    root.mkdir()
    pythonpath = os.pathsep.join(p for p in (str(hide), os.environ.get("PYTHONPATH")) if p)
    with JupyterProcess(
        root,
        args=[
            "--TusApp.store_class=jupyter_tus.s3store.S3Store",
            "--S3Store.endpoint_url=http://127.0.0.1:9",
            "--S3Store.bucket=notebooks",
        ],
        env={"PYTHONPATH": pythonpath},
    ) as server:
        r = requests.options(server.endpoint, headers=server.auth)
        assert r.status_code == 503, r.text[:200]
        assert "pip install 'jupyter-tus[s3]'" in r.json()["message"]
