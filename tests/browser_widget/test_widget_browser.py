"""The UploadWidget in a real browser: JupyterLab started by the test, Debian's chromium
driven by Playwright. A 50 MB file goes through the widget to the tus endpoint; the
kernel reports its sha256. A second run reloads the page mid-upload and resumes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from playwright.sync_api import Page, expect

from ..browser.test_filebrowser_upload import TusLog
from ..browser.test_uploads_panel import left_a_while_ago, script_upload
from ..servers import JupyterProcess, lab_settings
from ..wire import Relay
from .conftest import TIMEOUT

MiB = 1024 * 1024
SIZE = 50 * 1000 * 1000
REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "test-results"
DOCS_SCREENSHOT = REPO / "docs" / "images" / "notebook-widget.png"
expect.set_options(timeout=TIMEOUT)

REPORT = """\
info = max(w.uploads, key=lambda u: u.size)
h = hashlib.sha256()
with jupyter_tus.get_reader(info) as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
same_name = [u for u in jupyter_tus.list_uploads() if u.filename == info.filename]
print("SHA256", info.filename, h.hexdigest(), "uploads", len(same_name), "landed", info.path)
"""


def notebook(path: Path, *cells: str) -> None:
    path.write_text(
        json.dumps(
            {
                "cells": [
                    {"cell_type": "code", "metadata": {}, "source": c, "outputs": [],
                     "execution_count": None}
                    for c in cells
                ],
                "metadata": {
                    "kernelspec": {"name": "python3", "display_name": "Python 3",
                                   "language": "python"}
                },
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )  # fmt: skip


def random_file(path: Path, size: int = SIZE) -> str:
    """A file of ``size`` random bytes; returns its sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(MiB, left))
            h.update(block)
            f.write(block)
            left -= len(block)
    return h.hexdigest()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("widget-browser")
    root = base / "root"
    root.mkdir()
    args = [
        f"--LabApp.user_settings_dir={lab_settings(base / 'settings')}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
    ]
    with JupyterProcess(root, app="lab", args=args) as server:
        yield server


def open_notebook(page: Page, lab: JupyterProcess, name: str) -> None:
    # A workspace of its own, so that no other notebook is restored beside it.
    workspace = name.replace(".", "-")
    page.goto(f"{lab.url}lab/workspaces/{workspace}/tree/{name}?reset&token={lab.token}")
    notebook_ready(page)


def notebook_ready(page: Page) -> None:
    """The notebook is shown and its kernel connected and idle (the status bar says so only
    once it is): before that, Shift+Enter may be lost."""
    expect(cells(page).first).to_be_visible()
    expect(page.get_by_role("button", name=re.compile(r"Python 3.*\| Idle"))).to_be_visible()


def cells(page: Page):
    return page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell")


def run_cell(page: Page, index: int) -> None:
    cell = cells(page).nth(index)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    expect(cell.locator(".jp-InputArea-prompt")).to_have_text(re.compile(r"\[(\*|\d+)\]:"))


def kernel_report(page: Page, index: int) -> re.Match:
    output = cells(page).nth(index).locator(".jp-OutputArea-output")
    expect(output.first).to_contain_text("SHA256")
    text = output.first.inner_text()
    match = re.search(r"SHA256 (\S+) ([0-9a-f]{64}) uploads (\d+) landed (.+)", text)
    assert match, text
    return match


def widget_ready(page: Page) -> None:
    expect(page.locator(".jtus[data-ready='yes']")).to_be_attached()


def test_upload_50mb(in_browser, lab, tmp_path):
    in_browser(lambda page: _upload_50mb(page, lab, tmp_path))


