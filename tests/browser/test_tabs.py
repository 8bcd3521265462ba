"""Two tabs of one browser, one file: the same file dropped into the same folder from two
pages of the same JupyterLab has one driver (Web Locks); the other page shows it running
there with its progress, sends nothing against it, and takes over only when the first
page is gone."""

from __future__ import annotations

import re

from playwright.sync_api import Page, Response

from .conftest import Lab, MiB, goto_lab, sha256
from .test_filebrowser_upload import TusLog, drop_on_file_browser, wait_progress, wait_state

ROW_TEXT = """name => [...document.querySelectorAll('.jp-TusUpload')]
    .filter(li => li.querySelector('.jp-TusUpload-name').textContent === name)
    .map(li => li.dataset.state + ' ' + li.textContent)"""


def sent(log: TusLog) -> list[str]:
    """The requests of a page against uploads (the server's list, GET, aside)."""
    return [f"{r.method} {r.url}" for r in log.requests if r.method != "GET"]


def mirrored_percent(page: Page, name: str) -> int:
    """The percentage an 'elsewhere' row shows (the driver's progress), else -1."""
    for text in page.evaluate(ROW_TEXT, name):
        m = re.search(r"running in another tab[^·]*· (\d+)%", text)
        if text.startswith("elsewhere") and m:
            return int(m.group(1))
    return -1


def test_two_tabs_one_file_one_driver(lab: Lab, open_lab, big_file, tmp_path):
    size = 64 * MiB
    src = tmp_path / "two-tabs.bin"
    with open(big_file[0], "rb") as f:
        src.write_bytes(f.read(size))
    (lab.root / "README.md").write_text("# Workspace\n")  # a listing to drop on
    lab.set_settings(keepFileHandles=False)

    first = open_lab(throttle=5 * MiB)
    second = first.context.new_page()  # same browser profile: same locks and storage
    second.on("dialog", lambda d: d.accept() if d.type == "beforeunload" else d.dismiss())
    goto_lab(second, lab)
    conflicts: list[str] = []

    def on_response(response: Response) -> None:
        if "/api/tus/uploads" in response.url and response.status == 409:
            conflicts.append(f"{response.request.method} {response.url}")

    for page in (first, second):
        page.on("response", on_response)
    log_first, log_second = TusLog(first), TusLog(second)

    drop_on_file_browser(first, [src])
    wait_progress(first, src.name, 0.1)
    drop_on_file_browser(second, [src])
    wait_state(second, src.name, "elsewhere")
    # The second page shows the first one's progress, and sends nothing.
    seen = mirrored_percent(second, src.name)
    second.wait_for_function(
        f"name => ({ROW_TEXT})(name).some(t => /running in another tab[^·]*· (\\d+)%/.test(t)"
        f" && Number(t.match(/· (\\d+)%/)[1]) > {max(seen, 10)})",
        arg=src.name,
        timeout=60_000,
    )
    assert not sent(log_second)

    # The first page goes away half way: the second takes over from the server's offset.
    wait_progress(first, src.name, 0.4)
    upload_url = log_first.patches()[0].url
    first.close(run_before_unload=False)
    wait_state(second, src.name, "done", timeout=120_000)

    assert sha256(lab.root / src.name) == sha256(src)
    assert len(conflicts) <= 1, conflicts
    assert not log_second.posts(), "taken over, not started again"
    assert {p.url for p in log_second.patches()} == {upload_url}
    states = second.evaluate(ROW_TEXT, src.name)
    assert states and all(s.startswith("done") for s in states), states
    assert not second.locator(".jp-TusUpload[data-state='failed']").count()


def test_the_other_tab_sees_the_file_land(lab: Lab, open_lab, tmp_path):
    src = tmp_path / "lands-once.bin"
    src.write_bytes(bytes(range(256)) * (48 * 4096))  # 48 MiB
    (lab.root / "README.md").write_text("# Workspace\n")
    lab.set_settings(keepFileHandles=False)
    # 4 MiB/s: 12 s, for the drop on the second page to meet the first one's upload
    # under way (not landed), even on a loaded machine.
    first = open_lab(throttle=4 * MiB)
    second = first.context.new_page()
    goto_lab(second, lab)
    log_second = TusLog(second)

    drop_on_file_browser(first, [src])
    wait_progress(first, src.name, 0.05)
    drop_on_file_browser(second, [src])
    wait_state(second, src.name, "elsewhere")
    wait_state(first, src.name, "done", timeout=120_000)
    wait_state(second, src.name, "done")
    assert not sent(log_second)
    assert not second.locator(".jp-Dialog").count(), "no overwrite question"
    assert (lab.root / src.name).read_bytes() == src.read_bytes()
    # The second page's listing shows the file too.
    second.locator(".jp-DirListing-itemText", has_text=src.name).wait_for()
