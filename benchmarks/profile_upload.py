"""Flame graph of jupyter-tus receiving one upload, by py-spy (benchmarks/peers/venv).

    .venv/bin/python benchmarks/profile_upload.py --size 1G --mode one|8m \
        [--durability never|complete] [--out benchmarks/flame.svg]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import BLOCK, Jupyter, MiB, parse_size  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1G")
    ap.add_argument("--mode", default="one", choices=["one", "8m"])
    ap.add_argument("--durability", default="never")
    ap.add_argument("--out", default=str(HERE / "results" / "flame.svg"))
    args = ap.parse_args()
    size = parse_size(args.size)
    work = HERE / "results" / "profile"
    work.mkdir(parents=True, exist_ok=True)
    src = work / "source.bin"
    if not src.exists() or src.stat().st_size != size:
        with open(src, "wb") as out:
            subprocess.run(["head", "-c", str(size), "/dev/urandom"], stdout=out, check=True)
    srv = Jupyter(work, [f"--TusApp.durability={args.durability}"]).start()
    try:
        target = srv.target()
        spy = subprocess.Popen(
            [
                str(HERE / "peers" / "venv" / "bin" / "py-spy"),
                "record",
                "-p",
                str(srv.pid),
                "-r",
                "500",
                "-o",
                args.out,
                "-f",
                "raw" if args.out.endswith(".txt") else "flamegraph",
                "--nonblocking",
                "--threads",
            ]
        )
        time.sleep(1)
        with open(src, "rb") as f:
            t0 = time.perf_counter()
            landed = target.upload(f, 0, size, "p.bin", BLOCK if args.mode == "8m" else None)
            dt = time.perf_counter() - t0
        landed.unlink()
        spy.send_signal(2)
        spy.wait()
        print(f"{size / MiB / dt:.0f} MiB/s; flame graph in {args.out}")
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
