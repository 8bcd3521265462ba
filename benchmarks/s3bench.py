"""The S3 rows of ``make bench``: jupyter-tus with S3Store on SeaweedFS (``weed mini``)
beside a plain boto3 multipart upload of the same bytes to the same server, the ceiling
(issue 11, phase 2).

    .venv/bin/python benchmarks/s3bench.py --size 1G --rounds 3

Rows, each a fresh bucket, rounds interleaved:

- ``boto3 multipart (ceiling)``: CreateMultipartUpload, UploadPart of 16 MiB (S3Store's
  part_size) one after the other from the file, CompleteMultipartUpload: what S3Store
  does at best, without HTTP in front.
- ``boto3 multipart + server-side copy``: the same, then CopyObject to another key
  and DeleteObject of the first: S3Store's landing (it completes the multipart upload
  at a staging key and copies the object to its destination, see
  docs/object-storage.md), the ceiling of its design.
- ``jupyter-tus S3Store: 1 PATCH``, ``... 8 MiB PATCHes``: a real ``jupyter server``
  (tests/servers.py) with ``--TusApp.store_class=jupyter_tus.s3store.S3Store``, tus
  creation then the PATCHes over one keep-alive connection (1 MiB sends), until the last
  answer: the object has landed (CompleteMultipartUpload and the server-side copy to
  its destination included).

Per row: MiB/s (median, min-max), the ratio to the ceiling of the same round, the
CPU seconds per GiB of the jupyter server's process tree, and the server's RSS growth
during the upload (the largest of the rounds; sampled every 20 ms). The landed
object's sha256 is checked (untimed). Writes a markdown table to stdout and
benchmarks/results/.

``--baseline DIR``: also run the jupyter-tus rows with ``PYTHONPATH=DIR`` (another
checkout, e.g. ``git worktree add /tmp/before main``), interleaved with this one in
every round, rows marked ``(baseline)``: before and after under the same load.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import http.client
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from tests.s3server import SeaweedS3  # noqa: E402
from tests.servers import JupyterProcess  # noqa: E402

MiB = 1 << 20
PART = 16 * MiB  # S3Store's default part_size
SEND = 1 * MiB


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": MiB, "G": 1 << 30}
    text = text.strip().upper()
    if text[-1:] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MiB):
            h.update(block)
    return h.hexdigest()


def object_sha256(client, bucket: str, key: str) -> str:
    h = hashlib.sha256()
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    for block in body.iter_chunks(8 * MiB):
        h.update(block)
    return h.hexdigest()


def tree_cpu(pid: int) -> float:
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


class PeakRSS:
    """The largest RSS of ``pid`` (bytes) while in the ``with`` block, sampled."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.proc = psutil.Process(pid)
        self.every = every
        self.start = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.NoSuchProcess:
                return

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.start


def boto3_ceiling(
    s3: SeaweedS3, bucket: str, src: Path, size: int, land: bool = False
) -> tuple[float, str]:
    """Multipart upload of ``src`` (``land``: at a staging key, then copied to its
    destination on the server, as S3Store lands); wall seconds and the sha256."""
    client = s3.client()
    key = "staged.bin" if land else "ceiling.bin"
    start = time.perf_counter()
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    with open(src, "rb") as f:
        number = 1
        while block := f.read(PART):
            etag = client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=block
            )["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
            number += 1
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )
    if land:
        source = {"Bucket": bucket, "Key": key}
        client.copy_object(Bucket=bucket, Key="ceiling.bin", CopySource=source)
        client.delete_object(Bucket=bucket, Key=key)
        key = "ceiling.bin"
    wall = time.perf_counter() - start
    return wall, object_sha256(client, bucket, key)


