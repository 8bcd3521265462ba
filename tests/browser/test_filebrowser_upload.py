"""The file browser's upload goes through tus: big files, reload and resume, cancel,
name clashes, 413 from a proxy, one-click resume with a kept file handle, and the stock
upload when the server extension is missing."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, Request, Route

from .conftest import Lab, MiB, goto_lab, sha256, wait_until


def named_copy(src: Path, tmp_path: Path, name: str) -> Path:
    """The same bytes under another name (a hard link: no copy of 100 MB)."""
    dst = tmp_path / name
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


def upload_with_button(page: Page, path: Path) -> None:
    """The toolbar's upload button and its file input, as a user picks a file."""
    with page.expect_file_chooser() as chooser:
        page.click(".jp-FileBrowser .jp-id-upload")
    chooser.value.set_files(str(path))


def drop_on_file_browser(page: Page, paths: list[Path]) -> None:
    """A real drop of files and folders from disk on the listing (DevTools' drag
    emulation: the page gets file-system-backed entries, as from a file manager)."""
    page.locator(".jp-FileBrowser .jp-DirListing-item").first.wait_for()
    box = page.locator(".jp-FileBrowser .jp-DirListing-content").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    cdp = page.context.new_cdp_session(page)
    data = {"items": [], "files": [str(p) for p in paths], "dragOperationsMask": 1}
    for kind in ("dragEnter", "dragOver", "drop"):
        cdp.send("Input.dispatchDragEvent", {"type": kind, "x": x, "y": y, "data": data})
    cdp.detach()


def row(page: Page, name: str):
    return page.locator(".jp-TusUpload", has=page.locator(".jp-TusUpload-name", has_text=name))


def wait_state(page: Page, name: str, state: str, timeout: float = 60_000) -> None:
    page.wait_for_function(
        """([name, state]) => [...document.querySelectorAll('.jp-TusUpload')].some(
            li => li.querySelector('.jp-TusUpload-name').textContent === name
                  && li.dataset.state === state)""",
        arg=[name, state],
        timeout=timeout,
    )


def wait_progress(page: Page, name: str, fraction: float) -> None:
    page.wait_for_function(
        """([name, f]) => [...document.querySelectorAll('.jp-TusUpload')].some(
            li => li.querySelector('.jp-TusUpload-name').textContent === name
                  && li.querySelector('progress').value >= f)""",
        arg=[name, fraction],
        timeout=60_000,
    )


class TusLog:
    """Every tus request the page makes (Playwright request events)."""

    def __init__(self, page: Page) -> None:
        self.requests: list[Request] = []
        page.on("request", self._on)

    def _on(self, request: Request) -> None:
        if "/api/tus/uploads" in request.url:
            self.requests.append(request)

    def mark(self) -> int:
        return len(self.requests)

    def patches(self, since: int = 0) -> list[Request]:
        return [r for r in self.requests[since:] if r.method == "PATCH"]

    def posts(self, since: int = 0) -> list[Request]:
        return [r for r in self.requests[since:] if r.method == "POST"]

    def resumed_at(self, since: int) -> int:
        """The offset the server reported to the HEAD that resumed the upload."""
        heads = [r for r in self.requests[since:] if r.method == "HEAD"]
        assert heads, "no HEAD: not resumed from the server's offset"
        response = heads[0].response()
        assert response is not None and response.status == 200
        return int(response.headers["upload-offset"])

    @staticmethod
    def bytes_of(patch: Request) -> tuple[int, int]:
        """(offset the PATCH started at, bytes it carried), from its headers."""
        start = int(patch.headers["upload-offset"])
        length = patch.all_headers().get("content-length")
        response = patch.response()
        assert response is not None and response.status == 204, patch.url
        end = int(response.headers["upload-offset"])
        if length is not None:
            assert int(length) == end - start
        return start, end - start


