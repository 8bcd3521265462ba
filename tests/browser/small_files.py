"""Many small files dropped on the file browser, timed: the measure of
benchmarks/small_files.py (stock upload vs tus in the same run, issue 10).

200 files of 10 kB (say), dropped with real file-system entries (DevTools' drag emulation)
into a fresh folder; wall time from the drop to every file listed and on disk, the longest
main-thread task (PerformanceObserver 'longtask'), and the tus requests the page made.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from playwright.sync_api import Browser, Page

from ..servers import wait_until
from .conftest import Lab
from .test_filebrowser_upload import TusLog, drop_on_file_browser

LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver(list => {
  for (const e of list.getEntries()) window.__longTasks.push(e.duration);
}).observe({type: 'longtask', buffered: true});
"""


def drop_and_time(
    browser: Browser, lab: Lab, folder: str, files: list[Path]
) -> tuple[float, float, int]:
    """Drop ``files`` on a fresh folder ``folder``; (seconds until all are listed and on
    disk, longest main-thread task in ms, tus requests made)."""
    dest = lab.root / folder
    dest.mkdir()
    (dest / "README.md").write_text("# here\n")
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    context.add_init_script(LONG_TASKS)
    page: Page = context.new_page()
    page.on("dialog", lambda d: d.accept() if d.type == "beforeunload" else d.dismiss())
    page.goto(f"{lab.url}lab/tree/{folder}?token={lab.process.token}")
    page.wait_for_selector("body[data-jupyter-tus]", state="attached", timeout=60_000)
    page.locator(".jp-DirListing-itemText", has_text="README.md").wait_for()
    log = TusLog(page)
    page.evaluate("window.__longTasks = []")
    t0 = time.perf_counter()
    drop_on_file_browser(page, files)
    page.wait_for_function(
        "n => document.querySelectorAll('.jp-FileBrowser .jp-DirListing-item').length >= n",
        arg=len(files) + 1,
        timeout=300_000,
    )
    sizes = {f.name: f.stat().st_size for f in files}

    def all_there() -> bool:
        try:
            return all((dest / n).stat().st_size == s for n, s in sizes.items())
        except FileNotFoundError:
            return False

    wait_until(all_there, timeout=300, what="every file on disk", every=0.02)
    seconds = time.perf_counter() - t0
    longest = max(page.evaluate("window.__longTasks"), default=0)
    if log.requests:
        # The panel shows the drop as its total, not a row per file.
        page.locator(".jp-TusUpload-batch", has_text=f"{len(files)} files").wait_for()
        assert page.locator(".jp-TusUpload[data-source='page']").count() == 1
    requests = len(log.requests)
    context.close()
    for f in files:
        assert (dest / f.name).read_bytes() == f.read_bytes(), f.name
    return seconds, longest, requests


def small_files(folder: Path, count: int, size: int) -> list[Path]:
    folder.mkdir()
    files = []
    for i in range(count):
        f = folder / f"small-{i:04d}.bin"
        f.write_bytes(os.urandom(size))
        files.append(f)
    return files
