"""A real JupyterHub (PyPI) with configurable-http-proxy (npm) on 127.0.0.1, one user
``alice`` (DummyAuthenticator with a password) whose single-user server
(SimpleLocalProcessSpawner, ``jupyterhub-singleuser --allow-root``) runs the extension.

configurable-http-proxy is installed by npm into ``tests/hub/.node`` (git-ignored) the
first time it is needed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from ..servers import free_port

HERE = Path(__file__).parent
NODE_DIR = HERE / ".node"
CHP_VERSION = "5"
CHP = NODE_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
BIN = Path(sys.executable).parent

USER = "alice"
PASSWORD = "tus-hub-password"
# Tus-Max-Size of alice's server: the 413 refusals ask for more than this.
MAX_SIZE = 64 * 1024 * 1024


def poll(what: str, check: Callable[[], Any], timeout: float, log: Callable[[], str] = str) -> Any:
    """Call ``check`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout} s\n{log()}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def chp_command() -> list[str]:
    """configurable-http-proxy from npm, installed into tests/hub/.node when missing."""
    if not CHP.exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed to install configurable-http-proxy for the hub tests"
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(NODE_DIR),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                f"configurable-http-proxy@{CHP_VERSION}",
            ],
            check=True,
            timeout=600,
        )
    assert CHP.exists(), f"npm did not install {CHP}"
    return [str(CHP)]


@dataclass
class Hub:
    """The running hub; ``url`` is the proxy's public address (``http://127.0.0.1:p/``)."""

    workdir: Path
    port: int
    admin_token: str
    proc: subprocess.Popen | None = None
    user_token: str = ""
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "jupyterhub.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def user_url(self) -> str:
        return f"{self.url}user/{USER}/"

    @property
    def endpoint(self) -> str:
        return self.user_url + "api/tus/uploads"

    @property
    def home(self) -> Path:
        """alice's home: her server's root_dir (staging in ``.tus`` below it)."""
        return self.workdir / "home" / USER

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""

    def user_model(self) -> dict[str, Any]:
        r = self.api("GET", f"users/{USER}")
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def server_ready(self) -> bool:
        server = self.user_model().get("servers", {}).get("")
        return bool(server and server.get("ready"))

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        """The hub's REST API as the test's admin service."""
        headers = {"Authorization": f"token {self.admin_token}", **kw.pop("headers", {})}
        return requests.request(
            method, f"{self.url}hub/api/{path}", headers=headers, timeout=30, **kw
        )


def hub_config(workdir: Path, port: int, admin_token: str, chp: list[str]) -> str:
    api_port, hub_port = free_port(), free_port()
    singleuser = str(BIN / "jupyterhub-singleuser")
    db = f"sqlite:///{workdir / 'jupyterhub.sqlite'}"
    secret, pid = str(workdir / "cookie_secret"), str(workdir / "jupyterhub.pid")
    homes = str(workdir / "home" / "{username}")
    return f"""
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = {chp!r}
c.JupyterHub.db_url = {db!r}
c.JupyterHub.cookie_secret_file = {secret!r}
c.JupyterHub.pid_file = {pid!r}
c.JupyterHub.cleanup_servers = True
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {PASSWORD!r}
c.Authenticator.allowed_users = {{{USER!r}}}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r}
c.Spawner.ip = "127.0.0.1"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = ["--allow-root", "--TusApp.max_size={MAX_SIZE}"]
c.Spawner.environment = {{"JUPYTER_PLATFORM_DIRS": "1"}}
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
c.JupyterHub.services = [{{"name": "tus-test", "api_token": {admin_token!r}}}]
c.JupyterHub.load_roles = [
    {{
        "name": "tus-test",
        "scopes": ["admin:users", "admin:servers", "tokens"],
        "services": ["tus-test"],
    }}
]
"""


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, chp_command: list[str]) -> Iterator[Hub]:
    """JupyterHub behind configurable-http-proxy, alice's server running with the
    extension, and an API token for alice created through the hub's API."""
    workdir = tmp_path_factory.mktemp("hub")
    h = Hub(workdir=workdir, port=0, admin_token=secrets.token_hex(24))
    config = workdir / "jupyterhub_config.py"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("JUPYTER_TUS_DIR", None)

    since = 0  # where this attempt's part of the log begins

    def port_taken() -> bool:
        with open(h.log_path, "rb") as f:
            f.seek(since)
            return b"already in use" in f.read().lower()

    def hub_up() -> bool:
        if h.proc.poll() is not None or port_taken():
            return True  # told apart below
        try:
            return h.api("GET", "").status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            return False

    try:
        # The ports free_port() gave (the proxy's two, the hub's) may be taken by the time
        # they are bound (a busy machine): then the hub exits, or goes on without its
        # proxy; it is started again on other ports.
        for attempt in range(3):
            h.port = free_port()
            config.write_text(hub_config(workdir, h.port, h.admin_token, chp_command))
            since = h.log_path.stat().st_size if h.log_path.exists() else 0
            with open(h.log_path, "ab") as log:
                h.proc = subprocess.Popen(
                    [str(BIN / "jupyterhub"), "-f", str(config)],
                    cwd=workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            poll("the hub answering through the proxy", hub_up, 60, h.log)
            if h.proc.poll() is None and not port_taken():
                break
            if attempt == 2 or not port_taken():
                raise RuntimeError(f"jupyterhub exited with {h.proc.returncode}\n{h.log()}")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(h.proc.pid, signal.SIGKILL)  # the hub and its proxy
            h.proc.wait()
        r = h.api("POST", f"users/{USER}")
        assert r.status_code in (201, 409), (r.status_code, r.text, h.log())
        r = h.api("POST", f"users/{USER}/server")
        assert r.status_code in (201, 202), (r.status_code, r.text, h.log())

        poll("alice's server ready", h.server_ready, 90, h.log)
        r = h.api("POST", f"users/{USER}/tokens", json={"note": "jupyter-tus hub test"})
        assert r.status_code == 201, (r.status_code, r.text, h.log())
        h.user_token = r.json()["token"]
        yield h
    finally:
        with contextlib.suppress(requests.RequestException):
            h.api("DELETE", f"users/{USER}/server")
        stop_process(h.proc)
