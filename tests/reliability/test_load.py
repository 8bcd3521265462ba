"""Load: 32 concurrent uploads of 32 MiB (single PATCH, chunked, paused and resumed,
checksummed, terminated) against one server process. Every finished file is checked,
terminated ones leave nothing, api/status answers every poll (its p50/p99 reported, not
asserted: no timed assertions in tests; that no store I/O runs on the event loop is
test_request_path's and test_s3_server's loop checks), and the server holds no more file
descriptors or memory afterwards.

``TUS_LOAD_UPLOADS`` and ``TUS_LOAD_MIB`` scale it."""

from __future__ import annotations

import base64
import hashlib
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

from .helpers import Client, env_int, record_figures, seed_from_env, server, wait_for

MiB = 1024 * 1024
RETRIES: list[str] = []
CONFLICTS: list[str] = []  # 409s answered to a resume (see run_upload)
RESETS: list[str] = []
UPLOADS = env_int("TUS_LOAD_UPLOADS", 32)
SIZE_MIB = env_int("TUS_LOAD_MIB", 32)


class Source:
    """Upload ``u``'s bytes, generated on the fly from one random MiB (rotated per
    MiB and per upload), so 1 GiB of distinct data needs no memory."""

    def __init__(self, base: bytes, u: int, size: int) -> None:
        self.base, self.u, self.size = base, u, size

    def block(self, j: int) -> bytes:
        k = (self.u * 131 + j * 17) % 4096
        return self.base[k : k + MiB]

    def range(self, start: int, end: int) -> bytes:
        out = bytearray()
        while start < end:
            j, off = divmod(start, MiB)
            piece = self.block(j)[off : off + (end - start)]
            out += piece
            start += len(piece)
        return bytes(out)

    def sha(self) -> str:
        h = hashlib.sha256()
        for j in range(self.size // MiB):
            h.update(self.block(j))
        return h.hexdigest()


class Body:
    """A streamed request body over ``src[start:end]``."""

    def __init__(self, src: Source, start: int, end: int) -> None:
        self.src, self.pos, self.end = src, start, end
        self.length = end - start

    def __len__(self) -> int:
        return self.length

    def read(self, n: int = -1) -> bytes:
        n = min(n if n and n > 0 else MiB, 256 * 1024, self.end - self.pos)
        data = self.src.range(self.pos, self.pos + n)
        self.pos += len(data)
        return data


def patch_then_drop(proc, uid: str, src: Source, offset: int, stop: int) -> None:
    """Pause as a browser does: send part of a PATCH's body, then drop the connection."""
    head = (
        f"PATCH {proc.base_url}api/tus/uploads/{uid} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{proc.port}\r\nAuthorization: token {proc.token}\r\n"
        "Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Upload-Offset: {offset}\r\nContent-Length: {src.size - offset}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", proc.port), timeout=60) as s:
        s.sendall(head.encode())
        pos = offset
        try:
            while pos < stop:
                end = min(pos + 256 * 1024, stop)
                s.sendall(src.range(pos, end))
                pos = end
        except (ConnectionResetError, BrokenPipeError):
            RESETS.append(uid)  # the server let go of it first: dropped all the same


