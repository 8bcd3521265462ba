"""Many small files dropped on JupyterLab's file browser, stock upload vs tus, in the same
run (issue 10's "no slower than stock"): wall time from the drop (DevTools drag emulation,
real file-system entries) to every file on disk and listed, interleaved rounds, and the
longest main-thread task (PerformanceObserver 'longtask') while tus uploads.

    .venv/bin/python benchmarks/small_files.py --count 200 --size 10000 --rounds 2

"stock" sets the extension's ``sizeThreshold`` above the file size (JupyterLab's own
upload), "tus" sets it to 0. Not part of ``make test``: on a shared machine the ratio
moves with the load; run it on a quiet one. The browser test that asserts the ratio
belongs in tests/browser once the Uploads panel renders a drop of many files as one
batch row (``UploadBatch``): its per-row rendering is most of the gap today.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402

from tests.browser.conftest import CHROMIUM_ARGS, Lab, chromium_path  # noqa: E402
from tests.browser.test_filebrowser_upload import drop_on_file_browser  # noqa: E402

LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver(list => {
  for (const e of list.getEntries()) window.__longTasks.push(e.duration);
}).observe({type: 'longtask', buffered: true});
"""


def drop_and_time(browser: Browser, lab: Lab, folder: str, files: list[Path], size: int):
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
    page.evaluate("window.__longTasks = []")
    t0 = time.perf_counter()
    drop_on_file_browser(page, files)
    page.wait_for_function(
        "n => document.querySelectorAll('.jp-FileBrowser .jp-DirListing-item').length >= n",
        arg=len(files) + 1,
        timeout=300_000,
    )
    while True:
        try:
            if all((dest / f.name).stat().st_size == size for f in files):
                break
        except FileNotFoundError:
            pass
        page.wait_for_timeout(20)
    seconds = time.perf_counter() - t0
    longest = max(page.evaluate("window.__longTasks"), default=0)
    context.close()
    for f in files:
        assert (dest / f.name).read_bytes() == f.read_bytes(), f.name
    return seconds, longest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--server-args", nargs="*", default=[], help="e.g. --TusApp.durability=never")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="small-files-"))
    src = base / "src"
    src.mkdir()
    files = []
    for i in range(args.count):
        f = src / f"small-{i:04d}.bin"
        f.write_bytes(os.urandom(args.size))
        files.append(f)
    lab = Lab(base / "lab", args=args.server_args)
    lab.process.start()
    times: dict[str, list[float]] = {"stock": [], "tus": []}
    longest: dict[str, list[float]] = {"stock": [], "tus": []}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            for rnd in range(args.rounds):
                for mode in ("stock", "tus"):
                    threshold = args.size + 1 if mode == "stock" else 0
                    lab.set_settings(keepFileHandles=False, sizeThreshold=threshold)
                    seconds, long_task = drop_and_time(
                        browser, lab, f"{mode}-{rnd}", files, args.size
                    )
                    times[mode].append(seconds)
                    longest[mode].append(long_task)
                    print(
                        f"round {rnd + 1} {mode:5s} {seconds:6.2f} s"
                        f" (longest main-thread task {long_task:.0f} ms)",
                        flush=True,
                    )
            browser.close()
    finally:
        lab.process.stop()
    ratio = min(times["tus"]) / min(times["stock"])
    print(
        f"{args.count} x {args.size} B: stock {statistics.median(times['stock']):.2f} s, "
        f"tus {statistics.median(times['tus']):.2f} s (medians); best tus / best stock "
        f"{ratio:.2f}; longest main-thread task: stock {max(longest['stock']):.0f} ms,"
        f" tus {max(longest['tus']):.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
