"""The Uploads panel as a JupyterLab user meets it: the server's list (an upload a script
left unfinished, resumed by picking the file), the status-bar item and notifications, the
folder upload button, keyboard-only use with announcements, and the light and dark
screenshots of the docs."""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from collections.abc import Iterator
from urllib.parse import urljoin

import pytest
import requests
from playwright.sync_api import Browser, Page, Route

from .conftest import REPO, Lab, MiB, new_page, sha256
from .test_filebrowser_upload import (
    TusLog,
    named_copy,
    row,
    upload_with_button,
    wait_progress,
    wait_state,
)

DOCS_LIGHT = REPO / "docs" / "images" / "filebrowser-upload.png"
DOCS_DARK = REPO / "docs" / "images" / "filebrowser-upload-dark.png"


def script_upload(lab: Lab, data: bytes, name: str, folder: str, send: int) -> str:
    """What a script does with `requests`: create an upload, send its first `send` bytes,
    and stop. Returns the upload's URL."""
    tus = {**lab.auth, "Tus-Resumable": "1.0.0"}
    metadata = ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}"
        for k, v in {"filename": name, "path": folder}.items()
    )
    r = requests.post(
        lab.url + "api/tus/uploads",
        headers={**tus, "Upload-Length": str(len(data)), "Upload-Metadata": metadata},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    url = urljoin(lab.url, r.headers["Location"])
    r = requests.patch(
        url,
        headers={
            **tus,
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
        data=data[:send],
        timeout=60,
    )
    assert r.status_code == 204, r.text
    return url


def left_a_while_ago(lab: Lab, upload_url: str, seconds: float = 300) -> None:
    """The script stopped `seconds` ago (the server counts activity from its record's
    and data's times): the panel offers it for resumption instead of showing it as
    being sent elsewhere."""
    upload_id = upload_url.rstrip("/").rsplit("/", 1)[1]
    info = lab.root / ".tus" / f"{upload_id}.info"
    record = json.loads(info.read_text())
    record["created"] -= seconds
    info.write_text(json.dumps(record))
    then = time.time() - seconds
    for path in (info, lab.root / ".tus" / upload_id):
        os.utime(path, (then, then))


def use_theme(page: Page, theme: str) -> None:
    """Settings → Theme → `theme`, through the menu as a user does."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
    page.get_by_role("menuitem", name=theme, exact=True).click()
    # The theme's CSS is loaded behind a splash screen.
    page.wait_for_function("t => document.body.dataset.jpThemeName === t", arg=theme)
    page.locator("#jupyterlab-splash").wait_for(state="detached")


def wait_live(page: Page, text: str) -> None:
    page.wait_for_function(
        "t => document.querySelector('.jp-TusUploads-live').textContent.includes(t)",
        arg=text,
        timeout=30_000,
    )


def focused(page: Page) -> str:
    """The class list of the focused element, and the name of its row."""
    return page.evaluate(
        """() => {
            const el = document.activeElement;
            const li = el && el.closest('.jp-TusUpload');
            const name = li ? li.querySelector('.jp-TusUpload-name').textContent : '';
            return `${el ? el.className : ''} @ ${name}`;
        }"""
    )


def test_an_upload_a_script_left_is_resumed_from_the_panel(lab: Lab, open_lab, tmp_path):
    src = tmp_path / "from-script.bin"
    data = os.urandom(24 * MiB + 5)
    src.write_bytes(data)
    (lab.root / "incoming").mkdir()
    url = script_upload(lab, data, src.name, "incoming", send=10 * MiB)
    left_a_while_ago(lab, url)
    lab.set_settings(keepFileHandles=False)
    page = open_lab(throttle=None)
    log = TusLog(page)

    wait_state(page, src.name, "interrupted")
    listed = row(page, src.name)
    assert listed.get_attribute("data-source") == "server"
    status = listed.locator(".jp-TusUpload-status").inner_text()
    assert status == (
        "interrupted at 41% · 10 MiB of 24 MiB → incoming/ · Resume and pick the file again"
    ), status
    resume = listed.locator(".jp-TusUpload-resume")
    assert resume.get_attribute("aria-label") == (
        "Resume upload of from-script.bin (pick the file again)"
    )
    assert listed.locator("progress").get_attribute("aria-label") == "Upload of from-script.bin"

    # A file of another size is refused in the row.
    wrong = tmp_path / "other" / src.name
    wrong.parent.mkdir()
    wrong.write_bytes(b"not it")
    with page.expect_file_chooser() as chooser:
        resume.click()
    chooser.value.set_files(str(wrong))
    mismatch = "pick the file this upload started with"
    listed.locator(".jp-TusUpload-status", has_text=mismatch).wait_for()

    with page.expect_file_chooser() as chooser:
        resume.click()
    chooser.value.set_files(str(src))
    wait_state(page, src.name, "done")
    assert (lab.root / "incoming" / src.name).read_bytes() == data
    assert not log.posts(), "the script's upload went on, no new one"
    after = [TusLog.bytes_of(p) for p in log.patches()]
    assert {p.url for p in log.patches()} == {url}
    assert after[0][0] == 10 * MiB
    assert sum(n for _, n in after) == len(data) - 10 * MiB
    # One row for it, this page's now; the finished upload stays listed after a reload.
    assert row(page, src.name).count() == 1
    page.reload()
    wait_state(page, src.name, "done")
    finished = row(page, src.name)
    assert finished.get_attribute("data-source") == "server"
    assert finished.locator(".jp-TusUpload-open").is_visible()
    assert finished.locator(".jp-TusUpload-reveal").is_visible()
    # "Clear finished" removes it for good (this browser remembers it was cleared).
    page.locator(".jp-TusUploads-clear").click()
    page.wait_for_function(
        """name => ![...document.querySelectorAll('.jp-TusUpload-name')].some(
            n => n.textContent === name)""",
        arg=src.name,
    )
    page.reload()
    page.wait_for_selector(".jp-TusUploads[data-server-uploads]", state="attached")
    listed_again = requests.get(lab.url + "api/tus/uploads", headers=lab.auth, timeout=10)
    assert url.rsplit("/", 1)[1] in {u["id"] for u in listed_again.json()["uploads"]}
    assert row(page, src.name).count() == 0


def test_status_bar_item_and_notifications(lab: Lab, open_lab, big_file, tmp_path):
    src = named_copy(big_file[0], tmp_path, "status-bar.bin")
    lab.set_settings(keepFileHandles=False)
    # 8 MiB/s: 12 s of upload, for the status-bar item to be still there when clicked.
    page = open_lab(throttle=8 * MiB)
    upload_with_button(page, src)

    item = page.locator(".jp-TusStatusItem")
    item.wait_for()
    page.wait_for_function(
        "() => /^Uploading 1 file · [0-9]+%$/.test("
        "document.querySelector('.jp-TusStatusItem').textContent)"
    )
    # The panel is where a click on it leads (the file browser may be closed meanwhile).
    page.keyboard.press("Control+b")  # hide the left sidebar
    page.locator(".jp-FileBrowser").wait_for(state="hidden")
    item.click()
    page.locator(".jp-TusUploads").wait_for(state="visible")
    page.wait_for_function(
        "() => document.querySelector('.jp-TusUploads').contains(document.activeElement)"
    )

    toast = page.locator(".jp-Notification-Toast-success", has_text="status-bar.bin uploaded")
    toast.wait_for(timeout=60_000)
    assert "uploaded to /" in toast.inner_text()
    item.wait_for(state="hidden")
    assert toast.get_by_role("button", name="Open").count() == 1
    toast.get_by_role("button", name="Show in file browser").click()
    page.locator(".jp-DirListing-item.jp-mod-selected", has_text="status-bar.bin").wait_for()

    # A refusal that retrying cannot fix: an error notification.
    def refuse(route: Route) -> None:
        if route.request.method in ("POST", "PATCH"):
            route.fulfill(
                status=403,
                headers={"Tus-Resumable": "1.0.0", "Content-Type": "application/json"},
                body='{"message": "read-only folder"}',
            )
        else:
            route.continue_()

    page.route("**/api/tus/uploads**", refuse)
    small = tmp_path / "refused.txt"
    small.write_text("no")
    upload_with_button(page, small)
    error = page.locator(".jp-Notification-Toast-error", has_text="refused.txt")
    error.wait_for()
    assert "no permission to upload to /: read-only folder" in error.inner_text()
    wait_state(page, "refused.txt", "failed")


def test_the_folder_button_keeps_the_tree(lab: Lab, open_lab, tmp_path):
    folder = tmp_path / "picked"
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "top.txt").write_text("top")
    (folder / "a" / "mid.csv").write_text("x,y\n")
    (folder / "a" / "b" / "deep.bin").write_bytes(os.urandom(2 * MiB))
    (lab.root / "into").mkdir()
    lab.set_settings(keepFileHandles=False)
    page = open_lab(throttle=None)
    page.locator(".jp-DirListing-itemText", has_text="into").dblclick()
    page.locator(".jp-BreadCrumbs", has_text="into").wait_for()
    log = TusLog(page)
    # Beside the upload button (a toolbar item of the extension's settings).
    button = page.locator('.jp-FileBrowser-toolbar [data-command="jupyter-tus:upload-folder"]')
    assert "Upload a folder" in button.get_attribute("title")
    upload = page.locator(".jp-FileBrowser-toolbar .jp-id-upload").bounding_box()
    assert button.bounding_box()["x"] > upload["x"]
    with page.expect_file_chooser() as chooser:
        button.click()
    chooser.value.set_files(str(folder))
    for name in ("top.txt", "mid.csv", "deep.bin"):
        wait_state(page, name, "done")
    # One row with the total above the folder's files.
    total = page.locator(".jp-TusUpload-batch", has_text="3 files")
    total.locator(".jp-TusUpload-status", has_text="3 of 3 files · 100%").wait_for()
    assert total.get_attribute("data-state") == "done"
    base = lab.root / "into" / "picked"
    assert (base / "top.txt").read_text() == "top"
    assert (base / "a" / "mid.csv").read_text() == "x,y\n"
    assert sha256(base / "a" / "b" / "deep.bin") == sha256(folder / "a" / "b" / "deep.bin")
    assert len(log.posts()) == 3  # every file through tus
    page.locator(".jp-DirListing-itemText", has_text="picked").wait_for()


def test_keyboard_only_pause_resume_cancel(lab: Lab, open_lab, big_file, tmp_path):
    src = named_copy(big_file[0], tmp_path, "keys.bin")
    lab.set_settings(keepFileHandles=False)
    # 8 MiB/s: after Resume, 11 s of upload for the keys to reach Cancel in time.
    page = open_lab(throttle=8 * MiB)
    log = TusLog(page)
    upload_with_button(page, src)
    wait_progress(page, src.name, 0.1)
    the_row = row(page, src.name)
    pause = the_row.locator(".jp-TusUpload-pause")
    assert pause.get_attribute("aria-label") == "Pause upload of keys.bin"
    assert the_row.locator("progress").get_attribute("aria-valuetext").endswith(", uploading")
    pause.focus()  # the one pointer-free way in a test; from here on only keys

    page.keyboard.press("Enter")
    wait_state(page, src.name, "paused")
    wait_live(page, "Upload of keys.bin paused at")
    page.wait_for_function("() => document.activeElement.classList.contains('jp-TusUpload-resume')")
    assert focused(page).endswith("@ keys.bin")

    mark = log.mark()
    page.keyboard.press("Enter")
    wait_state(page, src.name, "uploading")
    wait_live(page, "Upload of keys.bin resumed")
    page.wait_for_function("() => document.activeElement.classList.contains('jp-TusUpload-pause')")

    page.keyboard.press("Tab")  # Pause → Cancel, the row's next control
    assert "jp-TusUpload-cancel" in focused(page), focused(page)
    with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        page.keyboard.press("Enter")
    assert deleted.value.status == 204
    wait_state(page, src.name, "cancelled")
    wait_live(page, "Upload of keys.bin cancelled")
    page.wait_for_function("() => document.activeElement.classList.contains('jp-TusUpload-remove')")
    assert log.patches(mark), "resumed"

    # Remove the row: the focus goes to the next row, or to the listing when none is left.
    page.keyboard.press("Enter")
    page.wait_for_function(
        """() => ![...document.querySelectorAll('.jp-TusUpload-name')].some(
            n => n.textContent === 'keys.bin')
            && document.querySelector('.jp-FileBrowser').contains(document.activeElement)"""
    )
    assert not (lab.root / src.name).exists()


def test_removing_a_row_moves_the_focus_to_the_next_row(lab: Lab, open_lab, tmp_path):
    lab.set_settings(keepFileHandles=False)
    page = open_lab()
    names = ["first-row.txt", "middle-row.txt", "last-row.txt"]
    for name in names:  # one at a time: a row each, the newest on top
        src = tmp_path / name
        src.write_text(name)
        upload_with_button(page, src)
        wait_state(page, name, "done")
    shown = page.locator(".jp-TusUpload-name").all_text_contents()
    assert [n for n in shown if n in names] == names[::-1]
    row(page, "middle-row.txt").locator(".jp-TusUpload-remove").focus()
    page.keyboard.press("Enter")
    # The row below takes its place under the keyboard (not the first row of the panel).
    page.wait_for_function(
        """() => ![...document.querySelectorAll('.jp-TusUpload-name')].some(
            n => n.textContent === 'middle-row.txt')"""
    )
    assert focused(page).endswith("@ first-row.txt"), focused(page)
    # Again with whatever rows the panel holds below (earlier tests' uploads, or none:
    # then the row above, last-row.txt).
    expected = page.evaluate(
        """() => {
            const rows = [...document.querySelectorAll('.jp-TusUpload')];
            const at = rows.findIndex(
                li => li.querySelector('.jp-TusUpload-name').textContent === 'first-row.txt');
            const usable = li => li.querySelector('.jp-TusUpload-buttons button:not([hidden])');
            const next =
                rows.slice(at + 1).find(usable) ?? rows.slice(0, at).reverse().find(usable);
            return next.querySelector('.jp-TusUpload-name').textContent;
        }"""
    )
    row(page, "first-row.txt").locator(".jp-TusUpload-remove").focus()
    page.keyboard.press("Enter")
    page.wait_for_function(
        """() => ![...document.querySelectorAll('.jp-TusUpload-name')].some(
            n => n.textContent === 'first-row.txt')"""
    )
    assert focused(page).endswith(f"@ {expected}"), focused(page)


@pytest.fixture
def fresh_lab(tmp_path) -> Iterator[Lab]:
    """A lab of its own: nothing from the other tests in the screenshots."""
    lab = Lab(tmp_path / "fresh")
    lab.process.start()
    yield lab
    lab.process.stop()


def test_screenshots_light_and_dark(
    fresh_lab: Lab, browser: Browser, big_file, tmp_path, results_dir
):
    """The docs' screenshots: an upload under way, a paused one, a finished one and one
    a script left, in JupyterLab Light and Dark."""
    lab = fresh_lab
    (lab.root / "data").mkdir(exist_ok=True)
    data = os.urandom(6 * MiB)
    left_a_while_ago(lab, script_upload(lab, data, "from-a-script.parquet", "data", send=2 * MiB))
    done = tmp_path / "results-2026-11.parquet"  # a type JupyterLab does not open
    done.write_text("a,b\n1,2\n" * 1000)
    paused = named_copy(big_file[0], tmp_path, "measurements-2026-11.h5")
    running = named_copy(big_file[0], tmp_path, "survey-2026-with-a-rather-long-name.bin")
    lab.set_settings(keepFileHandles=False)
    page = new_page(browser, lab, throttle=2 * MiB)
    wait_state(page, "from-a-script.parquet", "interrupted")
    upload_with_button(page, done)
    wait_state(page, done.name, "done")
    upload_with_button(page, paused)
    wait_progress(page, paused.name, 0.02)
    row(page, paused.name).locator(".jp-TusUpload-pause").click()
    wait_state(page, paused.name, "paused")
    upload_with_button(page, running)
    wait_progress(page, running.name, 0.03)
    page.locator(".jp-TusStatusItem").wait_for()
    # Wait for a speed and time left in the running row.
    row(page, running.name).locator(".jp-TusUpload-status", has_text="left").wait_for()

    clip = {"x": 0, "y": 0, "width": 720, "height": 720}
    light = results_dir / "uploads-panel-light.png"
    page.screenshot(path=str(light), clip=clip)
    use_theme(page, "JupyterLab Dark")
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'")
    # Theme CSS applied (the panel's background follows it).
    page.wait_for_function(
        """() => getComputedStyle(document.querySelector('.jp-TusUploads'))
            .backgroundColor === 'rgb(33, 33, 33)'"""
    )
    dark = results_dir / "uploads-panel-dark.png"
    page.screenshot(path=str(dark), clip=clip)
    use_theme(page, "JupyterLab Light")
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'true'")
    for shot, docs in ((light, DOCS_LIGHT), (dark, DOCS_DARK)):
        if not docs.exists() or os.environ.get("UPDATE_DOCS_SCREENSHOTS"):
            shutil.copyfile(shot, docs)
    for name in (running.name, paused.name):
        row(page, name).locator(".jp-TusUpload-cancel").click()
        wait_state(page, name, "cancelled")
    page.context.close()
