"""A real ``jupyter server`` (or ``jupyter lab``) process for tests that need one:
restarts, kills, real clients in other processes, browsers.

    with JupyterProcess(root_dir) as server:
        requests.get(server.url + "api/status", headers=server.auth)
        server.kill(); server.start()   # same port, token and root_dir
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

BIN = Path(sys.executable).parent
TUS_JS_CLIENT = Path(__file__).resolve().parent.parent / "labextension/node_modules/tus-js-client"


def run_tus_js(
    script: Path, server: JupyterProcess, src: Path, timeout: float, **options: object
) -> subprocess.CompletedProcess:
    """Run a Node ``script`` that uploads ``src`` to ``server`` with tus-js-client (the
    lab extension's copy), given ``UPLOAD_OPTIONS`` (endpoint, token, file, filename
    metadata, then ``options``) and ``TUS_JS_CLIENT`` in its environment."""
    if not (TUS_JS_CLIENT / "package.json").exists():
        pytest.fail("labextension/node_modules is missing: `make test` installs it (npm ci)")
    options = {
        "endpoint": server.endpoint,
        "headers": server.auth,
        "file": str(src),
        "metadata": {"filename": src.name},
        **options,
    }
    return subprocess.run(
        ["node", str(script)],
        env={
            **os.environ,
            "TUS_JS_CLIENT": str(TUS_JS_CLIENT),
            "UPLOAD_OPTIONS": json.dumps(options),
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    """A port nothing listens on right now. Whoever binds it later may find it taken
    meanwhile (by another process of this busy machine): bind port 0 yourself when you
    can, or be ready to pick again (``JupyterProcess.start``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# JupyterLab's notification settings for the tests' labs: no news question (a toast,
# "Would you like to get notified about official Jupyter news?", that stays until
# answered) and no update check (a toast whenever PyPI has a newer JupyterLab than the
# venv's: it would come with the calendar, not with the code).
QUIET_NOTIFICATIONS = {"fetchNews": "false", "checkForUpdates": False}


def lab_settings(path: Path) -> Path:
    """``path`` made a JupyterLab user settings folder with ``QUIET_NOTIFICATIONS``, for
    a test's ``jupyter lab`` (``--LabApp.user_settings_dir``) or ``jupyter notebook``
    (``JUPYTERLAB_SETTINGS_DIR`` in its environment: Notebook 7 does not take the
    option); never the user's own settings, which tests would read and write."""
    folder = path / "@jupyterlab" / "apputils-extension"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notification.jupyterlab-settings").write_text(json.dumps(QUIET_NOTIFICATIONS))
    return path


def wait_until(
    cond: Callable[[], object], timeout: float = 30, what: str = "condition", every: float = 0.05
) -> object:
    """Poll ``cond`` until it returns something true (and return it); fail after
    ``timeout`` seconds. The tests' one way to wait for a state they cannot be told of."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class JupyterProcess:
    """One server process on 127.0.0.1; ``start()`` again after ``kill()``/``stop()``
    brings it back on the same port, token and root_dir."""

    def __init__(
        self,
        root_dir: str | os.PathLike,
        *,
        app: str = "server",
        base_url: str = "/",
        port: int | None = None,
        token: str | None = None,
        args: list[str] | tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        log_path: str | os.PathLike | None = None,
    ) -> None:
        self.root_dir = Path(root_dir)
        self.app = app
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.port = port or free_port()
        # A port of free_port() may be taken by the time the server binds it: until the
        # first start succeeds, such a port is replaced (a given one never is).
        self._port_is_ours = not port
        self.token = token if token is not None else secrets.token_hex(16)
        self.args = list(args)
        self.env = env or {}
        self.log_path = (
            Path(log_path) if log_path else self.root_dir.parent / f"{app}-{self.port}.log"
        )
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base_url}"

    @property
    def endpoint(self) -> str:
        return self.url + "api/tus/uploads"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def command(self) -> list[str]:
        return [
            str(BIN / "jupyter"),
            self.app,
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--port-retries=0",
            f"--ServerApp.root_dir={self.root_dir}",
            f"--ServerApp.base_url={self.base_url}",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.allow_root=True",
            *self.args,
        ]

    def start(self, timeout: float = 60) -> JupyterProcess:
        env = {**os.environ, "JUPYTER_PLATFORM_DIRS": "1", **self.env}
        env.pop("JUPYTER_TUS_DIR", None)
        for attempt in range(3):
            log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            log.close()
            try:
                self.wait_ready(timeout)
                break
            except RuntimeError:
                taken = f"The port {self.port} is already in use" in self.log()
                if not (taken and self._port_is_ours and attempt < 2):
                    raise
                self.port = free_port()
        self._port_is_ours = False  # restarts come back on this port
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                r = requests.get(self.url + "api/status", headers=self.auth, timeout=5)
                if r.status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or too busy starting up to answer
            time.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup runs, as in a crash."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> JupyterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Tests that use server processes (and browsers) instead of pytest-jupyter's in-process
# server import these two: its per-test event loop is not needed there, and must never
# adopt (then close) the event loop that Playwright's sync API runs on this thread.
@pytest.fixture
def jp_asyncio_loop() -> Iterator[None]:
    yield None


@pytest.fixture
def jp_server_cleanup() -> Iterator[None]:
    yield