def run_upload(proc, src: Source, mode: str, rng: random.Random) -> dict:
    c = Client(proc, timeout=120)
    name = f"load/u{src.u:02d}.bin"
    uid = c.create_id(src.size, {"filename": name.split("/")[1], "path": "load"})
    offset = 0

    def chunked(offset, step, checksum=False):
        while offset < src.size:
            end = min(offset + step, src.size)
            headers = {}
            if checksum:
                digest = hashlib.sha1(src.range(offset, end)).digest()
                headers["Upload-Checksum"] = "sha1 " + base64.b64encode(digest).decode()
            r = c.patch(uid, offset, Body(src, offset, end), headers=headers)
            if r.status_code == 409 and mode == "paused":
                # A PATCH this client gave up on (reset, timed out) can still be queued
                # for the lock on the server and write its bytes, the right ones for
                # its offset, after our HEAD: resume from the server's offset, as tus
                # clients do on 409. The landed file's sha256 is checked at the end.
                CONFLICTS.append(name)
                offset = int(c.head(uid).headers["Upload-Offset"])
                continue
            assert r.status_code == 204, (name, r.status_code, r.text)
            offset = int(r.headers["Upload-Offset"])
        return offset

    if mode == "single":
        r = c.patch(uid, 0, Body(src, 0, src.size))
        assert r.status_code == 204, (name, r.status_code, r.text)
    elif mode in ("chunked", "checksum"):
        chunked(0, 4 * MiB, checksum=mode == "checksum")
    elif mode == "paused":
        for _ in range(2):  # pause twice, mid-request, then resume from HEAD
            stop = offset + rng.randint(1, (src.size - offset) // 2)
            patch_then_drop(proc, uid, src, offset, stop)
            r = c.head(uid)
            assert r.status_code == 200, (name, r.status_code)
            offset = int(r.headers["Upload-Offset"])
            assert offset <= stop
        for _attempt in range(6):  # resume as tus clients do: retry from HEAD
            try:
                offset = chunked(int(c.head(uid).headers["Upload-Offset"]), 8 * MiB)
                break
            except requests.RequestException:
                RETRIES.append(name)
                c.session.close()
        assert offset == src.size, (name, offset)
    elif mode == "terminated":
        r = c.patch(uid, 0, Body(src, 0, src.size // 2))
        assert r.status_code == 204
        r = c.delete(uid)
        assert r.status_code == 204, r.text
    return {"uid": uid, "name": name, "mode": mode}


@pytest.fixture
def loaded(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    proc = server(root)
    proc.start()
    yield proc
    proc.stop()


def test_32_concurrent_uploads_of_32_mib(loaded, capsys):
    proc = loaded
    root = proc.root_dir
    rng = random.Random(seed_from_env())
    base = rng.randbytes(MiB + 4096)
    ps = psutil.Process(proc.proc.pid)
    # warm up (first imports, thread pools), then take the baseline
    for u in range(2):
        run_upload(proc, Source(base, 100 + u, MiB), "single", rng)
    fds0, rss0 = ps.num_fds(), ps.memory_info().rss

    modes = ["single", "chunked", "paused", "single", "checksum", "chunked", "paused", "terminated"]
    jobs = [(Source(base, u, SIZE_MIB * MiB), modes[u % len(modes)]) for u in range(UPLOADS)]
    latencies: list[float] = []
    stop = threading.Event()

    def poll_status():
        s = requests.Session()
        while not stop.is_set():
            t = time.monotonic()
            r = s.get(proc.url + "api/status", headers=proc.auth, timeout=30)
            assert r.status_code == 200
            latencies.append(time.monotonic() - t)
            stop.wait(0.05)

    started = time.monotonic()
    with ThreadPoolExecutor(UPLOADS + 1) as pool:
        poller = pool.submit(poll_status)
        futures = [
            pool.submit(run_upload, proc, src, mode, random.Random(rng.random()))
            for src, mode in jobs
        ]
        try:
            results = [f.result() for f in futures]
        finally:
            stop.set()
        poller.result()
    elapsed = time.monotonic() - started

    lost = 0
    for (src, mode), res in zip(jobs, results, strict=False):
        path = root / res["name"]
        if mode == "terminated":
            assert not path.exists()
            assert not list((root / ".tus").glob(res["uid"] + "*")), res
        else:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(MiB):
                    h.update(block)
            if h.hexdigest() != src.sha():
                lost += src.size
    assert lost == 0
    staged = [p.name for p in (root / ".tus").iterdir() if "." not in p.name]
    assert not staged, staged

    wait_for(lambda: ps.num_fds() <= fds0 + 2, 30, f"fds back near {fds0}", every=0.2)
    fds1, rss1 = ps.num_fds(), ps.memory_info().rss
    latencies.sort()
    p99 = latencies[max(int(len(latencies) * 0.99) - 1, 0)]
    figures = {
        "uploads": UPLOADS,
        "mib_each": SIZE_MIB,
        "seconds": round(elapsed, 1),
        "mib_per_s": round(UPLOADS * SIZE_MIB / elapsed, 1),
        "status_requests": len(latencies),
        "status_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "status_p99_ms": round(p99 * 1000, 1),
        "status_max_ms": round(latencies[-1] * 1000, 1),
        "fds_before": fds0,
        "fds_after": fds1,
        "rss_before_mib": round(rss0 / MiB, 1),
        "rss_after_mib": round(rss1 / MiB, 1),
        "bytes_lost": lost,
        "client_retries": len(RETRIES),
        "resume_conflicts": len(CONFLICTS),
        "paused_patches_reset_by_server": len(RESETS),
    }
    record_figures("load", figures)
    with capsys.disabled():
        print(f"\n[load] {figures}")
    assert rss1 - rss0 < 128 * MiB, figures
