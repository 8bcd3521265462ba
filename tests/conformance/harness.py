"""One store contract, every store: what lets the conformance suite run the same
tests against ``FileStore`` (a staging folder under tmp_path, landing in a
workspace there) and ``S3Store`` (a fresh prefix in a bucket of a real SeaweedFS).

A test asks for the ``harness`` fixture (conftest.py) and gets one per store kind; it
never names a store.
What differs between stores (where a finished upload is, how to put a file in its
way, what the store keeps per upload) is behind ``Harness``.
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path
from typing import Any

from jupyter_tus import destinations
from jupyter_tus.filestore import FileStore
from jupyter_tus.workspace import Workspace

MiB = 1024 * 1024
# The smallest part S3 takes: the S3 store's tests use it, so that a few MiB of test
# data go through every path (parts, tails, completion) quickly.
S3_PART = 5 * MiB


class Harness:
    """What a conformance test needs to know of a store kind (see the module doc)."""

    kind = ""
    # Bytes a writer may hold before the storage has them (S3: two parts, one on its
    # way to S3 in the background while the next fills); a crash may lose at most
    # this much of a write in progress.
    unacknowledged = 0

    def __init__(self) -> None:
        self._options: dict[str, Any] = {}

    def store(self, **options: Any) -> Any:
        """A new store, claimed; ``options`` (expiration, max_size, ...) are kept for
        ``reopen``."""
        self._options = options
        store = self._make(**options)
        store.claim()
        return store

    def reopen(self) -> Any:
        """A new store object over the same storage, as after a restart."""
        return self._make(**self._options)

    def _make(self, **options: Any) -> Any:
        raise NotImplementedError

    def config(self) -> dict:
        """JSON-able settings that let another process build the same store."""
        raise NotImplementedError

    def target(self, filename: str, folder: str = "") -> str:
        """The ``FileInfo.path`` of a destination."""
        raise NotImplementedError

    def resolve(self, store: Any, metadata: dict[str, str]) -> tuple[str, bool] | None:
        """The creation-time destination check: (path, overwrite), or a refusal."""
        raise NotImplementedError

    def put(self, path: str, data: bytes) -> None:
        """Make a file (object) at a destination, as another program would."""
        raise NotImplementedError

    def read(self, path: str) -> bytes | None:
        """The bytes at a destination, None when there is nothing."""
        raise NotImplementedError

    def leftovers(self, store: Any, upload_id: str) -> list[str]:
        """What the storage still holds for an upload (files, objects, multipart
        uploads), other than a landed file."""
        raise NotImplementedError

    def fresh_staging(self) -> Any:
        """Another staging area (a folder, a prefix) no store has claimed."""
        raise NotImplementedError

    def store_at(self, staging: Any) -> Any:
        """A store (not claimed) over the staging area ``staging``."""
        raise NotImplementedError

    def plant(self, name: str, data: bytes, staging: Any = None) -> None:
        """Put something that is not the store's in a staging area (default: the
        harness's own)."""
        raise NotImplementedError

    def planted(self, name: str, staging: Any = None) -> bytes | None:
        raise NotImplementedError


class FileHarness(Harness):
    kind = "file"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__()
        self.root = tmp_path / "root"
        self.root.mkdir()
        self.staging = tmp_path / "staging"

    def _make(self, **options: Any) -> FileStore:
        return FileStore(self.staging, workspace=Workspace(self.root), **options)

    def config(self) -> dict:
        return {"kind": "file", "staging": str(self.staging), "root": str(self.root)}

    def target(self, filename: str, folder: str = "") -> str:
        return str(self.root.joinpath(*[p for p in folder.split("/") if p], filename))

    def resolve(self, store: FileStore, metadata: dict[str, str]) -> tuple[str, bool] | None:
        dest = destinations.resolve(self.root, metadata)
        return None if dest is None else (str(dest.path), dest.overwrite)

    def put(self, path: str, data: bytes) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)

    def read(self, path: str) -> bytes | None:
        return Path(path).read_bytes() if Path(path).is_file() else None

    def leftovers(self, store: FileStore, upload_id: str) -> list[str]:
        return sorted(p.name for p in self.staging.glob(f"{upload_id}*"))

    def fresh_staging(self) -> Path:
        return self.staging.with_name(self.staging.name + "-fresh")

    def store_at(self, staging: Path) -> FileStore:
        return FileStore(staging, workspace=Workspace(self.root))

    def plant(self, name: str, data: bytes, staging: Path | None = None) -> None:
        folder = staging or self.staging
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)

    def planted(self, name: str, staging: Path | None = None) -> bytes | None:
        return self.read(str((staging or self.staging) / name))


