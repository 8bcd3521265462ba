"""``jupyter tus upload/list/cancel`` and ``jupyter_tus.client`` against a real
``jupyter server`` process: the command run as a process (``jupyter-tus``, and once as
``jupyter tus``), killed and run again, through a counting relay and a proxy that
refuses bodies over 1 MiB.

The relay and the proxy are fault injection: they count what goes over the wire, hold
a client's bytes at a given point (so a test can kill it mid-upload without timing),
cut every connection once, answer 413 like nginx, or add a chunk-limit header.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import requests

from jupyter_tus import cli, client

from .servers import BIN, JupyterProcess, wait_until
from .wire import Relay

MiB = 1024 * 1024
BLOCK = 1 << 20
TIMEOUT = 120


# --------------------------------------------------------------------------- wire


class BodyLimitProxy:
    """An HTTP proxy (one request per connection: it adds ``Connection: close``) that
    answers 413 with an HTML page, after reading the body as nginx does, to any request
    whose body is over ``limit`` bytes, 502 to the first ``fail_patches`` PATCHes, and
    can add ``inject`` (header lines) to every answer. ``bodies``: (method,
    Content-Length) of every request; ``refused``: how many got 413."""

    def __init__(
        self, target: int, limit: int | None = None, inject: str = "", fail_patches: int = 0
    ) -> None:
        self.target = target
        self.fail_patches = fail_patches  # the first n PATCHes get a proxy's 502
        self.limit = limit
        self.inject = inject.encode()
        self.bodies: list[tuple[str, int]] = []
        self.refused = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> BodyLimitProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            data = b""
            while b"\r\n\r\n" not in data:
                more = conn.recv(65536)
                if not more:
                    return
                data += more
            head, rest = data.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            method = lines[0].split()[0].decode()
            self.bodies.append((method, length))
            failing = method == "PATCH" and self.fail_patches > 0
            if failing:
                self.fail_patches -= 1
            if failing or (self.limit is not None and length > self.limit):
                left = length - len(rest)
                while left > 0:
                    got = conn.recv(min(BLOCK, left))
                    if not got:
                        break
                    left -= len(got)
                status = b"502 Bad Gateway" if failing else b"413 Request Entity Too Large"
                self.refused += not failing
                page = b"<html><body><h1>" + status + b"</h1></body></html>"
                conn.sendall(
                    b"HTTP/1.1 "
                    + status
                    + b"\r\nContent-Type: text/html\r\n"
                    + f"Content-Length: {len(page)}\r\nConnection: close\r\n\r\n".encode()
                    + page
                )
                return
            kept = [x for x in lines[1:] if not x.lower().startswith(b"connection:")]
            with socket.create_connection(("127.0.0.1", self.target)) as up:
                up.sendall(b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n")
                up.sendall(rest)
                left = length - len(rest)
                while left > 0:
                    got = conn.recv(min(BLOCK, left))
                    if not got:
                        return
                    up.sendall(got)
                    left -= len(got)
                answer = b""
                while b"\r\n" not in answer:
                    more = up.recv(65536)
                    if not more:
                        break
                    answer += more
                status, _, after = answer.partition(b"\r\n")
                conn.sendall(status + b"\r\n" + self.inject + after)
                while more := up.recv(BLOCK):
                    conn.sendall(more)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runtime")


@pytest.fixture(scope="module")
def server(tmp_path_factory, runtime) -> JupyterProcess:
    """One server for the module (each test uploads to folders of its own); its
    runtime dir is the tests' too, so the command can find it as a running server."""
    root = tmp_path_factory.mktemp("cli") / "root"
    root.mkdir()
    proc = JupyterProcess(root, env={"JUPYTER_RUNTIME_DIR": str(runtime)})
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def env(tmp_path, runtime) -> dict[str, str]:
    """The command's environment: its own Jupyter data dir (state files), the server's
    runtime dir, no token variables."""
    e = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_TOKEN", "JUPYTERHUB_API_TOKEN")}
    e.update(
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTER_RUNTIME_DIR=str(runtime),
        JUPYTER_PLATFORM_DIRS="1",
    )
    return e