def _upload_50mb(page: Page, lab: JupyterProcess, tmp_path: Path) -> None:
    src = tmp_path / "big-one.bin"
    digest = random_file(src)
    small = tmp_path / "cities.csv"
    small.write_text("city,n\nLyon,1\nOslo,2\nQuito,3\n")
    notebook(
        lab.root_dir / "one.ipynb",
        "import hashlib, jupyter_tus\nw = jupyter_tus.UploadWidget(path='incoming')\nw",
        REPORT,
        "df = jupyter_tus.load('incoming/cities.csv')\n"
        "print('FRAME', sorted(u.filename for u in w.uploads), df['n'].sum())",
    )
    open_notebook(page, lab, "one.ipynb")
    run_cell(page, 0)
    widget_ready(page)
    page.set_input_files(".jtus-input", [str(src), str(small)])  # two files at once
    rows = page.locator(".jtus-file")
    expect(rows).to_have_count(2)
    for i in range(2):
        expect(rows.nth(i)).to_have_attribute("data-state", "done")
        expect(rows.nth(i).locator(".jtus-status")).to_contain_text("done · ")
        expect(rows.nth(i).locator(".jtus-status")).to_contain_text(" → incoming/")
    expect(rows.nth(0).locator(".jtus-status")).to_have_text("done · 48 MiB → incoming/big-one.bin")
    # The widget's cell, for the docs (written there when missing or UPDATE_DOCS_SCREENSHOTS=1).
    RESULTS.mkdir(exist_ok=True)
    shot = RESULTS / "notebook-widget.png"
    cells(page).first.screenshot(path=str(shot))
    if not DOCS_SCREENSHOT.exists() or os.environ.get("UPDATE_DOCS_SCREENSHOTS"):
        shutil.copyfile(shot, DOCS_SCREENSHOT)
    run_cell(page, 1)
    match = kernel_report(page, 1)
    assert match[1] == "big-one.bin"
    assert match[2] == digest
    assert match[3] == "1"
    assert match[4] == str(lab.root_dir / "incoming" / "big-one.bin")
    run_cell(page, 2)
    output = cells(page).nth(2).locator(".jp-OutputArea-output")
    expect(output).to_contain_text("FRAME ['big-one.bin', 'cities.csv'] 6")


def test_reload_and_resume(in_browser, lab, tmp_path):
    in_browser(lambda page: _reload_and_resume(page, lab, tmp_path))


def _reload_and_resume(page: Page, lab: JupyterProcess, tmp_path: Path) -> None:
    src = tmp_path / "big-two.bin"
    digest = random_file(src)
    chunk = 2 * MiB
    hold_at = 5 * chunk
    notebook(
        lab.root_dir / "two.ipynb",
        f"import hashlib, jupyter_tus\nw = jupyter_tus.UploadWidget(chunk_size={chunk})\nw",
        REPORT,
    )
    open_notebook(page, lab, "two.ipynb")
    run_cell(page, 0)
    widget_ready(page)

    # Let five chunks through, then fail every PATCH from there on (the link is down;
    # nothing of them reaches the server) until the page reloads, as when a user
    # reloads during an upload.
    def hold(route):
        request = route.request
        if request.method == "PATCH" and int(request.headers.get("upload-offset", 0)) >= hold_at:
            route.abort("connectionreset")
        else:
            route.continue_()

    def is_held(request) -> bool:
        return request.method == "PATCH" and request.headers.get("upload-offset") == str(hold_at)

    page.route("**/api/tus/uploads/**", hold)
    with page.expect_request(is_held):
        page.set_input_files(".jtus-input", str(src))
    upload_id = page.locator(".jtus-file").get_attribute("data-upload-id")
    assert upload_id
    head = requests.head(
        f"{lab.endpoint}/{upload_id}", headers={**lab.auth, "Tus-Resumable": "1.0.0"}, timeout=10
    )
    assert head.headers["Upload-Offset"] == str(hold_at)

    page.reload()
    page.unroute("**/api/tus/uploads/**")
    notebook_ready(page)
    expect(page.locator(".jtus")).to_have_count(0)  # the unsaved output is gone
    run_cell(page, 0)
    widget_ready(page)
    # The widget offers to resume what the reload interrupted (the same uploader and
    # words as the file browser's panel).
    row = page.locator(".jtus-file")
    expect(row).to_have_attribute("data-state", "interrupted")
    expect(row.locator(".jtus-name")).to_have_text("big-two.bin")
    expect(row.locator(".jtus-status")).to_contain_text("interrupted at 20% · 10 MiB of 48 MiB")
    page.set_input_files(".jtus-input", str(src))
    expect(row).to_have_count(1)  # the interrupted row became the resumed upload
    expect(row).to_have_attribute("data-state", "done")
    assert row.get_attribute("data-upload-id") == upload_id
    assert row.get_attribute("data-resumed-from") == str(hold_at)
    run_cell(page, 1)
    match = kernel_report(page, 1)
    assert match[1] == "big-two.bin"
    assert match[2] == digest
    assert match[3] == "1"  # resumed, not uploaded again


def test_pause_resume_cancel_unreachable(in_browser, lab, tmp_path):
    in_browser(lambda page: _pause_resume_cancel_unreachable(page, lab, tmp_path))


