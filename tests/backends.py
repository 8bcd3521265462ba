"""The stores behind a real server in the tests, and where each keeps the bytes.

``backend`` (parametrized ``file`` and ``s3``) picks the store of the test's server:
the file store on ``jp_root_dir``, or S3Store on a fresh prefix of one bucket of the
session's SeaweedFS (tests/s3server.py, started once per run; one bucket for all, as
SeaweedFS makes a collection per bucket and its first writes take ~0.5 s).
``Backend`` answers what a test asks of the store's side without knowing which it
is: the bytes that landed at a path, a name someone else takes, what is kept of
unfinished uploads.

tests/conftest.py registers ``backend``, ``backend_bucket`` and tests/s3server.py's
fixtures for every module: a fixture imported into several modules would be a fixture
of each, a session-scoped one set up once per module (one SeaweedFS each). A test
module runs its server on the backend's store by importing ``jp_server_config``::

    from tests.backends import backend_server_config  # noqa: F401 (jp_server_config)

and a test about one store only pins it:
``@pytest.mark.parametrize("backend", ["file"], indirect=True)``.
"""

from __future__ import annotations

import functools
import secrets
from pathlib import Path

import pytest

MiB = 1024 * 1024


@functools.cache
def _client(server):  # -> botocore S3 client
    """One client per server for the tests' own requests (making one takes ~0.3 s)."""
    return server.client()


@functools.cache
def _shared_loader_factory():
    """botocore reads and parses its JSON service models anew for every session (~0.3 s
    for S3); the tests start a server (so an S3Store and its client) per test. A loader
    shared by the sessions parses them once; everything else is made per client."""
    import botocore.loaders

    return functools.cache(botocore.loaders.create_loader)


class Backend:
    """Where a store keeps what the server wrote: ``kind`` 'file' or 's3'. Paths are
    relative to root_dir (file) or to S3Store's ``prefix`` (s3: ``<space>me/``, where
    ``<space>`` is the test's own: keys in the space but outside the prefix are not the
    store's to write)."""

    def __init__(self, kind: str, root: Path, s3=None, bucket: str = "", space: str = "") -> None:
        self.kind, self.root, self.s3, self.bucket = kind, root, s3, bucket
        self.space = space
        self.prefix = f"{space}me/"
        self.client = _client(s3) if s3 is not None else None

    def config(self) -> dict:
        """The server configuration that selects this store."""
        if self.kind == "file":
            return {}
        return {
            "TusApp": {"store_class": "jupyter_tus.s3store.S3Store"},
            "S3Store": {
                "endpoint_url": self.s3.endpoint_url,
                "bucket": self.bucket,
                "prefix": self.prefix,
                "part_size": 5 * MiB,
            },
        }

    def server_config(self, tus_config: dict, server_app: dict | None = None) -> dict:
        """The test server's configuration (conftest's): the extension on, the TusApp
        traits of ``tus_config`` and the ServerApp traits of ``server_app`` added to
        ``config()``."""
        config = self.config()
        return {
            **config,
            "ServerApp": {"jpserver_extensions": {"jupyter_tus": True}, **(server_app or {})},
            "TusApp": {**config.get("TusApp", {}), **tus_config},
        }

    def landed(self, path: str) -> bytes | None:
        """The bytes at ``path``, or None if there is no file (object) there."""
        if self.kind == "file":
            file = self.root / path
            return file.read_bytes() if file.is_file() else None
        from botocore.exceptions import ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.prefix + path)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        return obj["Body"].read()

    def put(self, path: str, data: bytes) -> None:
        """Someone else writes ``path`` (a name taken before or while an upload runs);
        the file store's folders on the way are made."""
        if self.kind == "file":
            (self.root / path).parent.mkdir(parents=True, exist_ok=True)
            (self.root / path).write_bytes(data)
        else:
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + path, Body=data)

    def delete(self, path: str) -> None:
        """Someone else removes the file (object) at ``path``."""
        if self.kind == "file":
            (self.root / path).unlink()
        else:
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + path)

    def staged(self) -> list[str]:
        """What the store keeps of uploads (names under its staging area, without its
        mark and the file store's lock files; an S3 multipart upload as
        ``multipart:<key>``)."""
        if self.kind == "file":
            folder = self.root / ".tus"
            names = [p.name for p in folder.iterdir()] if folder.exists() else []
        else:
            client = self.client
            page = client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix + ".tus/")
            names = [o["Key"].rsplit("/", 1)[-1] for o in page.get("Contents", [])]
            uploads = client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix)
            names += [f"multipart:{u['Key']}" for u in uploads.get("Uploads", [])]
        return sorted(n for n in names if n != ".jupyter-tus-store" and not n.endswith(".lock"))

    def kept(self, upload_id: str) -> int:
        """How many bytes of the unfinished upload ``upload_id`` the store holds: the
        staging file's size, or the sizes of the multipart upload's parts and of the
        tail objects."""
        if self.kind == "file":
            return (self.root / ".tus" / upload_id).stat().st_size
        client = self.client
        key = f"{self.prefix}.tus/{upload_id}"
        page = client.list_objects_v2(Bucket=self.bucket, Prefix=key + ".")
        size = sum(o["Size"] for o in page.get("Contents", []) if o["Key"].endswith(".part"))
        uploads = client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        for upload in uploads.get("Uploads", []):
            if upload["Key"] == key:
                parts = client.list_parts(Bucket=self.bucket, Key=key, UploadId=upload["UploadId"])
                size += sum(p["Size"] for p in parts.get("Parts", []))
        return size

    def snapshot(self) -> list[str]:
        """Everything written anywhere a test's server could write: the files under
        root_dir's parent, and for s3 every key in the bucket (inside the prefix or
        not, the earlier tests' too) and every multipart upload."""
        top = self.root.parent
        names = sorted(str(p.relative_to(top)) for p in top.rglob("*"))
        if self.kind == "s3":
            client = self.client
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
                names += [f"s3:{o['Key']}" for o in page.get("Contents", [])]
            pages = client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket)
            for page in pages:
                names += [f"multipart:{u['Key']}" for u in page.get("Uploads", [])]
        return names


@pytest.fixture(scope="session")
def backend_bucket(s3_server) -> str:
    """The bucket every S3 backend of the run shares (each test on a prefix of its own)."""
    return s3_server.new_bucket()


@pytest.fixture(name="backend", params=["file", "s3"])
def backend_fixture(request, jp_root_dir, monkeypatch) -> Backend:
    """The store of the test's server (see the module's docstring)."""
    # The server names its store for kernels in the environment of this process:
    # restored after the test (setenv records the value to restore, absent or not).
    for name in ("JUPYTER_TUS_STORE", "JUPYTER_TUS_DIR"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    if request.param == "file":
        return Backend("file", jp_root_dir)
    server = request.getfixturevalue("s3_env")
    import botocore.session

    monkeypatch.setattr(botocore.session, "create_loader", _shared_loader_factory())
    bucket = request.getfixturevalue("backend_bucket")
    return Backend("s3", jp_root_dir, server, bucket, f"t-{secrets.token_hex(6)}/")


@pytest.fixture(name="jp_server_config")
def backend_server_config(backend, tus_config):
    """conftest's server configuration, with the store ``backend`` picks."""
    return backend.server_config(tus_config)