class S3Harness(Harness):
    kind = "s3"
    unacknowledged = 2 * S3_PART

    def __init__(self, server: Any, bucket: str) -> None:
        super().__init__()
        self.server = server
        self.bucket = bucket
        self.prefix = f"t-{secrets.token_hex(4)}/"
        self.client = server.client()

    def _make(self, **options: Any) -> Any:
        from jupyter_tus.s3store import S3Store

        return S3Store(
            bucket=self.bucket,
            endpoint_url=self.server.endpoint_url,
            prefix=self.prefix,
            part_size=options.pop("part_size", S3_PART),
            **options,
        )

    def config(self) -> dict:
        return {
            "kind": "s3",
            "bucket": self.bucket,
            "endpoint_url": self.server.endpoint_url,
            "prefix": self.prefix,
            "part_size": S3_PART,
            "env": self.server.env(),
        }

    def target(self, filename: str, folder: str = "") -> str:
        return "/".join([*[p for p in folder.split("/") if p], filename])

    def resolve(self, store: Any, metadata: dict[str, str]) -> tuple[str, bool] | None:
        dest = store.resolve_destination(metadata)
        return None if dest is None else (dest.path, dest.overwrite)

    def put(self, path: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + path, Body=data)

    def read(self, path: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + path)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def leftovers(self, store: Any, upload_id: str) -> list[str]:
        staged = f"{store.staging}{upload_id}"
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=staged)
        found = [o["Key"] for o in listed.get("Contents", [])]
        uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=staged)
        found += [f"multipart {u['Key']}" for u in uploads.get("Uploads", [])]
        return sorted(found)

    def fresh_staging(self) -> str:
        return f"t-{secrets.token_hex(4)}/"

    def store_at(self, staging: str) -> Any:
        from jupyter_tus.s3store import S3Store

        return S3Store(bucket=self.bucket, endpoint_url=self.server.endpoint_url, prefix=staging)

    def plant(self, name: str, data: bytes, staging: str | None = None) -> None:
        key = f"{staging or self.prefix}.tus/{name}"
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def planted(self, name: str, staging: str | None = None) -> bytes | None:
        return self._get(f"{staging or self.prefix}.tus/{name}")

    def _get(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None


# The child process of the crash tests: builds the store from the harness's config,
# writes a deterministic body, and prints how far each write() got before it returned.
CHILD = r"""
import json, os, random, sys
config = json.loads(sys.argv[1])
os.environ.update(config.get("env", {}))
from jupyter_tus.store import Checksum
if config["kind"] == "file":
    from jupyter_tus.filestore import FileStore
    from jupyter_tus.workspace import Workspace
    store = FileStore(config["staging"], workspace=Workspace(config["root"]))
else:
    from jupyter_tus.s3store import S3Store
    store = S3Store(bucket=config["bucket"], endpoint_url=config["endpoint_url"],
                    prefix=config["prefix"], part_size=config["part_size"])
data = random.Random(config["seed"]).randbytes(config["size"])
checksum = Checksum("sha256", b"\0" * 32) if config["checksum"] else None
writer = store.open_writer(config["id"], config["offset"], checksum)
piece = config["piece"]
for start in range(config["offset"], config["size"], piece):
    writer.write(data[start:start + piece])
    print(start + len(data[start:start + piece]) - config["offset"], flush=True)
    sys.stdin.readline()   # the parent says when to go on (or kills us)
"""


def child_command(harness: Harness, **settings: Any) -> list[str]:
    return [sys.executable, "-c", CHILD, json.dumps({**harness.config(), **settings})]