def _pause_resume_cancel_unreachable(page: Page, lab: JupyterProcess, tmp_path: Path) -> None:
    keep, drop = tmp_path / "keep.bin", tmp_path / "drop.bin"
    digest = random_file(keep, 6 * MiB)
    random_file(drop, 6 * MiB)
    notebook(
        lab.root_dir / "three.ipynb",
        "import hashlib, jupyter_tus\n"
        "w = jupyter_tus.UploadWidget(path='three', chunk_size=1 << 20)\nw",
        REPORT,
        "bad = jupyter_tus.UploadWidget(endpoint='/nowhere/api/tus/uploads')\nbad",
        "print('ERROR:', bad.error)",
    )
    open_notebook(page, lab, "three.ipynb")
    run_cell(page, 0)
    widget_ready(page)
    held_at = 2 * MiB

    def hold(route):  # PATCHes from 2 MiB on stay in flight, unanswered
        request = route.request
        if request.method != "PATCH" or int(request.headers.get("upload-offset", 0)) < held_at:
            route.continue_()

    def is_held(request) -> bool:
        return request.method == "PATCH" and request.headers.get("upload-offset") == str(held_at)

    def offset(upload_id: str) -> requests.Response:
        return requests.head(
            f"{lab.endpoint}/{upload_id}",
            headers={**lab.auth, "Tus-Resumable": "1.0.0"},
            timeout=10,
        )

    # Pause while a chunk is in flight, then resume to completion.
    page.route("**/api/tus/uploads/**", hold)
    with page.expect_request(is_held):
        page.set_input_files(".jtus-input", str(keep))
    row = page.locator(".jtus-file", has_text="keep.bin")
    row.get_by_role("button", name="Pause").click()
    expect(row).to_have_attribute("data-state", "paused")
    expect(row.locator(".jtus-status")).to_have_text("paused · 33% · 2.0 MiB of 6.0 MiB")
    keep_id = row.get_attribute("data-upload-id")
    assert offset(keep_id).headers["Upload-Offset"] == str(held_at)
    # someone takes the name meanwhile: the upload lands beside it, and the row says so
    (lab.root_dir / "three").mkdir(exist_ok=True)
    (lab.root_dir / "three" / "keep.bin").write_text("someone else's")
    page.unroute("**/api/tus/uploads/**")
    row.get_by_role("button", name="Resume").click()
    expect(row).to_have_attribute("data-state", "done")
    expect(row.locator(".jtus-status")).to_have_text(
        "done · 6.0 MiB → three/keep (1).bin (the name was taken)"
    )
    run_cell(page, 1)
    match = kernel_report(page, 1)
    assert match.group(1, 2, 3) == ("keep.bin", digest, "1")
    assert match[4] == str(lab.root_dir / "three" / "keep (1).bin")

    # The same name again, without overwrite: the widget asks, as the file browser does.
    # Cancel keeps the existing file; nothing is retried.
    page.set_input_files(".jtus-input", str(keep))
    clash = page.locator(".jtus-file[data-state='queued']", has_text="keep.bin")
    expect(clash.locator(".jtus-status")).to_have_text("keep.bin already exists: overwrite?")
    clash.get_by_role("button", name="Cancel").click()
    expect(page.locator(".jtus-file[data-state='cancelled']")).to_have_count(1)
    assert (lab.root_dir / "three" / "keep.bin").read_text() == "someone else's"

    # Cancel terminates the upload on the server.
    page.route("**/api/tus/uploads/**", hold)
    with page.expect_request(is_held):
        page.set_input_files(".jtus-input", str(drop))
    row = page.locator(".jtus-file", has_text="drop.bin")
    drop_id = row.get_attribute("data-upload-id")
    assert offset(drop_id).status_code == 200

    # The row says "cancelled" at once, before its DELETE went out: wait for that.
    def terminated(response) -> bool:
        return response.request.method == "DELETE" and drop_id in response.url

    with page.expect_response(terminated) as deleted:
        row.get_by_role("button", name="Cancel").click()
    assert deleted.value.status == 204
    expect(row).to_have_attribute("data-state", "cancelled")
    assert offset(drop_id).status_code in (404, 410)
    assert not (lab.root_dir / "three" / "drop.bin").exists()
    page.unroute("**/api/tus/uploads/**")

    # No tus endpoint there: the widget says so, and so does the Python side.
    run_cell(page, 2)
    bad = page.locator(".jtus[data-ready='unavailable']")
    expect(bad.locator(".jtus-message")).to_contain_text("not a tus upload endpoint (HTTP 404)")
    run_cell(page, 3)
    output = cells(page).nth(3).locator(".jp-OutputArea-output")
    expect(output).to_contain_text("ERROR: Uploads are not possible")


