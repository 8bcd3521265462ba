"""Many small files dropped on JupyterLab's file browser, stock upload vs tus, in the same
run (issue 10's "no slower than stock"): wall time from the drop (DevTools drag emulation,
real file-system entries) to every file on disk and listed, interleaved rounds, and the
longest main-thread task (PerformanceObserver 'longtask') of each (the measure is in
tests/browser/small_files.py).

    .venv/bin/python benchmarks/small_files.py --count 200 --size 10000 --rounds 2

"stock" sets the extension's ``sizeThreshold`` above the file size (JupyterLab's own
upload), "tus" sets it to 0. Not part of ``make test``: on a shared machine the ratio
moves with the load; run it on a quiet one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.browser.conftest import CHROMIUM_ARGS, Lab, chromium_path  # noqa: E402
from tests.browser.small_files import drop_and_time, small_files  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--server-args", nargs="*", default=[], help="e.g. --TusApp.durability=never")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="small-files-"))
    files = small_files(base / "src", args.count, args.size)
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
                    seconds, long_task, _ = drop_and_time(browser, lab, f"{mode}-{rnd}", files)
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
