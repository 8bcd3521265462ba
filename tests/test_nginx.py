"""Debian's nginx (``make test`` installs ``nginx-light``) in front of a real
``jupyter server``, configured from docs/deployment.md itself, so that the page and
this test cannot drift apart.

The configuration is the page's one ``nginx`` block, with only its listen line (a free
port on 127.0.0.1, no TLS) and its upstream port substituted, wrapped in an ``http``
block whose only additions are nginx's own files (pid, logs, temp folders) under a
private folder. nginx runs unprivileged: as the test's user, or as ``nobody`` when the
test runs as root, in the foreground (``daemon off``), from its own prefix (``-p``).

- **documented**: the block as the page gives it; the clients send bodies over nginx's
  1 MiB default (tus-js-client 2 MiB chunks, tuspy the whole file in one request).
- **defaults**: the same block without its tus location and without
  ``client_max_body_size``, so uploads meet nginx's defaults (1 MiB body limit,
  request buffering); the server runs with ``TusApp.max_chunk_size = 1 MiB``:
  ``jupyter tus upload`` reads it from the server, tus-js-client and tuspy are given a
  1 MiB chunk size, as the page says.

Through each: tus-js-client (under Node, the lab extension's copy), tuspy and
``jupyter tus upload`` land their files intact, nginx's access log shows no request
refused (no status of 400 or more), and jupyter-server's event websocket, opened as a
browser opens it (the login cookie and the page's ``Origin``, which jupyter-server
checks against ``Host``), is upgraded (101) and carries the uploads' ``completed``
events: ``proxy_set_header Host $host`` (no port) makes it a 403.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import websocket
from tusclient import client as tus_client

from .conftest import encode_metadata, file_sha256
from .servers import BIN, JupyterProcess, free_port, wait_until

REPO = Path(__file__).resolve().parent.parent
DEPLOYMENT = REPO / "docs" / "deployment.md"
TUS_JS_CLIENT = REPO / "labextension" / "node_modules" / "tus-js-client"
MiB = 1024 * 1024
NGINX_LIMIT = MiB  # nginx's default client_max_body_size
EVENT_SCHEMA = "https://events.jupyter.org/jupyter_tus/upload/v1"


def nginx_path() -> str:
    path = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(path, os.X_OK):
        pytest.fail("nginx is missing: `make test` installs it (apt-get install nginx-light)")
    return path


# ------------------------------------------------------------------- configuration


def documented_block() -> str:
    """The one ```nginx block of docs/deployment.md."""
    blocks = re.findall(r"^```nginx\n(.*?)^```$", DEPLOYMENT.read_text(), re.M | re.S)
    assert len(blocks) == 1, f"docs/deployment.md has {len(blocks)} nginx blocks, not one"
    return blocks[0]


def substitute(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"docs/deployment.md's nginx block has no single {old!r}"
    return text.replace(old, new)


def render(block: str, listen: int, upstream: int, *, defaults: bool) -> str:
    """The page's block on our ports; ``defaults``: without its tus location and its
    ``client_max_body_size``, i.e. nginx's defaults for request bodies."""
    block = substitute(block, "listen 443 ssl;", f"listen 127.0.0.1:{listen};")
    block = substitute(block, "server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")
    if defaults:
        tus_location = re.compile(r"\n[ \t]*# The tus endpoint.*?location ~ [^{]*\{[^}]*\}\n", re.S)
        block, n = tus_location.subn("\n", block)
        assert n == 1, "docs/deployment.md's nginx block has no tus location"
        block = re.sub(r"\n[ \t]*client_max_body_size [^\n]*", "", block)
        assert "client_max_body_size" not in block and "proxy_request_buffering" not in block
    return block


class Nginx:
    """One nginx process on 127.0.0.1:<port>, everything in its own folder."""

    def __init__(self, block: str) -> None:
        self.port = free_port()
        # Not under tmp_path: pytest's base folder is private to the user, and nginx
        # runs as nobody when the test runs as root.
        self.dir = Path(tempfile.mkdtemp(prefix="tus-nginx-"))
        self.block = block
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def access_log(self) -> Path:
        return self.dir / "access.log"

    def config(self, upstream: int, *, defaults: bool) -> str:
        d = self.dir
        temps = "\n".join(
            f"    {name}_temp_path {d / name};"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return (
            f"daemon off;\nworker_processes 1;\npid {d / 'nginx.pid'};\n"
            f"error_log {d / 'error.log'} notice;\n"
            "events { worker_connections 64; }\n"
            "http {\n"
            "    log_format tus '$status $request_method $request_uri $content_length';\n"
            f"    access_log {self.access_log} tus;\n"
            f"{temps}\n"
            f"{render(self.block, self.port, upstream, defaults=defaults)}"
            "}\n"
        )

    def start(self, upstream: int, auth: dict[str, str], *, defaults: bool) -> Nginx:
        drop: dict = {}
        if os.geteuid() == 0:
            nobody, nogroup = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
            os.chown(self.dir, nobody, nogroup)
            drop = {"user": nobody, "group": nogroup, "extra_groups": []}
        conf = self.dir / "nginx.conf"
        command = [nginx_path(), "-p", f"{self.dir}/", "-c", str(conf)]
        # The port free_port() gave may be taken by the time nginx binds it (a busy
        # machine): then nginx exits at once, and it is started again on another.
        attempts = 0
        while True:
            attempts += 1
            conf.write_text(self.config(upstream, defaults=defaults))
            check = subprocess.run([*command, "-t"], capture_output=True, text=True, **drop)
            assert check.returncode == 0, check.stderr + "\n" + conf.read_text()
            with open(self.dir / "stderr.log", "wb") as err:
                self.proc = subprocess.Popen(command, stderr=err, start_new_session=True, **drop)

            def up() -> bool:
                if self.proc.poll() is not None:
                    return True  # told apart below
                try:
                    r = requests.get(self.url + "api/status", headers=auth, timeout=5)
                    return r.status_code == 200
                except (requests.ConnectionError, requests.Timeout):
                    return False

            wait_until(up, timeout=20, what="nginx answering for jupyter")
            if self.proc.poll() is None:
                return self
            if attempts == 3 or "Address already in use" not in self.log():
                raise AssertionError(f"nginx exited with {self.proc.returncode}:\n{self.log()}")
            self.port = free_port()

    def log(self) -> str:
        return "".join(
            f"--- {name}\n{(self.dir / name).read_text(errors='replace')[-3000:]}\n"
            for name in ("stderr.log", "error.log", "access.log")
            if (self.dir / name).exists()
        )

    def requests(self) -> list[tuple[int, str, str, int]]:
        """(status, method, uri, Content-Length or 0) of every request nginx answered."""
        lines = self.access_log.read_text().splitlines()
        return [
            (int(s), m, u, 0 if n == "-" else int(n))
            for s, m, u, n in (line.split(" ") for line in lines)
        ]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def proxied(tmp_path, request) -> Iterator[tuple[JupyterProcess, Nginx, bool]]:
    """A jupyter server and nginx in front of it, and whether nginx has its defaults;
    ``request.param``: "documented" or "defaults" (then the server has
    ``TusApp.max_chunk_size`` = nginx's limit)."""
    defaults = request.param == "defaults"
    root = tmp_path / "root"
    root.mkdir()
    args = [f"--TusApp.max_chunk_size={NGINX_LIMIT}"] if defaults else []
    server = JupyterProcess(root, args=args)
    nginx = Nginx(documented_block())
    try:
        server.start()
        nginx.start(server.port, server.auth, defaults=defaults)
        yield server, nginx, defaults
    except BaseException:
        print(nginx.log())
        raise
    finally:
        nginx.stop()
        server.stop()


# ------------------------------------------------------------------------- clients

NODE_UPLOAD = """
const fs = require('fs');
const tus = require(process.env.TUS_JS_CLIENT);
const [endpoint, file, name, chunkSize] = process.argv.slice(2);
const upload = new tus.Upload(fs.createReadStream(file), {
  endpoint,
  headers: JSON.parse(process.env.TUS_HEADERS),
  chunkSize: Number(chunkSize),
  metadata: { filename: name, path: 'js' },
  retryDelays: [],  // a refusal fails the upload
  onError(err) { console.error(String(err)); process.exit(1); },
  onSuccess() { console.log(upload.url); },
});
upload.start();
"""


def tus_js_upload(
    tmp_path: Path, endpoint: str, headers: dict[str, str], src: Path, chunk_size: int
) -> None:
    """tus-js-client under Node, sending ``headers`` on every request."""
    script = tmp_path / "upload.js"
    script.write_text(NODE_UPLOAD)
    done = subprocess.run(
        ["node", str(script), endpoint, str(src), src.name, str(chunk_size)],
        env={**os.environ, "TUS_JS_CLIENT": str(TUS_JS_CLIENT), "TUS_HEADERS": json.dumps(headers)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def cli_upload(url: str, token: str, src: Path) -> None:
    done = subprocess.run(
        [str(BIN / "jupyter"), "tus", "upload", "--server", url, "--to", "cli", "-q", str(src)],
        env={**os.environ, "JUPYTER_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def browser_login(nginx: Nginx, token: str) -> dict[str, str]:
    """The headers of a JupyterLab page's requests, logged in through nginx: the login
    cookie (no token, so jupyter-server compares ``Origin`` with ``Host``), the XSRF
    header, and the page's ``Origin`` (nginx's)."""
    session = requests.Session()
    session.get(nginx.url + "login").raise_for_status()
    xsrf = session.cookies["_xsrf"]
    r = session.post(
        nginx.url + "login", data={"password": token, "_xsrf": xsrf}, allow_redirects=False
    )
    assert r.status_code == 302, r.text
    return {
        "Cookie": "; ".join(f"{c.name}={c.value}" for c in session.cookies),
        "X-XSRFToken": xsrf,
        "Origin": nginx.url.rstrip("/"),
    }


def event_socket(nginx: Nginx, page: dict[str, str]) -> websocket.WebSocket:
    """``api/events/subscribe`` through nginx, opened as the page opens it."""
    return websocket.create_connection(
        f"ws://127.0.0.1:{nginx.port}/api/events/subscribe",
        cookie=page["Cookie"],
        origin=page["Origin"],
        timeout=30,
    )


def completed_events(ws: websocket.WebSocket, names: set[str]) -> set[str]:
    """Read the socket until an upload ``completed`` event came for each of ``names``."""
    seen: set[str] = set()
    while seen < names:
        event = json.loads(ws.recv())
        if event.get("schema_id") == EVENT_SCHEMA and event.get("action") == "completed":
            seen.add(event["filename"])
    return seen


def random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    return path


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("proxied", ["documented", "defaults"], indirect=True)
def test_uploads_and_events_through_nginx(proxied, tmp_path):
    server, nginx, defaults = proxied
    size = 3 * MiB + 12345  # several chunks either way, the last one short
    endpoint = nginx.url + "api/tus/uploads"
    page = browser_login(nginx, server.token)
    ws = event_socket(nginx, page)
    try:
        # tus-js-client as the page runs it (cookie, XSRF, Origin); it reads no limit
        # from the server either.
        js_src = random_file(tmp_path / "from-js.bin", size)
        js_chunk = NGINX_LIMIT if defaults else 2 * MiB
        tus_js_upload(tmp_path, endpoint, page, js_src, js_chunk)

        py_src = random_file(tmp_path / "from-tuspy.bin", size)
        c = tus_client.TusClient(endpoint, headers=server.auth)
        # tuspy reads no limit from the server: 1 MiB behind the defaults, else its
        # default (the whole file in one request).
        kw = {"chunk_size": NGINX_LIMIT} if defaults else {}
        c.uploader(str(py_src), metadata={"filename": py_src.name, "path": "py"}, **kw).upload()

        cli_src = random_file(tmp_path / "from-cli.bin", size)
        cli_upload(nginx.url, server.token, cli_src)

        names = {js_src.name, py_src.name, cli_src.name}
        assert completed_events(ws, names) == names
    finally:
        ws.close()

    root = server.root_dir
    for folder, src in (("js", js_src), ("py", py_src), ("cli", cli_src)):
        assert file_sha256(root / folder / src.name) == file_sha256(src)

    # nginx logs a request once it is over: the event socket's line comes when nginx is
    # done with the closed socket, which may be after ws.close() returned.
    upgraded = (101, "GET", "/api/events/subscribe", 0)
    wait_until(lambda: upgraded in nginx.requests(), timeout=10, what="the socket's log line")
    answered = nginx.requests()
    assert [r for r in answered if r[0] >= 400] == [], nginx.log()
    # The bodies were what the case is about: over nginx's default limit through the
    # documented block, exactly at it (every client) behind the defaults.
    bodies = [n for _, method, _, n in answered if method in ("POST", "PATCH")]
    if defaults:
        assert max(bodies) == NGINX_LIMIT, answered
    else:
        assert max(bodies) > NGINX_LIMIT, answered

    if defaults:
        # The limit is there: a body one byte over it gets nginx's own 413, not the
        # server's (no Tus-Resumable).
        body = b"\0" * (NGINX_LIMIT + 1)
        r = requests.post(
            endpoint,
            headers={
                **server.auth,
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(len(body)),
                "Upload-Metadata": encode_metadata({"filename": "over.bin"}),
                "Content-Type": "application/offset+octet-stream",
            },
            data=body,
        )
        assert r.status_code == 413 and "Tus-Resumable" not in r.headers
        assert "nginx" in r.text


def test_render_is_the_documented_block():
    """The rendered configuration differs from the page's block only in the two
    substituted lines (and, for the defaults, the removed ones)."""
    block = documented_block()
    rendered = render(block, 1234, 5678, defaults=False)
    changed = [
        (a, b) for a, b in zip(block.splitlines(), rendered.splitlines(), strict=True) if a != b
    ]
    assert [b.strip() for _, b in changed] == ["server 127.0.0.1:5678;", "listen 127.0.0.1:1234;"]
