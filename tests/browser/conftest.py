"""Browser tests of the file browser uploader: Debian's chromium driven by Playwright
against a real ``jupyter lab`` process started here.

Chromium is ``/usr/bin/chromium`` (``make test`` installs it); Playwright's own browsers
are never downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Page, sync_playwright

from ..servers import (  # noqa: F401 - fixtures and the shared poll
    JupyterProcess,
    jp_asyncio_loop,
    jp_server_cleanup,
    lab_settings,
    wait_until,
)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
PLUGIN = "jupyter-tus:plugin"
MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "test-results"


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MiB):
            h.update(block)
    return h.hexdigest()


class Lab:
    """A ``jupyter lab`` process with isolated settings and workspaces."""

    def __init__(self, base: Path, **kwargs) -> None:
        self.root = base / "root"
        self.root.mkdir(parents=True)
        # No news question or update toast over the screenshots and the buttons.
        settings = lab_settings(base / "settings")
        self.process = JupyterProcess(
            self.root,
            app="lab",
            args=[
                f"--LabApp.user_settings_dir={settings}",
                f"--LabApp.workspaces_dir={base / 'workspaces'}",
                *kwargs.pop("args", []),
            ],
            **kwargs,
        )

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def auth(self) -> dict[str, str]:
        return self.process.auth

    def set_settings(self, **values: object) -> None:
        """Write the extension's user settings through the lab settings API."""
        r = requests.put(
            self.url + f"lab/api/settings/{PLUGIN}",
            headers=self.auth,
            json={"raw": json.dumps(values)},
            timeout=10,
        )
        assert r.status_code == 204, r.text

    def head_offset(self, upload_url: str) -> int:
        r = requests.head(upload_url, headers={**self.auth, "Tus-Resumable": "1.0.0"}, timeout=10)
        r.raise_for_status()
        return int(r.headers["Upload-Offset"])

    def staging_files(self) -> list[str]:
        tus = self.root / ".tus"
        return sorted(p.name for p in tus.iterdir()) if tus.exists() else []


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope: Playwright's event loop must be gone before other tests (pytest-jupyter's
    # in-process servers) run in this session.
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("lab"))
    lab.process.start()
    yield lab
    lab.process.stop()


@pytest.fixture
def open_lab(browser: Browser, lab: Lab) -> Iterator[Callable[..., Page]]:
    """Open JupyterLab in a fresh browser context; waits until the uploader is ready."""
    contexts = []

    def open_(throttle: int | None = 20 * MiB, init_script: str | None = None) -> Page:
        page = new_page(browser, lab, throttle, init_script)
        contexts.append(page.context)
        return page

    yield open_
    for c in contexts:
        c.close()


def new_page(
    browser: Browser, lab: Lab, throttle: int | None = 20 * MiB, init_script: str | None = None
) -> Page:
    """JupyterLab in a fresh browser context (the caller closes it); waits until the
    uploader is ready."""
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    page.console_messages_seen = []  # type: ignore[attr-defined]
    page.on("console", lambda m: page.console_messages_seen.append((m.type, m.text)))
    # "Leave the page while uploading?" (beforeunload): the tests reload on purpose.
    page.on("dialog", lambda d: d.accept() if d.type == "beforeunload" else d.dismiss())
    if throttle:
        # Upload bandwidth like a fast LAN, so a test can act at "half way".
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send(
            "Network.emulateNetworkConditions",
            {
                "offline": False,
                "latency": 0,
                "downloadThroughput": -1,
                "uploadThroughput": throttle,
            },
        )
    goto_lab(page, lab)
    return page


def goto_lab(page: Page, lab: Lab, reload: bool = False) -> None:
    if reload:
        page.reload()
    else:
        page.goto(lab.url + "lab?token=" + lab.process.token)
    page.wait_for_selector("body[data-jupyter-tus]", state="attached", timeout=60_000)


def random_file(path: Path, size: int) -> str:
    """``size`` random bytes written to ``path`` a MiB at a time; returns their sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(MiB, left))
            h.update(block)
            f.write(block)
            left -= len(block)
    return h.hexdigest()


@pytest.fixture(scope="session")
def big_file(tmp_path_factory) -> tuple[Path, str]:
    """100 MB of random bytes and their sha256."""
    path = tmp_path_factory.mktemp("data") / "survey-2026.bin"
    return path, random_file(path, 100 * MiB)


@pytest.fixture(scope="session")
def results_dir() -> Path:
    RESULTS.mkdir(exist_ok=True)
    return RESULTS
