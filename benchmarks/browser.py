"""The number users feel: one file dropped on JupyterLab's file browser, wall time from
the drop to the file landed (full size on disk, sha256 checked), stock upload vs tus.

    .venv/bin/python benchmarks/browser.py --size 1G --rounds 3

A real ``jupyter lab`` (default durability) and /usr/bin/chromium through Playwright.
The drop is JupyterLab's own native-drop path (``DirListing`` -> ``model.upload(file)``)
fed with a disk-backed File picked through an <input type=file>. "stock" sets the
jupyter-tus lab extension's ``sizeThreshold`` above the file size, so the extension
hands the file to JupyterLab's own uploader (1 MiB base64 JSON chunks, with its
large-file dialog, answered at once); "tus" sets it to 0 (the extension's defaults:
8 MiB PATCHes). Without the lab extension, "tus" falls back to tus-js-client in the
page (benchmarks/node_modules/tus-js-client).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench import MiB, machine, parse_size, sha256  # noqa: E402
from servers import JupyterProcess  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
TUS_JS = HERE / "node_modules" / "tus-js-client" / "dist" / "tus.min.js"

DROP = """([name]) => {
  const file = document.getElementById('bench-file').files[0];
  const target = document.querySelector('.jp-DirListing-content');
  const ev = new Event('drop', {bubbles: true, cancelable: true});
  Object.defineProperty(ev, 'dataTransfer', {value: {files: [file], types: ['Files']}});
  target.dispatchEvent(ev);
}"""

TUS_JS_UPLOAD = """([endpoint]) => new Promise((resolve, reject) => {
  const file = document.getElementById('bench-file').files[0];
  const xsrf = (document.cookie.match(/_xsrf=([^;]+)/) || [])[1] || '';
  const up = new tus.Upload(file, {
    endpoint, chunkSize: 8 * 1024 * 1024, headers: {'X-XSRFToken': decodeURIComponent(xsrf)},
    metadata: {filename: file.name, filetype: 'application/octet-stream'},
    storeFingerprintForResuming: false, onError: reject, onSuccess: resolve,
  });
  up.start();
})"""


def lab_has_tus(server: JupyterProcess) -> bool:
    r = requests.get(server.url + "lab/api/settings/jupyter-tus:plugin", headers=server.auth)
    return r.status_code == 200


def set_threshold(server: JupyterProcess, threshold: int) -> None:
    raw = json.dumps({"sizeThreshold": threshold})
    r = requests.put(
        server.url + "lab/api/settings/jupyter-tus:plugin",
        headers=server.auth,
        data=json.dumps({"raw": raw}),
    )
    r.raise_for_status()


def one(browser, server, src: Path, size: int, digest: str, mode: str, has_ext: bool) -> float:
    dest = server.root_dir / src.name
    if dest.exists():
        dest.unlink()
    if has_ext:
        set_threshold(server, size + 1 if mode == "stock" else 0)
    page = browser.new_page()
    page.on("console", lambda m: print("console:", m.text) if m.type == "error" else None)
    try:
        page.goto(server.url + f"lab?token={server.token}&reset")
        page.wait_for_selector(".jp-DirListing-content", timeout=120_000)
        page.evaluate(
            "() => { const i = document.createElement('input'); i.type = 'file';"
            " i.id = 'bench-file'; i.style.display = 'none'; document.body.appendChild(i); }"
        )
        page.set_input_files("#bench-file", str(src))
        time.sleep(2)  # let the lab settle (settings, listing refreshes)
        if mode == "tus" and not has_ext:
            page.add_script_tag(path=str(TUS_JS))
            t0 = time.perf_counter()
            page.evaluate(TUS_JS_UPLOAD, [server.url + "api/tus/uploads"])
        else:
            t0 = time.perf_counter()
            page.evaluate(DROP, [src.name])
            if mode == "stock":  # JupyterLab asks before uploading a file over 15 MiB
                page.click(".jp-Dialog .jp-mod-warn", timeout=60_000)
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            try:
                if dest.stat().st_size == size:
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        dt = time.perf_counter() - t0
    finally:
        page.close()
    if sha256(dest) != digest:
        raise RuntimeError(f"{mode}: sha256 of the landed file differs")
    dest.unlink()
    os.sync()
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", default="1G")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    size = parse_size(args.size)
    from playwright.sync_api import sync_playwright

    results_dir = HERE / "results"
    work = results_dir / "browser"
    root = work / "root"
    root.mkdir(parents=True, exist_ok=True)
    src = work / "upload-bench.bin"
    if not src.exists() or src.stat().st_size != size:
        with open(src, "wb") as f:
            left = size
            while left:
                n = min(8 * MiB, left)
                f.write(os.urandom(n))
                left -= n
    digest = sha256(src)
    times: dict[str, list[float]] = {"stock": [], "tus": []}
    with (
        JupyterProcess(root, app="lab", log_path=work / "lab.log") as server,
        sync_playwright() as pw,
    ):
        has_ext = lab_has_tus(server)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for rnd in range(args.rounds):
                for mode in ("stock", "tus"):
                    dt = one(browser, server, src, size, digest, mode, has_ext)
                    times[mode].append(dt)
                    print(
                        f"browser round {rnd + 1}/{args.rounds} {mode:5s} {dt:7.1f} s"
                        f"  {size / MiB / dt:6.0f} MiB/s",
                        flush=True,
                    )
        finally:
            browser.close()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    tus_how = "jupyter-tus lab extension" if has_ext else "tus-js-client in the page"
    med = {k: statistics.median(v) for k, v in times.items()}
    md = [
        f"Browser: {size / MiB:.0f} MiB dropped on the JupyterLab file browser, chromium,"
        f" {args.rounds} interleaved rounds, {when}; {machine()}",
        "",
        "| upload | wall time s, median (min-max) | MiB/s |",
        "|---|---|---|",
        f"| JupyterLab stock (1 MiB base64 JSON chunks) | {med['stock']:.1f}"
        f" ({min(times['stock']):.1f}-{max(times['stock']):.1f})"
        f" | {size / MiB / med['stock']:.0f} |",
        f"| tus ({tus_how}) | {med['tus']:.1f}"
        f" ({min(times['tus']):.1f}-{max(times['tus']):.1f}) | {size / MiB / med['tus']:.0f} |",
        "",
        f"tus is {med['stock'] / med['tus']:.1f} x faster.",
    ]
    text = "\n".join(md) + "\n"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    (results_dir / f"browser-{stamp}.md").write_text(text)
    (results_dir / f"browser-{stamp}.json").write_text(
        json.dumps({"size": size, "when": when, "tus": tus_how, "seconds": times}, indent=1)
    )
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