def command(*args: str) -> list[str]:
    return [str(BIN / "jupyter-tus"), *args]


def run(args: list[str], env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def upload(server: JupyterProcess, env: dict, *args: str, url: str | None = None):
    return run(
        command("upload", *args, "--server", url or server.url, "--token", server.token), env
    )


def write_random(path: Path, size: int, seed: int = 0) -> str:
    """A file of ``size`` pseudo-random bytes; its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    rng = __import__("random").Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            block = rng.randbytes(min(8 * MiB, left))
            f.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    return client.file_sha256(path)


def listing(server: JupyterProcess) -> list[dict]:
    r = requests.get(server.endpoint, headers=server.auth, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["uploads"]


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# --------------------------------------------------------------------------- tests

BODIES = pytest.mark.parametrize("bodies", ["sendfile", "httpx"])


def bodies_env(env: dict, bodies: str) -> dict:
    """PATCH bodies by sendfile (plain HTTP's default) or through httpx (https's)."""
    return {**env, "JUPYTER_TUS_SENDFILE": "1" if bodies == "sendfile" else "0"}


def test_a_folder_lands_with_its_tree_found_as_the_running_server(server, env, tmp_path):
    """`jupyter tus upload DIR` with neither --server nor --token: jupyter-server's
    list of running servers gives both. The tree is kept under --to, hidden entries
    are skipped, and each landing is printed."""
    src = tmp_path / "survey"
    digests = {
        "a.csv": write_random(src / "a.csv", 1000, 1),
        "raw/b.bin": write_random(src / "raw" / "b.bin", 3 * MiB, 2),
        "raw/deep/c.txt": write_random(src / "raw" / "deep" / "c.txt", 10, 3),
        "empty.txt": write_random(src / "empty.txt", 0, 4),
    }
    write_random(src / ".git" / "HEAD", 10)
    write_random(src / ".DS_Store", 10)
    r = run([str(BIN / "jupyter"), "tus", "upload", str(src), "--to", "in/tree"], env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    landed = server.root_dir / "in" / "tree" / "survey"
    files = sorted(p.relative_to(landed).as_posix() for p in landed.rglob("*") if p.is_file())
    assert files == sorted(digests)
    for name, digest in digests.items():
        assert file_sha256(landed / name) == digest
        assert f"-> in/tree/survey/{name}" in r.stdout
    assert "skipped 2 hidden" in r.stderr
    assert server.token not in r.stdout + r.stderr


def test_json_and_checksum(server, env, tmp_path):
    """--json: one object per landed file (id, path, size, sha256, seconds); with
    --checksum every chunk carries Upload-Checksum (the server checks it)."""
    a = write_random(tmp_path / "x" / "one.bin", 5 * MiB + 3, 5)
    b = write_random(tmp_path / "x" / "two.bin", 100, 6)
    r = upload(
        server,
        env,
        str(tmp_path / "x" / "one.bin"),
        str(tmp_path / "x" / "two.bin"),
        *("--to", "js", "--json", "--checksum", "sha256", "--chunk-size", "2M"),
    )
    assert r.returncode == 0, r.stderr
    objects = json_lines(r.stdout)
    assert [o["path"] for o in objects] == ["js/one.bin", "js/two.bin"]
    assert [o["sha256"] for o in objects] == [a, b]
    assert [o["size"] for o in objects] == [5 * MiB + 3, 100]
    assert all(isinstance(o["seconds"], float) and len(o["id"]) == 32 for o in objects)
    assert file_sha256(server.root_dir / "js" / "one.bin") == a


def test_killed_twice_then_resumed_sends_only_the_rest(server, env, tmp_path):
    """256 MiB, Ctrl-C (SIGINT) at 96 MiB, then SIGKILL 80 MiB later: each run sends at
    most what the server is missing plus one chunk (counted on the wire), the same
    upload is continued, and the file lands with the right sha256."""
    size, chunk = 256 * MiB, 32 * MiB
    src = tmp_path / "big.bin"
    digest = write_random(src, size, 7)
    args = [str(src), "--to", "resume", "--chunk-size", "32M", "--json", "--checksum", "sha256"]

    def start(relay: Relay, hold: int | None) -> tuple[subprocess.Popen, int]:
        epoch = relay.new_epoch()
        if hold is not None:
            relay.hold_at(hold)
        proc = subprocess.Popen(
            command("upload", *args, "--server", relay.url, "--token", server.token),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return proc, epoch

    def stop(relay: Relay, proc: subprocess.Popen, epoch: int, sig: int) -> int:
        wait_until(lambda: relay.held.is_set() or proc.poll() is not None, TIMEOUT, "the hold")
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=TIMEOUT)
        relay.release()
        # the server has read all the relay had; its offset is now settled
        wait_until(lambda: relay.active[epoch] == 0, TIMEOUT, "the old connections to close")
        (upload,) = [u for u in listing(server) if u["destination"] == "resume/big.bin"]
        assert upload["state"] == "uploading"
        return proc.returncode, err, upload

    with Relay(server.port) as relay:
        proc, e1 = start(relay, 96 * MiB)
        code, err, first = stop(relay, proc, e1, signal.SIGINT)
        assert code == 130, err
        assert "run the same command again" in err
        assert relay.sent[e1] >= 96 * MiB
        offset1 = first["offset"]

        proc, e2 = start(relay, 80 * MiB)
        code, err, second = stop(relay, proc, e2, signal.SIGKILL)
        assert code == -signal.SIGKILL
        assert second["id"] == first["id"]  # the same upload, continued
        assert relay.sent[e2] <= (size - offset1) + chunk + 64 * 1024
        offset2 = second["offset"]
        assert offset2 > offset1

        proc, e3 = start(relay, None)
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
        assert relay.sent[e3] <= (size - offset2) + chunk + 64 * 1024
    (landed,) = json_lines(out)
    assert landed["id"] == first["id"] and landed["path"] == "resume/big.bin"
    assert landed["sha256"] == digest
    assert file_sha256(server.root_dir / "resume" / "big.bin") == digest
    # the state entry went with the landing
    assert not list((tmp_path / "data" / "tus").glob("uploads-*.json"))


def test_parallel_joins_parts_and_sends_files_at_once(server, env, tmp_path):
    """--parallel 4: a big file as 4 partial uploads joined by concatenation (the
    landed upload is a final one of 4 parts), small files 4 at a time."""
    big = write_random(tmp_path / "p" / "big.bin", 64 * MiB + 5, 8)
    smalls = {
        f"s{i}.txt": write_random(tmp_path / "p" / f"s{i}.txt", 1000 + i, 9 + i) for i in range(6)
    }
    r = upload(
        server,
        env,
        str(tmp_path / "p"),
        "--to",
        "par",
        "--parallel",
        "4",
        "--json",
        "--chunk-size",
        "8M",
    )
    assert r.returncode == 0, r.stderr
    objects = {o["path"]: o for o in json_lines(r.stdout)}
    assert set(objects) == {"par/p/big.bin", *(f"par/p/{n}" for n in smalls)}
    assert file_sha256(server.root_dir / "par" / "p" / "big.bin") == big
    for name, digest in smalls.items():
        assert file_sha256(server.root_dir / "par" / "p" / name) == digest
    info = json.loads(
        (server.root_dir / ".tus" / f"{objects['par/p/big.bin']['id']}.info").read_text()
    )
    assert info["is_final"] and len(info["partial_uploads"]) == 4


def test_a_wrong_token_is_refused_clearly(server, env, tmp_path):
    write_random(tmp_path / "f.bin", 10)
    r = run(
        command(
            "upload",
            str(tmp_path / "f.bin"),
            "--server",
            server.url,
            "--token",
            "not-the-token-123",
        ),
        env,
    )
    assert r.returncode == 1
    assert "refused the token" in r.stderr and "--token" in r.stderr
    assert "not-the-token-123" not in r.stdout + r.stderr
    # the token from the environment is taken when --token is not given
    r = run(
        command("upload", str(tmp_path / "f.bin"), "--server", server.url, "--to", "envtok"),
        {**env, "JUPYTER_TOKEN": server.token},
    )
    assert r.returncode == 0, r.stderr
    assert (server.root_dir / "envtok" / "f.bin").exists()


def test_not_a_jupyter_tus_server(server, env, tmp_path):
    write_random(tmp_path / "f.bin", 10)
    r = upload(server, env, str(tmp_path / "f.bin"), url=server.url + "elsewhere/")
    assert r.returncode == 1
    assert "is not a jupyter-tus endpoint" in r.stderr


@pytest.mark.parametrize("parallel", ["1", "2"])
def test_a_taken_name_is_refused_and_overwrite_replaces_it(server, env, tmp_path, parallel):
    """A name that exists: exit 1 with the server's reason and the option that
    replaces it, before sending the bytes (--parallel checks first, as its final
    concatenation would only refuse at the end); the file there stays."""
    folder = server.root_dir / f"taken{parallel}"
    folder.mkdir()
    (folder / "x.bin").write_bytes(b"precious")
    digest = write_random(tmp_path / "x.bin", 20 * MiB, 10)
    with Relay(server.port) as relay:
        relay.new_epoch()
        r = upload(
            server,
            env,
            str(tmp_path / "x.bin"),
            "--to",
            folder.name,
            "--parallel",
            parallel,
            url=relay.url,
        )
        assert r.returncode == 1
        assert "already exists" in r.stderr and "--overwrite" in r.stderr
        assert relay.sent[1] < MiB  # no body went
    assert (folder / "x.bin").read_bytes() == b"precious"
    r = upload(
        server,
        env,
        str(tmp_path / "x.bin"),
        "--to",
        folder.name,
        "--parallel",
        parallel,
        "--overwrite",
    )
    assert r.returncode == 0, r.stderr
    assert file_sha256(folder / "x.bin") == digest


@BODIES
def test_a_proxy_limiting_bodies_to_1_mib(server, env, tmp_path, bodies):
    """A proxy answering 413 (HTML, after reading the body) to bodies over 1 MiB: the
    chunk size halves until bodies pass, and stays so for the rest of the run."""
    env = bodies_env(env, bodies)
    a = write_random(tmp_path / "l" / "a.bin", 5 * MiB, 11)
    b = write_random(tmp_path / "l" / "b.bin", 5 * MiB, 12)
    with BodyLimitProxy(server.port, limit=MiB) as proxy:
        r = upload(
            server,
            env,
            str(tmp_path / "l"),
            "--to",
            f"limited-{bodies}",
            "--chunk-size",
            "8M",
            url=proxy.url,
        )
        assert r.returncode == 0, r.stderr
        assert "413" in r.stderr and "a proxy" in r.stderr
        # 8 -> 4 (the creation's body), 2, 1 MiB: three refusals, none for b.bin
        assert 1 <= proxy.refused <= 3
    assert file_sha256(server.root_dir / f"limited-{bodies}" / "l" / "a.bin") == a
    assert file_sha256(server.root_dir / f"limited-{bodies}" / "l" / "b.bin") == b


@pytest.mark.parametrize(
    "header", ["Upload-Limit: max-append-size=1048576", "Jupyter-Tus-Max-Chunk-Size: 1048576"]
)
def test_the_advertised_chunk_limit_is_honoured(server, env, tmp_path, header):
    """The chunk limit the server advertises (either header) bounds every body: no
    request is sent bigger than it, so none is refused."""
    digest = write_random(tmp_path / "c.bin", 3 * MiB + 1, 13)
    with BodyLimitProxy(server.port, inject=header + "\r\n") as proxy:
        r = upload(
            server, env, str(tmp_path / "c.bin"), "--to", "advertised", "--overwrite", url=proxy.url
        )
        assert r.returncode == 0, r.stderr
    assert max(length for _, length in proxy.bodies) <= MiB
    assert file_sha256(server.root_dir / "advertised" / "c.bin") == digest


@BODIES
def test_the_network_drops_mid_upload_and_the_run_goes_on(server, env, tmp_path, bodies):
    """Every connection cut at 40 MiB: the same run backs off, asks for the offset and
    goes on; the bytes sent stay within the file plus one chunk."""
    env = bodies_env(env, bodies)
    size = 96 * MiB
    digest = write_random(tmp_path / "n.bin", size, 14)
    with Relay(server.port) as relay:
        epoch = relay.new_epoch()
        relay.cut_at(40 * MiB)
        r = upload(
            server,
            env,
            str(tmp_path / "n.bin"),
            "--to",
            f"dropped-{bodies}",
            "--chunk-size",
            "16M",
            url=relay.url,
        )
        assert r.returncode == 0, r.stderr
        assert relay.cuts == 1
        assert "retrying" in r.stderr
        assert relay.sent[epoch] <= size + 16 * MiB + 64 * 1024
    assert file_sha256(server.root_dir / f"dropped-{bodies}" / "n.bin") == digest


def test_a_name_taken_meanwhile_lands_renamed_and_says_where(server, env, tmp_path):
    """The name gets taken while the bytes travel: the file lands as 'r (1).bin' and
    the command prints that path (Jupyter-Tus-Path)."""
    digest = write_random(tmp_path / "r.bin", 24 * MiB, 15)
    with Relay(server.port) as relay:
        relay.new_epoch()
        relay.hold_at(10 * MiB)
        proc = subprocess.Popen(
            command(
                "upload",
                str(tmp_path / "r.bin"),
                "--to",
                "renamed",
                "--json",
                "--chunk-size",
                "4M",
                "--server",
                relay.url,
                "--token",
                server.token,
            ),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until(lambda: relay.held.is_set() or proc.poll() is not None, TIMEOUT, "the hold")
        (server.root_dir / "renamed").mkdir(exist_ok=True)
        (server.root_dir / "renamed" / "r.bin").write_bytes(b"someone else's")
        relay.release()
        out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    (landed,) = json_lines(out)
    assert landed["path"] == "renamed/r (1).bin" and landed["requested"] == "renamed/r.bin"
    assert file_sha256(server.root_dir / "renamed" / "r (1).bin") == digest
    assert (server.root_dir / "renamed" / "r.bin").read_bytes() == b"someone else's"


def test_list_and_cancel(server, env, tmp_path):
    """An upload left unfinished shows in `jupyter tus list` (and --json); `cancel`
    removes it on the server; cancelling it again says it is gone (exit 1)."""
    write_random(tmp_path / "u.bin", 16 * MiB, 16)
    with Relay(server.port) as relay:
        epoch = relay.new_epoch()
        relay.hold_at(5 * MiB)
        proc = subprocess.Popen(
            command(
                "upload",
                str(tmp_path / "u.bin"),
                "--to",
                "unfinished",
                "--chunk-size",
                "4M",
                "--server",
                relay.url,
                "--token",
                server.token,
            ),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: relay.held.is_set() or proc.poll() is not None, TIMEOUT, "the hold")
        proc.kill()
        proc.wait()
        relay.release()
        wait_until(lambda: relay.active[epoch] == 0, TIMEOUT, "the connections to close")
    auth = ["--server", server.url, "--token", server.token]
    r = run(command("list", *auth, "--json"), env)
    assert r.returncode == 0, r.stderr
    (mine,) = [u for u in json.loads(r.stdout) if u["destination"] == "unfinished/u.bin"]
    assert mine["state"] == "uploading" and 0 < mine["offset"] < 16 * MiB
    r = run(command("list", *auth), env)
    assert mine["id"] in r.stdout and "uploading" in r.stdout
    r = run(command("cancel", mine["id"], *auth), env)
    assert r.returncode == 0, r.stderr
    assert mine["id"] not in {u["id"] for u in listing(server)}
    r = run(command("cancel", mine["id"], *auth), env)
    assert r.returncode == 1 and mine["id"] in r.stderr
    # the state file forgot it: the next run starts a new upload and lands
    r = upload(server, env, str(tmp_path / "u.bin"), "--to", "unfinished")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("sendfile", [True, False], ids=["sendfile", "httpx-bodies"])
def test_python_api(server, tmp_path, monkeypatch, sendfile):
    """jupyter_tus.client.upload: the landed paths in order, progress through a
    callback; a taken name raises UploadFailed with what landed and what did not.
    PATCH bodies by sendfile (plain HTTP) and through httpx (what https gets)."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(client, "USE_SENDFILE", sendfile)
    sent_by = []
    original = client.Uploader.sendfile_patch
    monkeypatch.setattr(
        client.Uploader,
        "sendfile_patch",
        lambda self, *a: sent_by.append("sendfile") or original(self, *a),
    )
    name = "api-sendfile" if sendfile else "api-httpx"
    src = tmp_path / name
    a = write_random(src / "a.bin", 3 * MiB, 17)
    write_random(src / "b.txt", 10, 18)
    seen: dict[str, int] = {}
    paths = client.upload(
        [src / "a.bin", str(src / "b.txt")],
        server=server.url,
        token=server.token,
        to=name,
        progress=lambda source, done, total: seen.__setitem__(Path(source).name, done),
        chunk_size=MiB,
    )
    assert paths == [f"{name}/a.bin", f"{name}/b.txt"]
    assert bool(sent_by) == sendfile
    assert seen["a.bin"] == 3 * MiB
    assert file_sha256(server.root_dir / name / "a.bin") == a
    (src / "c.txt").write_text("new")
    with pytest.raises(client.UploadFailed) as caught:
        client.upload(src, server=server.url, token=server.token, to="")
    assert sorted(p.path for p in caught.value.landed) == [f"{name}/c.txt"]
    assert {Path(s).name for s, _ in caught.value.failures} == {"a.bin", "b.txt"}
    assert all(e.status == 409 for _, e in caught.value.failures)


def test_parse_size():
    assert cli.parse_size("8M") == 8 * MiB
    assert cli.parse_size("64MiB") == 64 * MiB
    assert cli.parse_size("1g") == 1 << 30
    assert cli.parse_size("65536") == 65536
    with pytest.raises(Exception, match="not a size"):
        cli.parse_size("lots")


def held_then_killed(
    relay: Relay, args: list[str], env: dict, hold: int, drop: bool = False
) -> None:
    """Run the command through the relay, SIGKILL it once ``hold`` bytes went (and,
    with ``drop``, lose what it had sent beyond them), and wait until the server has
    read all it will get."""
    epoch = relay.new_epoch()
    relay.hold_at(hold)
    proc = subprocess.Popen(
        command(*args, "--server", relay.url), env=env, stdout=subprocess.DEVNULL
    )
    wait_until(lambda: relay.held.is_set() or proc.poll() is not None, TIMEOUT, "the hold")
    assert proc.poll() is None
    proc.kill()
    proc.wait()
    relay.release(drop)
    wait_until(lambda: relay.active[epoch] == 0, TIMEOUT, "the connections to close")


def test_a_creation_killed_mid_body_is_found_again(server, env, tmp_path):
    """A small file goes with its creation (one POST with the bytes): killed half way
    through that POST, the command never saw the upload's URL. Run again, it finds
    the upload in the server's listing and sends only the rest, to the same upload."""
    size = 900 * 1024
    digest = write_random(tmp_path / "small.bin", size, 19)
    args = ["upload", str(tmp_path / "small.bin"), "--to", "adopt", "--token", server.token]
    with Relay(server.port) as relay:
        held_then_killed(relay, args, env, 500 * 1024, drop=True)
        (left,) = [u for u in listing(server) if u["destination"] == "adopt/small.bin"]
        assert left["state"] == "uploading" and 0 < left["offset"] < size
        epoch = relay.new_epoch()
        r = run(command(*args, "--server", relay.url, "--json"), env)
        assert r.returncode == 0, r.stderr
        assert relay.sent[epoch] <= size - left["offset"] + 64 * 1024
    (landed,) = json_lines(r.stdout)
    assert landed["id"] == left["id"]
    assert file_sha256(server.root_dir / "adopt" / "small.bin") == digest


def test_a_source_changed_since_an_interrupted_run_starts_afresh(server, env, tmp_path):
    """The file changed (size, mtime) after a run was killed: the old upload cannot be
    finished with these bytes, so a new one is made and the old one cancelled."""
    src = tmp_path / "grow.bin"
    write_random(src, 12 * MiB, 20)
    args = ["upload", str(src), "--to", "changed", "--token", server.token, "--chunk-size", "4M"]
    with Relay(server.port) as relay:
        held_then_killed(relay, args, env, 5 * MiB)
        (old,) = [u for u in listing(server) if u["destination"] == "changed/grow.bin"]
        with open(src, "ab") as f:
            f.write(b"more data")
        digest = file_sha256(src)
        r = run(command(*args, "--server", relay.url, "--json"), env)
        assert r.returncode == 0, r.stderr
    (landed,) = json_lines(r.stdout)
    assert landed["id"] != old["id"] and landed["size"] == 12 * MiB + 9
    assert file_sha256(server.root_dir / "changed" / "grow.bin") == digest
    assert old["id"] not in {u["id"] for u in listing(server)}


def test_a_server_with_max_chunk_size(tmp_path, env):
    """A real server with ``c.TusApp.max_chunk_size`` (advertised on OPTIONS, POST and
    HEAD): every body stays within it from the first request on, none is refused."""
    root = tmp_path / "root"
    root.mkdir()
    digest = write_random(tmp_path / "m.bin", 3 * MiB + 5, 21)
    with JupyterProcess(root, args=["--TusApp.max_chunk_size=1048576"]) as limited:
        with BodyLimitProxy(limited.port) as proxy:
            args = ["upload", str(tmp_path / "m.bin"), "--server", proxy.url]
            r = run(command(*args, "--token", limited.token), env)
            assert r.returncode == 0, r.stderr
        assert max(length for _, length in proxy.bodies) <= MiB
        assert file_sha256(root / "m.bin") == digest


def test_bars_on_a_terminal(server, env, tmp_path):
    """stderr a terminal: tqdm bars, one per file and a total, with MiB/s; stdout
    (a pipe here) still gets one line per landed file."""
    import fcntl
    import pty
    import struct
    import termios

    write_random(tmp_path / "t" / "one.bin", 3 * MiB, 22)
    write_random(tmp_path / "t" / "two.bin", 2 * MiB, 23)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    args = ["upload", str(tmp_path / "t"), "--to", "tty", "--chunk-size", "1M"]
    proc = subprocess.Popen(
        command(*args, "--server", server.url, "--token", server.token),
        env=env,
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    )
    os.close(follower)
    seen = b""
    with contextlib.suppress(OSError):  # EIO once the process has closed the terminal
        while chunk := os.read(leader, 65536):
            seen += chunk
    out, _ = proc.communicate(timeout=TIMEOUT)
    os.close(leader)
    assert proc.returncode == 0
    text = seen.decode(errors="replace")
    assert "total (2 files)" in text and "MiB/s" in text
    assert "one.bin" in text and "two.bin" in text
    assert "-> tty/t/one.bin" in out and "-> tty/t/two.bin" in out


def test_a_failing_gateway_is_retried(server, env, tmp_path):
    """Three PATCHes in a row answered 502 by a proxy (no tus server behind the
    answer): backed off and retried, the run lands the file."""
    digest = write_random(tmp_path / "g.bin", 6 * MiB, 24)
    with BodyLimitProxy(server.port, fail_patches=3) as proxy:
        r = upload(
            server,
            env,
            str(tmp_path / "g.bin"),
            "--to",
            "gateway",
            "--chunk-size",
            "2M",
            url=proxy.url,
        )
        assert r.returncode == 0, r.stderr
        assert "502" in r.stderr and "retrying" in r.stderr
        assert proxy.fail_patches == 0
    assert file_sha256(server.root_dir / "gateway" / "g.bin") == digest


def test_a_parallel_upload_killed_resumes_each_part(server, env, tmp_path):
    """--parallel 4 killed mid-way: each partial upload resumes from its own offset
    (read from the state file's part URLs and the server), only the missing bytes go,
    and the joined file is right."""
    size = 64 * MiB
    digest = write_random(tmp_path / "pk.bin", size, 25)
    args = ["upload", str(tmp_path / "pk.bin"), "--to", "pkill", "--parallel", "4"]
    args += ["--chunk-size", "4M", "--token", server.token]
    with Relay(server.port) as relay:
        held_then_killed(relay, args, env, 30 * MiB)
        (state,) = (tmp_path / "data" / "tus").glob("uploads-*.json")
        (entry,) = json.loads(state.read_text())["uploads"].values()
        assert len(entry["parts"]) == 4
        offsets = []
        for part in entry["parts"]:
            r = requests.head(
                server.url.rstrip("/") + part["url"],
                headers={**server.auth, "Tus-Resumable": "1.0.0"},
            )
            assert r.status_code == 200
            offsets.append(int(r.headers["Upload-Offset"]))
        assert 0 < sum(offsets) < size
        epoch = relay.new_epoch()
        r = run(command(*args, "--server", relay.url, "--json"), env)
        assert r.returncode == 0, r.stderr
        assert relay.sent[epoch] <= size - sum(offsets) + 64 * 1024
    assert file_sha256(server.root_dir / "pkill" / "pk.bin") == digest
    (landed,) = json_lines(r.stdout)
    info = json.loads((server.root_dir / ".tus" / f"{landed['id']}.info").read_text())
    assert [p.rsplit("/", 1)[-1] for p in info["partial_uploads"]] == [
        p["url"].rsplit("/", 1)[-1] for p in entry["parts"]
    ]


def test_an_unavailable_store_is_reported_with_the_servers_reason(env, tmp_path):
    """The extension loaded but its store is unavailable (here a staging folder that
    holds other files; with S3Store a missing bucket): its endpoint answers 503 with
    Tus-Resumable and the reason. The command says that reason, not that the extension
    might be missing."""
    root = tmp_path / "root"
    (root / ".tus").mkdir(parents=True)
    (root / ".tus" / "notes.txt").write_text("not an upload")
    write_random(tmp_path / "f.bin", 10)
    with JupyterProcess(root) as broken:
        for args in (("upload", str(tmp_path / "f.bin")), ("list",)):
            r = run(command(*args, "--server", broken.url, "--token", broken.token), env)
            assert r.returncode == 1
            assert "not a jupyter-tus endpoint" not in r.stderr, r.stderr
            assert "cannot take uploads (HTTP 503)" in r.stderr, r.stderr
            assert "staging_dir" in r.stderr, r.stderr
    assert not (root / "f.bin").exists()
