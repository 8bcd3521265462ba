"""``jupyter tus upload`` through a real JupyterHub and configurable-http-proxy, to
``/user/alice/`` with a hub API token from ``$JUPYTERHUB_API_TOKEN`` (as on a hub's
terminal or a pipeline): a folder's tree, a killed run resumed, --parallel 4, a wrong
token, a taken name, and a proxy in front of the hub limiting bodies to 1 MiB."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
import requests

from ..servers import BIN, wait_until
from ..test_cli import BodyLimitProxy, file_sha256, json_lines, write_random
from ..wire import Relay
from .conftest import MAX_SIZE, USER, Hub

MiB = 1024 * 1024
TIMEOUT = 120


@pytest.fixture
def env(tmp_path, hub: Hub) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "JUPYTER_TOKEN"}
    e.update(
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTERHUB_API_TOKEN=hub.user_token,
    )
    return e


def user_url(base: str) -> str:
    return f"{base}user/{USER}/"


def tus(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "jupyter-tus"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_a_folder_lands_with_its_tree_through_the_hub(hub: Hub, env, tmp_path) -> None:
    src = tmp_path / "run42"
    digests = {
        "meta.json": write_random(src / "meta.json", 300, 1),
        "frames/f1.bin": write_random(src / "frames" / "f1.bin", 2 * MiB + 1, 2),
        "frames/f2.bin": write_random(src / "frames" / "f2.bin", 5 * MiB, 3),
    }
    r = tus(env, "upload", str(src), "--server", hub.user_url, "--to", "cli", "--json")
    assert r.returncode == 0, r.stderr
    assert {o["path"] for o in json_lines(r.stdout)} == {f"cli/run42/{n}" for n in digests}
    for name, digest in digests.items():
        assert file_sha256(hub.home / "cli" / "run42" / name) == digest
    assert hub.user_token not in r.stdout + r.stderr


def test_killed_and_resumed_through_the_hub(hub: Hub, env, tmp_path) -> None:
    """SIGKILL at 20 MiB of 48; the run again sends only the rest (plus at most one
    chunk) through the proxy, to the same upload, and the file lands whole."""
    size, chunk = 48 * MiB, 8 * MiB
    digest = write_random(tmp_path / "k.bin", size, 4)
    with Relay(hub.port) as relay:
        args = ["upload", str(tmp_path / "k.bin"), "--to", "cli", "--chunk-size", "8M"]
        args += ["--server", user_url(relay.url), "--json"]
        first = relay.new_epoch()
        relay.hold_at(20 * MiB)
        proc = subprocess.Popen(
            [str(BIN / "jupyter-tus"), *args], env=env, stdout=subprocess.PIPE, text=True
        )
        wait_until(lambda: relay.held.is_set() or proc.poll() is not None, TIMEOUT, "the hold")
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=TIMEOUT)
        relay.release()
        wait_until(lambda: relay.active[first] == 0, TIMEOUT, "the connections to close")
        headers = {"Authorization": f"token {hub.user_token}"}
        uploads = requests.get(hub.endpoint, headers=headers, timeout=TIMEOUT).json()["uploads"]
        (left,) = [u for u in uploads if u["destination"] == "cli/k.bin"]
        assert left["state"] == "uploading" and left["offset"] > 0
        second = relay.new_epoch()
        r = tus(env, *args)
        assert r.returncode == 0, r.stderr
        assert relay.sent[second] <= size - left["offset"] + chunk + 64 * 1024
    (landed,) = json_lines(r.stdout)
    assert landed["id"] == left["id"] and landed["path"] == "cli/k.bin"
    assert file_sha256(hub.home / "cli" / "k.bin") == digest


def test_parallel_through_the_hub(hub: Hub, env, tmp_path) -> None:
    digest = write_random(tmp_path / "par.bin", 40 * MiB + 7, 5)
    r = tus(
        env,
        *("upload", str(tmp_path / "par.bin"), "--to", "cli", "--parallel", "4"),
        *("--chunk-size", "4M", "--server", hub.user_url, "--json"),
    )
    assert r.returncode == 0, r.stderr
    (landed,) = json_lines(r.stdout)
    assert file_sha256(hub.home / "cli" / "par.bin") == digest
    info = json.loads((hub.home / ".tus" / f"{landed['id']}.info").read_text())
    assert info["is_final"] and len(info["partial_uploads"]) == 4


def test_wrong_token_and_taken_name_through_the_hub(hub: Hub, env, tmp_path) -> None:
    write_random(tmp_path / "t.bin", 1000, 6)
    wrong = {**env, "JUPYTERHUB_API_TOKEN": "0123456789abcdef-wrong"}
    r = tus(wrong, "upload", str(tmp_path / "t.bin"), "--server", hub.user_url)
    assert r.returncode == 1
    assert "refused the token" in r.stderr
    assert "0123456789abcdef-wrong" not in r.stdout + r.stderr
    none = {k: v for k, v in env.items() if k != "JUPYTERHUB_API_TOKEN"}
    r = tus(none, "upload", str(tmp_path / "t.bin"), "--server", hub.user_url)
    assert r.returncode == 1
    assert "refused the token" in r.stderr or "asks for a login" in r.stderr, r.stderr
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as f:
        f.truncate(MAX_SIZE + 1)  # sparse: refused before a byte goes
    r = tus(env, "upload", str(huge), "--server", hub.user_url)
    assert r.returncode == 1 and "more than the server takes" in r.stderr, r.stderr
    (hub.home / "taken").mkdir(exist_ok=True)
    (hub.home / "taken" / "t.bin").write_bytes(b"mine")
    r = tus(env, "upload", str(tmp_path / "t.bin"), "--server", hub.user_url, "--to", "taken")
    assert r.returncode == 1
    assert "already exists" in r.stderr and "--overwrite" in r.stderr
    assert (hub.home / "taken" / "t.bin").read_bytes() == b"mine"


def test_a_1_mib_proxy_in_front_of_the_hub(hub: Hub, env, tmp_path) -> None:
    """nginx-like: 413 to bodies over 1 MiB; the chunks halve and the file lands."""
    digest = write_random(tmp_path / "big.bin", 6 * MiB, 7)
    with BodyLimitProxy(hub.port, limit=MiB) as proxy:
        r = tus(
            env,
            *("upload", str(tmp_path / "big.bin"), "--to", "cli", "--chunk-size", "8M"),
            *("--server", user_url(proxy.url)),
        )
        assert r.returncode == 0, r.stderr
        assert proxy.refused >= 1 and "413" in r.stderr
    assert file_sha256(hub.home / "cli" / "big.bin") == digest
