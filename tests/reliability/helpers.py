"""Shared pieces of the reliability tests: seeds, a requests-based tus client for a
real server process, and the invariants a staging directory must always satisfy."""

from __future__ import annotations

import base64
import json
import os
import random
from pathlib import Path

import requests

from ..conftest import (  # noqa: F401 - shared with the tests of this folder
    OFFSET_TYPE,
    TUS,
    creation_headers,
    encode_metadata,
    file_sha256,
    sha256,
)
from ..servers import JupyterProcess
from ..servers import wait_until as wait_for  # noqa: F401 - the shared poll

HERE = Path(__file__).parent
SERVER_FAULTS = HERE / "server_faults.py"
DEFAULT_SEED = 20261125


def seed_from_env() -> int:
    """``TUS_SEED`` replays a run; without it the fixed default keeps `make test`
    reproducible (``make torture`` passes a fresh one)."""
    value = os.environ.get("TUS_SEED", "")
    return int(value) if value.strip() else DEFAULT_SEED


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def figures_path() -> Path | None:
    value = os.environ.get("TUS_FIGURES")
    return Path(value) if value else None


def record_figures(section: str, figures: dict) -> None:
    """Append one section of figures to ``$TUS_FIGURES`` (JSON lines), if set."""
    path = figures_path()
    if path is not None:
        with open(path, "a") as f:
            f.write(json.dumps({"section": section, **figures}) + "\n")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def rng_bytes(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def server(root: Path, *args: str, env: dict | None = None, **kw) -> JupyterProcess:
    """A real server process with only jupyter_tus loaded (quick restarts) and the
    crash points of server_faults.py available through ``TUS_CRASH``."""
    return JupyterProcess(root, args=[f"--config={SERVER_FAULTS}", *args], env=env, **kw)


class Client:
    """Raw tus requests against a JupyterProcess; never raises on an error status."""

    def __init__(self, proc: JupyterProcess, timeout: float = 60) -> None:
        self.proc = proc
        self.timeout = timeout
        self.session = requests.Session()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.proc.port}"

    def url(self, uid_or_location: str | None = None) -> str:
        if uid_or_location is None:
            return self.proc.endpoint
        if uid_or_location.startswith("/"):
            return self.origin + uid_or_location
        return f"{self.proc.endpoint}/{uid_or_location}"

    def request(self, method: str, uid: str | None = None, headers=None, **kw):
        h = {**TUS, **self.proc.auth, **(headers or {})}
        h = {k: v for k, v in h.items() if v is not None}
        kw.setdefault("timeout", self.timeout)
        return self.session.request(method, self.url(uid), headers=h, **kw)

    def create(self, size: int | None, metadata=None, headers=None, data=None):
        h = creation_headers(size, metadata, headers, with_body=data is not None)
        return self.request("POST", headers=h, data=data)

    @staticmethod
    def uid(response) -> str:
        return response.headers["Location"].rstrip("/").rsplit("/", 1)[-1]

    def create_id(self, size, metadata=None, **kw) -> str:
        r = self.create(size, metadata, **kw)
        assert r.status_code == 201, (r.status_code, r.text)
        return self.uid(r)

    def patch(self, uid: str, offset: int, data, headers=None, **kw):
        h = {**OFFSET_TYPE, "Upload-Offset": str(offset), **(headers or {})}
        return self.request("PATCH", uid, headers=h, data=data, **kw)

    def head(self, uid: str):
        return self.request("HEAD", uid)

    def delete(self, uid: str):
        return self.request("DELETE", uid)


# ---------------------------------------------------------------------- invariants


def staging_problems(staging: Path) -> list[str]:
    """What must never be found in a staging directory once recovery has run."""
    problems = []
    if not staging.is_dir():
        return problems
    for entry in staging.iterdir():
        name = entry.name
        if name == ".jupyter-tus-store":  # the store's mark on its folder
            continue
        if name.endswith((".tmp", ".corrupt")):
            problems.append(f"left over: {name}")
        elif name.endswith(".info"):
            try:
                info = json.loads(entry.read_text())
            except (OSError, ValueError) as exc:
                problems.append(f"unreadable info {name}: {exc}")
                continue
            uid = name[: -len(".info")]
            data = staging / uid
            if info.get("is_complete") and info.get("path"):
                if data.exists():
                    problems.append(f"{uid} complete but its data is still staged")
                if not os.path.exists(info["path"]):
                    problems.append(f"{uid} complete but nothing at its destination")
            elif not data.exists():
                problems.append(f"{uid} unfinished but its data file is gone")
            if info.get("unverified_from") is not None:
                problems.append(f"{uid} still has unverified bytes after recovery")
        elif name.endswith(".lock"):
            if not (staging / f"{name[:-5]}.info").exists():
                problems.append(f"lock without info {name}")
        elif not (staging / f"{name}.info").exists():
            problems.append(f"data without info {name}")
    return problems


def workspace_files(root: Path, staging_name: str = ".tus") -> dict[str, Path]:
    """Every regular file under root_dir outside the staging directory."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root and staging_name in dirnames:
            dirnames.remove(staging_name)
        for name in filenames:
            path = Path(dirpath, name)
            found[path.relative_to(root).as_posix()] = path
    return found