def test_upload_100mb_through_the_file_input(lab: Lab, open_lab, big_file, results_dir):
    src, digest = big_file
    (lab.root / "data").mkdir()
    (lab.root / "analysis.ipynb").write_text(
        '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    )
    (lab.root / "README.md").write_text("# Workspace\n")
    lab.set_settings(keepFileHandles=False)
    page = open_lab()
    log = TusLog(page)
    upload_with_button(page, src)

    wait_progress(page, src.name, 0.3)
    # While it runs, the row gives the amount, the speed and the time left. (Waited for,
    # not read once: the last 70 % take 3.5 s at 20 MiB/s, a loaded machine's screenshot
    # may take a good part of them, and "done" has no speed.)
    status = row(page, src.name).locator(".jp-TusUpload-status")
    status.filter(has_text=re.compile(r" of 100 MiB .*/s.*left")).wait_for(timeout=10_000)
    # (The docs' screenshots come from test_uploads_panel.py, light and dark.)
    shot = results_dir / "filebrowser-upload.png"
    page.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": 720, "height": 720})

    wait_state(page, src.name, "done")
    landed = lab.root / src.name
    assert sha256(landed) == digest
    # Finite chunks (8 MiB by default), one upload, every byte sent once.
    assert len(log.posts()) == 1
    sent = [TusLog.bytes_of(p) for p in log.patches()]
    assert max(n for _, n in sent) == 8 * MiB
    assert sum(n for _, n in sent) == src.stat().st_size
    # The file browser refreshed by itself.
    page.locator(".jp-DirListing-itemText", has_text=src.name).wait_for()


def test_reload_half_way_resumes_from_the_server_offset(
    lab: Lab, open_lab, big_file, tmp_path, results_dir
):
    src = named_copy(big_file[0], tmp_path, "resume-me.bin")
    size = src.stat().st_size
    lab.set_settings(keepFileHandles=False)
    page = open_lab()
    log = TusLog(page)
    upload_with_button(page, src)
    wait_progress(page, src.name, 0.5)
    upload_url = log.patches()[0].url

    goto_lab(page, lab, reload=True)
    wait_state(page, src.name, "interrupted")
    offset = lab.head_offset(upload_url)
    assert size * 0.4 < offset < size, offset
    status = row(page, src.name).locator(".jp-TusUpload-status").inner_text()
    assert "interrupted" in status and "pick the file again" in status, status
    page.screenshot(
        path=str(results_dir / "filebrowser-interrupted.png"),
        clip={"x": 0, "y": 0, "width": 720, "height": 720},
    )

    mark = log.mark()
    with page.expect_file_chooser() as chooser:
        row(page, src.name).locator(".jp-TusUpload-resume").click()
    chooser.value.set_files(str(src))
    wait_state(page, src.name, "done")

    assert sha256(lab.root / src.name) == big_file[1]
    assert not log.posts(mark), "resumed, not started again"
    held = offset
    offset = log.resumed_at(mark)
    assert held <= offset < size
    after = [TusLog.bytes_of(p) for p in log.patches(mark)]
    assert {r.url for r in log.patches(mark)} == {upload_url}
    assert after[0][0] == offset
    assert sum(n for _, n in after) == size - offset


def test_cancel_terminates_and_removes_staging_data(lab: Lab, open_lab, big_file, tmp_path):
    src = named_copy(big_file[0], tmp_path, "cancel-me.bin")
    lab.set_settings(keepFileHandles=False)
    # 8 MiB/s: Cancel must find the upload still running (10 s left after 20 %).
    page = open_lab(throttle=8 * MiB)
    log = TusLog(page)
    upload_with_button(page, src)
    wait_progress(page, src.name, 0.2)
    upload_id = log.patches()[0].url.rsplit("/", 1)[1]
    assert upload_id in lab.staging_files()

    with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        row(page, src.name).locator(".jp-TusUpload-cancel").click()
    assert deleted.value.status == 204
    wait_state(page, src.name, "cancelled")
    wait_until(
        lambda: not any(f.startswith(upload_id) for f in lab.staging_files()),
        what="staging data removed",
    )
    assert not (lab.root / src.name).exists()
    r = requests.head(
        log.patches()[0].url, headers={**lab.auth, "Tus-Resumable": "1.0.0"}, timeout=10
    )
    assert r.status_code in (404, 410)
    # Nothing left to resume after a reload.
    goto_lab(page, lab, reload=True)
    assert row(page, src.name).count() == 0


def test_name_clash_asks_before_overwriting(lab: Lab, open_lab, tmp_path):
    (lab.root / "notes.txt").write_text("old")
    src = tmp_path / "notes.txt"
    src.write_text("new contents")
    lab.set_settings(keepFileHandles=False)
    page = open_lab(throttle=None)

    upload_with_button(page, src)
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    assert "already exists" in dialog.inner_text()
    # The question comes before any row, and "Cancel" leaves none behind.
    no_row = """name => ![...document.querySelectorAll('.jp-TusUpload-name')].some(
        n => n.textContent === name)"""
    page.wait_for_function(no_row, arg=src.name, timeout=5000)
    dialog.locator("button", has_text="Cancel").click()
    dialog.wait_for(state="detached")
    page.wait_for_function(no_row, arg=src.name)
    assert (lab.root / "notes.txt").read_text() == "old"

    upload_with_button(page, src)
    page.locator(".jp-Dialog button", has_text="Overwrite").click()
    wait_state(page, src.name, "done")
    assert (lab.root / "notes.txt").read_text() == "new contents"


def test_a_name_taken_after_the_listing_was_shown_is_asked_about(lab: Lab, open_lab, tmp_path):
    """The uploader takes the shown listing for the overwrite check (no request): a
    file made since, which the listing does not show, is refused by the server at
    creation and asked about then, never replaced unasked."""
    src = tmp_path / "late.txt"
    src.write_text("new contents")
    lab.set_settings(keepFileHandles=False)
    page = open_lab(throttle=None)

    def stale(route: Route) -> None:  # listings as they were before late.txt came
        if route.request.method != "GET":
            route.continue_()
            return
        response = route.fetch()
        model = response.json()
        if isinstance(model.get("content"), list):
            model["content"] = [i for i in model["content"] if i["name"] != "late.txt"]
        route.fulfill(response=response, json=model)

    page.route("**/api/contents**", stale)
    (lab.root / "late.txt").write_text("old")
    upload_with_button(page, src)
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    assert "already exists" in dialog.inner_text()
    assert (lab.root / "late.txt").read_text() == "old"
    dialog.locator("button", has_text="Overwrite").click()
    wait_state(page, src.name, "done")
    assert (lab.root / "late.txt").read_text() == "new contents"
    page.unroute_all(behavior="ignoreErrors")


def test_a_proxy_limit_costs_one_refused_request_per_endpoint(lab: Lab, open_lab, tmp_path):
    """A proxy with a 1 MiB body limit (nginx's default) in front of the server."""
    src = tmp_path / "behind-nginx.bin"
    data = os.urandom(12 * MiB + 17)
    src.write_bytes(data)
    lab.set_settings(keepFileHandles=False)
    page = open_lab(throttle=None)
    refused: list[int] = []

    def proxy(route: Route) -> None:
        request = route.request
        if request.method == "PATCH":
            body = request.post_data_buffer or b""
            if len(body) > MiB:
                refused.append(len(body))
                route.fulfill(status=413, body="<html>413 Request Entity Too Large</html>")
                return
        route.continue_()

    page.route("**/api/tus/uploads/*", proxy)
    log = TusLog(page)
    upload_with_button(page, src)
    wait_state(page, src.name, "done")

    assert (lab.root / src.name).read_bytes() == data
    # One refused request: after it, chunks of 1 MiB (nginx's default limit).
    assert refused == [8 * MiB]
    accepted = [
        TusLog.bytes_of(p)
        for p in log.patches()
        if p.response() is not None and p.response().status == 204
    ]
    assert max(n for _, n in accepted) == MiB
    seen = page.console_messages_seen  # (413 as a word: not a port such as 34133 in a URL)
    notes = [t for kind, t in seen if re.search(r"\b413\b", t) and kind == "warning"]
    assert len(notes) == 1, notes
    # The next file (and the next page of this browser) starts with what went through:
    # one refused request per endpoint, not per file.
    second = tmp_path / "behind-nginx-too.bin"
    second.write_bytes(os.urandom(3 * MiB + 5))
    upload_with_button(page, second)
    wait_state(page, second.name, "done")
    other = page.context.new_page()
    other.route("**/api/tus/uploads/*", proxy)
    goto_lab(other, lab)
    third = tmp_path / "behind-nginx-three.bin"
    third.write_bytes(os.urandom(2 * MiB + 7))
    upload_with_button(other, third)
    wait_state(other, third.name, "done")
    assert refused == [8 * MiB]
    assert (lab.root / third.name).read_bytes() == third.read_bytes()


PICKER_FROM_OPFS = """
// Stand-in for the native File System Access picker, which Playwright cannot drive:
// hand out a handle on a file the test put in the origin-private file system.
window.showOpenFilePicker = async () => {
  const root = await navigator.storage.getDirectory();
  return [await root.getFileHandle('kept-handle.bin')];
};
"""


def test_one_click_resume_with_a_kept_file_handle(lab: Lab, open_lab, big_file, tmp_path):
    size = 64 * MiB
    source_dir = lab.root / "sources"
    source_dir.mkdir(exist_ok=True)
    src = source_dir / "kept-handle.bin"
    with open(big_file[0], "rb") as f:
        src.write_bytes(f.read(size))
    lab.set_settings(keepFileHandles=True)
    page = open_lab(init_script=PICKER_FROM_OPFS)
    page.evaluate(
        """async (url) => {
            const root = await navigator.storage.getDirectory();
            const handle = await root.getFileHandle('kept-handle.bin', {create: true});
            const writable = await handle.createWritable();
            const response = await fetch(url);
            await response.body.pipeTo(writable);
        }""",
        lab.url + "files/sources/kept-handle.bin",
    )
    choosers: list[object] = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    log = TusLog(page)
    page.click(".jp-FileBrowser .jp-id-upload")  # opens the (stand-in) picker
    # (64 MiB at 20 MiB/s: at 30 % the reload has 2.2 s before the upload would end.)
    wait_progress(page, "kept-handle.bin", 0.3)
    upload_url = log.patches()[0].url

    goto_lab(page, lab, reload=True)
    wait_state(page, "kept-handle.bin", "interrupted")
    status = row(page, "kept-handle.bin").locator(".jp-TusUpload-status").inner_text()
    assert "click Resume" in status, status
    offset = lab.head_offset(upload_url)
    mark = log.mark()
    row(page, "kept-handle.bin").locator(".jp-TusUpload-resume").click()
    wait_state(page, "kept-handle.bin", "done")

    assert not choosers, "resumed without asking for the file again"
    assert sha256(lab.root / "kept-handle.bin") == sha256(src)
    held = offset
    offset = log.resumed_at(mark)
    assert held <= offset < size
    after = [TusLog.bytes_of(p) for p in log.patches(mark)]
    assert after[0][0] == offset
    assert sum(n for _, n in after) == size - offset


@pytest.fixture
def lab_without_tus(tmp_path) -> Lab:
    lab = Lab(tmp_path, args=["--ServerApp.jpserver_extensions=jupyter_tus=False"])
    lab.process.start()
    yield lab
    lab.process.stop()


def test_stock_upload_stays_without_the_server_extension(lab_without_tus: Lab, browser, tmp_path):
    lab = lab_without_tus
    assert requests.options(lab.url + "api/tus/uploads", timeout=10).status_code == 404
    context = browser.new_context()
    try:
        page = context.new_page()
        messages: list[str] = []
        page.on("console", lambda m: messages.append(m.text))
        goto_lab(page, lab)
        assert page.evaluate("document.body.dataset.jupyterTus") == "stock"
        assert any("keeping JupyterLab's stock upload" in m for m in messages), messages
        src = tmp_path / "plain.txt"
        src.write_text("through the contents API")
        tus_requests: list[str] = []
        page.on("request", lambda r: "api/tus" in r.url and tus_requests.append(r.url))
        upload_with_button(page, src)
        wait_until(lambda: (lab.root / "plain.txt").exists(), what="stock upload")
        wait_until(
            lambda: (lab.root / "plain.txt").read_text() == "through the contents API",
            what="stock upload content",
        )
        assert not tus_requests
    finally:
        context.close()


def test_parallel_uploads_concatenate(lab: Lab, open_lab, big_file, tmp_path):
    """parallelUploads = 3: three partial uploads at once, joined by tus concatenation."""
    src = tmp_path / "parallel.bin"
    with open(big_file[0], "rb") as f:
        src.write_bytes(f.read(30 * MiB + 5))
    lab.set_settings(keepFileHandles=False, parallelUploads=3)
    page = open_lab(throttle=None)
    log = TusLog(page)
    upload_with_button(page, src)
    wait_state(page, src.name, "done")
    assert sha256(lab.root / src.name) == sha256(src)
    concat = [r.headers.get("upload-concat", "") for r in log.posts()]
    assert sorted(c.split(";")[0] for c in concat) == ["final", "partial", "partial", "partial"]


def test_drag_and_drop_keeps_the_folder_structure(lab: Lab, open_lab, tmp_path):
    folder = tmp_path / "dropped"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.csv").write_text("a,b\n1,2\n")
    (folder / "sub" / "two.txt").write_text("two")
    loose = tmp_path / "loose.bin"
    loose.write_bytes(os.urandom(3 * MiB))
    (lab.root / "README.md").write_text("# Workspace\n")  # a listing to drop on
    lab.set_settings(keepFileHandles=False)
    page = open_lab(throttle=None)
    log = TusLog(page)
    drop_on_file_browser(page, [folder, loose])
    for name in ("one.csv", "two.txt", "loose.bin"):
        wait_state(page, name, "done")
    assert (lab.root / "dropped" / "one.csv").read_text() == "a,b\n1,2\n"
    assert (lab.root / "dropped" / "sub" / "two.txt").read_text() == "two"
    assert (lab.root / "loose.bin").read_bytes() == loose.read_bytes()
    assert len(log.posts()) == 3  # every file through tus


def test_one_click_resume_of_a_dropped_file(lab: Lab, open_lab, big_file, tmp_path):
    """A dropped file's handle is kept (Chromium), so Resume needs no file dialog."""
    src = named_copy(big_file[0], tmp_path, "dropped-big.bin")
    size = src.stat().st_size
    (lab.root / "README.md").write_text("# Workspace\n")  # a listing to drop on
    lab.set_settings(keepFileHandles=True)
    page = open_lab()
    choosers: list[object] = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    log = TusLog(page)
    drop_on_file_browser(page, [src])
    wait_progress(page, src.name, 0.5)
    upload_url = log.patches()[0].url

    goto_lab(page, lab, reload=True)
    wait_state(page, src.name, "interrupted")
    status = row(page, src.name).locator(".jp-TusUpload-status").inner_text()
    assert "click Resume" in status, status
    offset = lab.head_offset(upload_url)
    mark = log.mark()
    row(page, src.name).locator(".jp-TusUpload-resume").click()
    wait_state(page, src.name, "done")

    assert not choosers, "resumed without asking for the file again"
    assert sha256(lab.root / src.name) == big_file[1]
    held = offset
    offset = log.resumed_at(mark)
    assert held <= offset < size
    after = [TusLog.bytes_of(p) for p in log.patches(mark)]
    assert after[0][0] == offset
    assert sum(n for _, n in after) == size - offset


def test_pause_and_resume_continue_from_the_server_offset_and_report_a_renamed_landing(
    lab: Lab, open_lab, big_file, tmp_path
):
    src = named_copy(big_file[0], tmp_path, "pause-me.bin")
    size = src.stat().st_size
    lab.set_settings(keepFileHandles=False)
    page = open_lab()
    log = TusLog(page)
    upload_with_button(page, src)
    wait_progress(page, src.name, 0.25)
    row(page, src.name).locator(".jp-TusUpload-pause").click()
    wait_state(page, src.name, "paused")
    upload_url = log.patches()[0].url
    before = log.mark()
    paused_at = lab.head_offset(upload_url)
    assert 0 < paused_at < size
    # someone takes the name meanwhile: the upload lands beside it, and the row says so
    (lab.root / src.name).write_text("someone else's")

    row(page, src.name).locator(".jp-TusUpload-resume").click()
    wait_state(page, src.name, "done")
    assert (lab.root / src.name).read_text() == "someone else's"
    assert sha256(lab.root / "pause-me (1).bin") == big_file[1]
    status = row(page, src.name).locator(".jp-TusUpload-status").text_content()
    assert "done · 100 MiB → pause-me (1).bin (the name was taken)" in status, status
    offset = log.resumed_at(before)
    assert offset >= paused_at
    after = [TusLog.bytes_of(p) for p in log.patches(before)]
    assert after[0][0] == offset
    assert sum(n for _, n in after) == size - offset
