"""Cross-origin uploads in a real browser: a page served from a second local origin
(a tiny ``http.server`` on another 127.0.0.1 port) runs tus-js-client against a real
``jupyter server`` process. Debian's chromium, driven by Playwright, as in
``tests/browser``.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..browser.conftest import browser  # noqa: F401 - the one Chromium fixture
from ..servers import (  # noqa: F401 - fixtures
    JupyterProcess,
    jp_asyncio_loop,
    jp_server_cleanup,
)

REPO = Path(__file__).resolve().parents[2]
TUS_BUNDLE = REPO / "labextension" / "node_modules" / "tus-js-client" / "dist" / "tus.min.js"

# The page: one file input, and upload() resolving with what the page's script could
# read of the answers (Location, Jupyter-Tus-Path), or rejecting with tus-js-client's
# error. No retries: a failure must show, not be retried away.
PAGE = """<!doctype html>
<meta charset="utf-8">
<title>cross-origin tus upload</title>
<script src="tus.min.js"></script>
<input type="file" id="file">
<script>
window.upload = (endpoint, token, folder) => new Promise((resolve, reject) => {
  const file = document.getElementById("file").files[0];
  let landed = null;
  const upload = new tus.Upload(file, {
    endpoint,
    headers: { Authorization: "token " + token },
    chunkSize: 256 * 1024,
    retryDelays: [],
    storeFingerprintForResuming: false,
    metadata: { filename: file.name, path: folder, filetype: "application/octet-stream" },
    onAfterResponse: (req, res) => {
      landed = res.getHeader("Jupyter-Tus-Path") || landed;
    },
    onError: (error) => reject(new Error(String(error))),
    onSuccess: () => resolve({ url: upload.url, landed }),
  });
  upload.start();
});
</script>
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class PageServer:
    """The page and the tus-js-client bundle, on their own origin."""

    def __init__(self, directory: Path) -> None:
        if not TUS_BUNDLE.exists():
            pytest.fail(f"{TUS_BUNDLE} is missing: `make test` runs npm ci in labextension/")
        shutil.copy(TUS_BUNDLE, directory / "tus.min.js")
        (directory / "index.html").write_text(PAGE)
        handler = functools.partial(_QuietHandler, directory=str(directory))
        # Port 0: the kernel's pick, bound at once (no free_port() that others may take).
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> PageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def page_server(tmp_path_factory) -> Iterator[PageServer]:
    with PageServer(tmp_path_factory.mktemp("page")) as server:
        yield server


def _jupyter(base: Path, *args: str) -> JupyterProcess:
    root = base / "root"
    root.mkdir()
    return JupyterProcess(root, args=list(args)).start()


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory, page_server) -> Iterator[JupyterProcess]:
    """A server that lets the page's origin in."""
    server = _jupyter(
        tmp_path_factory.mktemp("cors"), f"--ServerApp.allow_origin={page_server.origin}"
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory) -> Iterator[JupyterProcess]:
    """A server without any cross-origin setting."""
    server = _jupyter(tmp_path_factory.mktemp("plain"))
    yield server
    server.stop()
