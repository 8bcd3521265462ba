"""The widget behind a proxy with a 1 MiB body limit, on a server with `max_chunk_size` of
1 MiB: it reads the limit before it sends a body, so no request is ever refused (the same
uploader as the file browser: tests/browser/test_server_chunk_limit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

from ..servers import JupyterProcess, lab_settings
from .test_widget_browser import (
    REPORT,
    MiB,
    kernel_report,
    notebook,
    open_notebook,
    random_file,
    run_cell,
    widget_ready,
)

LIMIT = MiB


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("widget-limit")
    root = base / "root"
    root.mkdir()
    args = [
        f"--LabApp.user_settings_dir={lab_settings(base / 'settings')}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
        f"--TusApp.max_chunk_size={LIMIT}",
    ]
    with JupyterProcess(root, app="lab", args=args) as server:
        yield server


def test_no_body_is_ever_refused(in_browser, lab, tmp_path):
    in_browser(lambda page: _no_body_refused(page, lab, tmp_path))


def _no_body_refused(page: Page, lab: JupyterProcess, tmp_path: Path) -> None:
    # Fits the widget's default chunk (8 MiB), not the limit: without reading the limit,
    # its creation request would carry all of it.
    src = tmp_path / "limited.bin"
    digest = random_file(src, 5 * MiB + 3)
    notebook(
        lab.root_dir / "limited.ipynb",
        "import hashlib, jupyter_tus\nw = jupyter_tus.UploadWidget()\nw",
        REPORT,
    )
    refused: list[tuple[str, int]] = []
    bodies: list[int] = []

    def proxy(route: Route) -> None:
        # nginx's default client_max_body_size, in front of the server.
        request = route.request
        body = request.post_data_buffer or b""
        if request.method in ("POST", "PATCH"):
            bodies.append(len(body))
        if len(body) > LIMIT:
            refused.append((request.method, len(body)))
            route.fulfill(status=413, body="<html>413 Request Entity Too Large</html>")
            return
        route.continue_()

    page.route("**/api/tus/uploads**", proxy)
    # (A file sent whole is a File body, which Playwright does not show the route: the
    # server's own answers say whether a body was too large.)
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status) if "/api/tus/" in r.url else None)
    open_notebook(page, lab, "limited.ipynb")
    run_cell(page, 0)
    widget_ready(page)
    page.set_input_files(".jtus-input", str(src))
    expect(page.locator(".jtus-file")).to_have_attribute("data-state", "done")
    assert refused == []
    assert max(bodies) == LIMIT, bodies
    assert statuses and max(statuses) < 400, statuses
    run_cell(page, 1)
    match = kernel_report(page, 1)
    assert match[1] == src.name
    assert match[2] == digest