def test_widget_upload_resumes_in_the_file_browser(in_browser, lab, tmp_path):
    in_browser(lambda page: _widget_then_file_browser(page, lab, tmp_path))


def _widget_then_file_browser(page: Page, lab: JupyterProcess, tmp_path: Path) -> None:
    """One fingerprint for both front ends: an upload started in the widget, cut by a
    reload, is listed by the file browser's Uploads panel and finished from there with
    only the remaining bytes sent."""
    src = tmp_path / "started-in-widget.bin"
    digest = random_file(src, 24 * MiB)
    chunk = 2 * MiB
    hold_at = 4 * chunk
    notebook(
        lab.root_dir / "four.ipynb",
        f"import jupyter_tus\nw = jupyter_tus.UploadWidget(path='shared', chunk_size={chunk})\nw",
    )
    open_notebook(page, lab, "four.ipynb")
    run_cell(page, 0)
    widget_ready(page)

    def hold(route):  # the link goes down at hold_at, until the reload
        request = route.request
        if request.method == "PATCH" and int(request.headers.get("upload-offset", 0)) >= hold_at:
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/tus/uploads/**", hold)
    with page.expect_request(
        lambda r: r.method == "PATCH" and r.headers.get("upload-offset") == str(hold_at)
    ):
        page.set_input_files(".jtus-input", str(src))
    widget_row = page.locator(".jtus-file")
    expect(widget_row).to_have_attribute("data-state", "retrying")
    expect(widget_row.locator(".jtus-status")).to_contain_text("connection lost, retrying")
    upload_id = widget_row.get_attribute("data-upload-id")

    seen = []
    page.reload()
    page.unroute("**/api/tus/uploads/**")
    page.on("request", lambda r: "/api/tus/uploads" in r.url and seen.append(r))
    panel_row = page.locator(
        ".jp-TusUpload", has=page.locator(".jp-TusUpload-name", has_text=src.name)
    )
    expect(panel_row).to_have_attribute("data-state", "interrupted")
    expect(panel_row.locator(".jp-TusUpload-status")).to_contain_text(
        "interrupted at 33% · 8.0 MiB of 24 MiB → shared/"
    )
    with page.expect_file_chooser() as chooser:
        panel_row.locator(".jp-TusUpload-resume").click()
    chooser.value.set_files(str(src))
    expect(panel_row).to_have_attribute("data-state", "done")
    expect(panel_row.locator(".jp-TusUpload-status")).to_have_text(
        f"done · 24 MiB → shared/{src.name}"
    )

    assert hashlib.sha256((lab.root_dir / "shared" / src.name).read_bytes()).hexdigest() == digest
    assert not [r for r in seen if r.method == "POST"], "resumed, not started again"
    patches = [r for r in seen if r.method == "PATCH"]
    assert {r.url.rsplit("/", 1)[1] for r in patches} == {upload_id}
    assert int(patches[0].headers["upload-offset"]) == hold_at
    sent = 0
    for r in patches:  # bytes each PATCH carried: the offsets before and after it
        response = r.response()
        assert response is not None and response.status == 204
        sent += int(response.headers["upload-offset"]) - int(r.headers["upload-offset"])
    assert sent == 24 * MiB - hold_at


def test_a_link_that_drops_every_few_seconds_still_lands(in_browser, lab, tmp_path):
    in_browser(lambda page: _flaky_link(page, lab, tmp_path))


def _flaky_link(page: Page, lab: JupyterProcess, tmp_path: Path) -> None:
    """480 MiB through the widget at 24 MiB/s over a link that goes offline (DevTools'
    emulation) for 1 s every 5 s: never failed, intact, at most 1.1 x its size on the wire
    (a TCP relay in front of the server counts every byte the browser sent)."""
    src = tmp_path / "flaky-widget.bin"
    size = 480 * MiB
    digest = random_file(src, size)
    notebook(
        lab.root_dir / "flaky.ipynb",
        "import hashlib, jupyter_tus\nw = jupyter_tus.UploadWidget(path='flaky')\nw",
        REPORT,
    )
    with Relay(lab.port) as wire:
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")

        def link(offline: bool) -> None:
            conditions = {"offline": offline, "latency": 0, "downloadThroughput": -1}
            conditions["uploadThroughput"] = 24 * MiB
            cdp.send("Network.emulateNetworkConditions", conditions)

        link(False)
        # JupyterLab's own "Server Connection Error" dialog (its polls see the drops too, and
        # say so a few seconds into one) is closed as a user would, whenever it shows up in
        # the way. Its button reads "Close" since JupyterLab 4.3, "Dismiss" before.
        lost = page.locator(".jp-Dialog", has_text="Server Connection Error")
        close = lost.get_by_role("button", name=re.compile(r"^(Close|Dismiss)$"))
        page.add_locator_handler(lost, lambda: close.click())
        page.goto(
            f"http://127.0.0.1:{wire.port}/lab/workspaces/flaky/tree/flaky.ipynb"
            f"?reset&token={lab.token}"
        )
        notebook_ready(page)
        run_cell(page, 0)
        widget_ready(page)
        before = wire.upstream
        page.set_input_files(".jtus-input", str(src))
        row = page.locator(".jtus-file")
        expect(row).to_have_attribute("data-state", "uploading")
        drops = 0
        waited = []
        while drops < 60:
            # The link's schedule (the fault being injected), not a wait for a state.
            time.sleep(4)
            if row.get_attribute("data-state") == "done":
                break
            link(True)
            drops += 1
            time.sleep(1)
            text = row.locator(".jtus-status").inner_text()
            if text.startswith("offline, waiting for the network"):
                waited.append(text)
            assert row.get_attribute("data-state") != "failed", text
            link(False)
        expect(row).to_have_attribute("data-state", "done")
        sent = wire.upstream - before
        assert drops >= 3, "the link dropped during the upload"
        assert waited, "the row never said it waits for the network"
        assert sent <= 1.1 * size, f"{sent / MiB:.1f} MiB on the wire for {size / MiB:.0f} MiB"
        run_cell(page, 1)
        match = kernel_report(page, 1)
        assert match[1] == "flaky-widget.bin"
        assert match[2] == digest
        assert match[3] == "1"
        print(f"widget, flaky link: {drops} drops, {sent / size:.3f} x the file on the wire")


def test_an_upload_a_script_left_is_listed_and_resumed_in_the_widget(in_browser, lab, tmp_path):
    in_browser(lambda page: _script_left(page, lab, tmp_path))


def _script_left(page: Page, lab: JupyterProcess, tmp_path: Path) -> None:
    """The server's list in the widget: an unfinished upload a script left in the widget's
    folder shows in the Uploads panel's words; picking the same file goes on from the
    server's offset (only the rest is sent) and lands."""
    src = tmp_path / "from-a-script.bin"
    size = 24 * MiB + 5
    digest = random_file(src, size)
    (lab.root_dir / "left-by-a-script").mkdir()
    server = SimpleNamespace(url=lab.url, auth=lab.auth, root=lab.root_dir)
    url = script_upload(server, src.read_bytes(), src.name, "left-by-a-script", send=10 * MiB)
    left_a_while_ago(server, url)
    notebook(
        lab.root_dir / "elsewhere.ipynb",
        "import hashlib, jupyter_tus\nw = jupyter_tus.UploadWidget(path='left-by-a-script')\nw",
        REPORT,
    )
    open_notebook(page, lab, "elsewhere.ipynb")
    run_cell(page, 0)
    widget_ready(page)
    listed = page.locator(".jtus-server")
    expect(listed).to_have_count(1)
    expect(listed).to_have_attribute("data-state", "interrupted")
    expect(listed.locator(".jtus-name")).to_have_text(src.name)
    expect(listed.locator(".jtus-status")).to_have_text(
        "interrupted at 41% · 10 MiB of 24 MiB → left-by-a-script/ · Resume and pick the file again"
    )
    patches = []
    page.on("request", lambda r: patches.append(r) if r.method == "PATCH" else None)
    posts = []
    page.on("request", lambda r: posts.append(r) if r.method == "POST" and "tus" in r.url else None)
    page.set_input_files(".jtus-input", str(src))
    expect(listed).to_have_count(0)
    row = page.locator(".jtus-file:not(.jtus-server)")
    expect(row).to_have_attribute("data-state", "done")
    assert row.get_attribute("data-upload-id") == url.rsplit("/", 1)[1]
    assert row.get_attribute("data-resumed-from") == str(10 * MiB)
    assert not posts, "the script's upload went on, no new one"
    carried = [TusLog.bytes_of(p) for p in patches]
    assert carried[0][0] == 10 * MiB
    assert sum(n for _, n in carried) == size - 10 * MiB
    run_cell(page, 1)
    match = kernel_report(page, 1)
    assert match[1] == src.name
    assert match[2] == digest
