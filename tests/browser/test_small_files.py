"""Many small files dropped on the file browser: through tus at least as fast as
JupyterLab's own upload, measured in the same run (issue 10).

200 files of 10 kB, dropped with real file-system entries (DevTools' drag emulation), into
a fresh folder each round; wall time from the drop to every file listed and on disk.
Five rounds alternate stock and tus (the stock upload: the extension's ``sizeThreshold``
above the file size), and the median round of each is compared, so that neither a burst of
load on the machine nor one lucky round decides. The longest main-thread task
(PerformanceObserver 'longtask') while tus uploads is compared with the stock upload's own
in the same run.
``benchmarks/small_files.py`` runs the same with more rounds and other sizes.
"""

from __future__ import annotations

import statistics

from playwright.sync_api import Browser

from .conftest import Lab
from .small_files import drop_and_time, small_files


def test_200_small_files_no_slower_than_stock(lab: Lab, browser: Browser, tmp_path):
    count, size = 200, 10_000
    files = small_files(tmp_path / "src", count, size)
    seconds: dict[str, list[float]] = {"stock": [], "tus": []}
    longest: dict[str, list[float]] = {"stock": [], "tus": []}
    for rnd in range(5):
        for mode in ("stock", "tus"):
            threshold = size + 1 if mode == "stock" else 0
            lab.set_settings(keepFileHandles=False, sizeThreshold=threshold)
            t, task, tus_requests = drop_and_time(browser, lab, f"{mode}-{rnd}", files)
            seconds[mode].append(t)
            longest[mode].append(task)
            # The stock upload makes no tus request; tus one per file (each sent whole in
            # its creation request) and one listing of the server's uploads.
            assert tus_requests <= (count + 2 if mode == "tus" else 0), (mode, tus_requests)
    print(f"{count} x {size} B: seconds {seconds}, longest tasks (ms) {longest}")
    assert statistics.median(seconds["tus"]) <= statistics.median(seconds["stock"]), seconds
    assert max(longest["tus"]) <= max(200, max(longest["stock"])), longest