def tus_upload(server: JupyterProcess, src: Path, size: int, patch: int | None) -> float:
    """Creation, then PATCHes of ``patch`` bytes (None: one), on one connection."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, blocksize=SEND, timeout=600)
    auth = {**server.auth, "Tus-Resumable": "1.0.0"}
    name = base64.b64encode(b"bench.bin").decode()
    start = time.perf_counter()
    conn.request(
        "POST",
        "/api/tus/uploads",
        headers={**auth, "Upload-Length": str(size), "Upload-Metadata": f"filename {name}"},
    )
    r = conn.getresponse()
    r.read()
    assert r.status == 201, r.status
    location = r.getheader("Location")
    step = patch or size
    with open(src, "rb") as f:
        offset = 0
        while offset < size:
            n = min(step, size - offset)
            body = _Slice(f, offset, n)
            conn.request(
                "PATCH",
                location,
                body=body,
                headers={
                    **auth,
                    "Content-Type": "application/offset+octet-stream",
                    "Upload-Offset": str(offset),
                    "Content-Length": str(n),
                },
            )
            r = conn.getresponse()
            r.read()
            assert r.status == 204, (r.status, r.reason)
            offset += n
    wall = time.perf_counter() - start
    conn.close()
    return wall


class _Slice:
    """``n`` bytes of an open file from ``offset``, read in SEND pieces (http.client
    streams an object with ``read``)."""

    def __init__(self, f, offset: int, n: int) -> None:
        self.f, self.left = f, n
        f.seek(offset)

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        size = self.left if size < 0 else min(size, self.left)
        block = self.f.read(size)
        self.left -= len(block)
        return block


def run(size: int, rounds: int, work: Path, baseline: Path | None = None) -> dict:
    src = work / "source.bin"
    with open(src, "wb") as f:
        left = size
        while left:
            n = min(8 * MiB, left)
            f.write(os.urandom(n))
            left -= n
    expected = file_sha256(src)
    results: dict[str, list[dict]] = {}
    with SeaweedS3(work / "seaweedfs") as s3:
        for _round in range(rounds):
            bucket = s3.new_bucket()
            wall, digest = boto3_ceiling(s3, bucket, src, size)
            s3.client().delete_object(Bucket=bucket, Key="ceiling.bin")
            results.setdefault("boto3 multipart, 16 MiB parts (ceiling)", []).append(
                {"wall": wall, "ok": digest == expected, "cpu": None}
            )
            bucket = s3.new_bucket()
            wall, digest = boto3_ceiling(s3, bucket, src, size, land=True)
            s3.client().delete_object(Bucket=bucket, Key="ceiling.bin")
            results.setdefault("boto3 multipart + server-side copy (S3Store's landing)", []).append(
                {"wall": wall, "ok": digest == expected, "cpu": None}
            )
            variants = [("", {})]
            if baseline is not None:
                variants.insert(0, (" (baseline)", {"PYTHONPATH": str(baseline)}))
            rows = [
                (label + mark, patch, env)
                for label, patch in (("1 PATCH", None), ("8 MiB PATCHes", 8 * MiB))
                for mark, env in variants
            ]
            for label, patch, extra_env in rows:
                bucket = s3.new_bucket()
                root = work / f"root-{bucket}"
                root.mkdir()
                server = JupyterProcess(
                    root,
                    args=[
                        "--TusApp.store_class=jupyter_tus.s3store.S3Store",
                        f"--S3Store.endpoint_url={s3.endpoint_url}",
                        f"--S3Store.bucket={bucket}",
                        "--ServerApp.log_level=WARN",
                    ],
                    env={**s3.env(), **extra_env},
                )
                server.start()
                try:
                    cpu0 = tree_cpu(server.proc.pid)
                    with PeakRSS(server.proc.pid) as rss:
                        wall = tus_upload(server, src, size, patch)
                    cpu = tree_cpu(server.proc.pid) - cpu0
                finally:
                    server.stop()
                digest = object_sha256(s3.client(), bucket, "bench.bin")
                s3.client().delete_object(Bucket=bucket, Key="bench.bin")
                results.setdefault(f"jupyter-tus S3Store: {label}", []).append(
                    {"wall": wall, "ok": digest == expected, "cpu": cpu, "rss": rss.growth}
                )
    return results


def table(results: dict, size: int) -> str:
    ceiling = results["boto3 multipart, 16 MiB parts (ceiling)"]
    lines = [
        "| path | MiB/s median (min-max) | x boto3 ceiling | server CPU s/GiB"
        " | RSS growth MiB (max) | sha256 |",
        "|---|---|---|---|---|---|",
    ]
    for label, runs in results.items():
        rates = [size / MiB / r["wall"] for r in runs]
        ratios = [c["wall"] / r["wall"] for c, r in zip(ceiling, runs, strict=True)]
        cpus = [r["cpu"] for r in runs if r["cpu"] is not None]
        cpu = f"{statistics.median(cpus) / (size / (1 << 30)):.2f}" if cpus else "-"
        rsss = [r["rss"] for r in runs if r.get("rss") is not None]
        rss = f"{max(rsss) / MiB:.0f}" if rsss else "-"
        ok = "ok" if all(r["ok"] for r in runs) else "WRONG"
        lines.append(
            f"| {label} | {statistics.median(rates):.0f} ({min(rates):.0f}-{max(rates):.0f})"
            f" | {statistics.median(ratios):.2f} | {cpu} | {rss} | {ok} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1G", help="bytes per upload (1G, 256M, ...)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--baseline", type=Path, help="a checkout to compare with (PYTHONPATH of its rows)"
    )
    args = parser.parse_args()
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="s3bench-") as tmp:
        results = run(size, args.rounds, Path(tmp), args.baseline)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = (
        f"S3: {size // MiB} MiB, {args.rounds} interleaved rounds, {when};"
        f" {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()},"
        " SeaweedFS weed mini on the same machine"
    )
    text = f"{head}\n\n{table(results, size)}\n"
    print(text)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    (out / f"s3-{stamp}.md").write_text(text)
    (out / f"s3-{stamp}.json").write_text(json.dumps({"size": size, "results": results}))
    if any(not r["ok"] for runs in results.values() for r in runs):
        sys.exit("a landed object's sha256 is wrong")


if __name__ == "__main__":
    main()
