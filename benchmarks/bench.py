"""Upload speed, side by side, in one run with interleaved rounds.

    make bench                                  # 1 GiB, 3 rounds, then the browser run
    .venv/bin/python benchmarks/bench.py --size 256M --rounds 3 [--only tus] [--no-browser]

Every row sends the same bytes from the page cache over loopback with one raw-HTTP
client (the body goes out with ``socket.sendfile``, so the client costs next to
nothing), to a fresh server process started for that row. Measured per row: MiB/s
(bytes / wall time from the first request to the last response, creation included),
the server's CPU time per GiB (user + system, whole tree: robust when the machine is busy),
the server's peak RSS growth over its idle RSS (psutil, whole process tree, sampled
every 10 ms), p50/p99 of a status GET polled every 10 ms on its own connection while
the upload runs, and the sha256 of the landed file (a wrong hash fails the row).
Dirty pages are flushed (``sync``) between rows, untimed, so no row pays for another.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import hashlib
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS = HERE / "peers"
PEER_PY = PEERS / "venv" / "bin" / "python"
PEER_PACKAGES = ["tuspyserver", "uvicorn", "uvloop", "py-spy"]
MiB = 1 << 20
BLOCK = 8 * MiB
WARM = 4096  # one small upload before measuring idle RSS: first-request imports are not growth
CONTENTS_CHUNK = 1 * MiB
OCTETS = base64.b64encode(
    b"application/octet-stream"
).decode()  # JupyterLab filebrowser/src/model.ts: CHUNK_SIZE
sys.path.insert(0, str(REPO / "tests"))

from servers import JupyterProcess, free_port  # noqa: E402


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


# ---------------------------------------------------------------- HTTP client


class Conn:
    """One keep-alive HTTP/1.1 connection; bodies from a file go out by sendfile."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        src=None,
        offset: int = 0,
        count: int = 0,
    ) -> http.client.HTTPResponse:
        headers = dict(headers or {})
        if src is not None:
            headers["Content-Length"] = str(count)
        elif body is not None:
            headers["Content-Length"] = str(len(body))
        c = self.c
        c.putrequest(method, path, skip_accept_encoding=True)
        for k, v in headers.items():
            c.putheader(k, v)
        c.endheaders(body)
        if src is not None:
            sent = 0
            while sent < count:
                n = c.sock.sendfile(src, offset + sent, count - sent)
                if not n:
                    raise OSError("sendfile sent nothing")
                sent += n
        r = c.getresponse()
        r.body = r.read()
        return r

    def close(self) -> None:
        self.c.close()


def expect(r: http.client.HTTPResponse, *codes: int) -> http.client.HTTPResponse:
    if r.status not in codes:
        raise RuntimeError(f"HTTP {r.status}: {r.body[:300]!r}")
    return r


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


class TusTarget:
    """A tus server: endpoint path on 127.0.0.1:port, where the uploaded file lands."""

    def __init__(self, port: int, endpoint: str, headers: dict[str, str], landed) -> None:
        self.port, self.endpoint, self.headers, self.landed = port, endpoint, headers, landed

    def upload(self, src, offset: int, size: int, name: str, patch: int | None) -> Path:
        conn = Conn(self.port)
        try:
            h = {**self.headers, "Tus-Resumable": "1.0.0"}
            r = expect(
                conn.request(
                    "POST",
                    self.endpoint,
                    {
                        **h,
                        "Upload-Length": str(size),
                        "Upload-Metadata": f"filename {b64(name)},filetype {OCTETS}",
                    },
                    body=b"",
                ),
                201,
            )
            location = urllib.parse.urlsplit(r.getheader("Location")).path
            sent = 0
            step = patch or size
            while sent < size:
                n = min(step, size - sent)
                r = expect(
                    conn.request(
                        "PATCH",
                        location,
                        {
                            **h,
                            "Upload-Offset": str(sent),
                            "Content-Type": "application/offset+octet-stream",
                        },
                        src=src,
                        offset=offset + sent,
                        count=n,
                    ),
                    204,
                )
                sent = int(r.getheader("Upload-Offset"))
            return self.landed(location.rsplit("/", 1)[-1], name)
        finally:
            conn.close()


# ---------------------------------------------------------------- servers


class Server:
    """A fresh server process for one row."""

    status_path = "/status"
    headers: dict[str, str] = {}

    def __init__(self, work: Path) -> None:
        self.work = work
        self.dir = work / "files"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Server:
        log = open(self.work / f"server-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=HERE, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.command()} exited {self.proc.returncode}")
            try:
                c = Conn(self.port)
                if c.request("GET", self.status_path, self.headers).status == 200:
                    c.close()
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.command()} not ready")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class TornadoCeiling(Server):
    def command(self):
        return [
            sys.executable,
            str(HERE / "servers" / "tornado_ceiling.py"),
            str(self.port),
            str(self.dir),
        ]


class Discard(Server):
    """``servers/discard.py``: reads every body into a reused buffer and drops it."""

    def command(self):
        return [sys.executable, str(HERE / "servers" / "discard.py"), str(self.port)]


class TusNode(Server):
    def command(self):
        return ["node", str(HERE / "servers" / "tus_node.mjs"), str(self.port), str(self.dir)]

    def target(self) -> TusTarget:
        return TusTarget(self.port, "/files", {}, lambda uid, name: self.dir / uid)


class TusPy(Server):
    def command(self):
        return [
            str(PEER_PY),
            str(HERE / "servers" / "tuspy_server.py"),
            str(self.port),
            str(self.dir),
        ]

    def target(self) -> TusTarget:
        return TusTarget(self.port, "/files", {}, lambda uid, name: self.dir / uid)


class Jupyter(Server):
    """A real ``jupyter server`` with the extension (tests/servers.py)."""

    def __init__(self, work: Path, args: list[str]) -> None:
        super().__init__(work)
        self.jp = JupyterProcess(
            self.dir, port=self.port, args=args, log_path=work / f"jupyter-{self.port}.log"
        )
        self.headers = self.jp.auth
        self.status_path = "/api/status"

    def start(self) -> Jupyter:
        self.jp.start()
        self.proc = self.jp.proc
        return self

    def target(self) -> TusTarget:
        return TusTarget(
            self.port, "/api/tus/uploads", self.headers, lambda uid, name: self.dir / name
        )


# ---------------------------------------------------------------- probes


class Probe:
    """Samples the server tree's RSS and polls its status URL on a second connection."""

    def __init__(self, server: Server | None) -> None:
        self.server = server
        self.stop_ev = threading.Event()
        self.rss_peak = 0
        self.lat: list[float] = []
        self.threads: list[threading.Thread] = []

    def tree_rss(self) -> int:
        total = 0
        try:
            p = psutil.Process(self.server.pid)
            for q in [p, *p.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += q.memory_info().rss
        except psutil.Error:
            pass
        return total

    def tree_cpu(self) -> float:
        total = 0.0
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(self.server.pid)
            for q in [p, *p.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    t = q.cpu_times()
                    total += t.user + t.system
        return total

    def __enter__(self) -> Probe:
        if self.server is None:
            return self
        # Idle = settled: a jupyter server keeps loading extensions for a while after
        # it answers; wait until the RSS stays within 1 MiB for a second (max 20 s).
        samples: list[int] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            samples = [*samples[-9:], self.tree_rss()]
            if len(samples) == 10 and max(samples) - min(samples) < MiB:
                break
            time.sleep(0.1)
        self.idle = statistics.median(samples)
        self.rss_peak = max(samples)
        self.threads = [
            threading.Thread(target=self._rss, daemon=True),
            threading.Thread(target=self._poll, daemon=True),
        ]
        self.cpu0 = self.tree_cpu()
        for t in self.threads:
            t.start()
        return self

    def _rss(self) -> None:
        while not self.stop_ev.is_set():
            self.rss_peak = max(self.rss_peak, self.tree_rss())
            time.sleep(0.01)

    def _poll(self) -> None:
        conn = Conn(self.server.port)
        while not self.stop_ev.is_set():
            t0 = time.perf_counter()
            r = conn.request("GET", self.server.status_path, self.server.headers)
            if r.status == 200:
                self.lat.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.01)
        conn.close()

    def __exit__(self, *exc) -> None:
        self.stop_ev.set()
        for t in self.threads:
            t.join()
        if self.server is not None:
            self.rss_peak = max(self.rss_peak, self.tree_rss())
            self.cpu = self.tree_cpu() - self.cpu0

    def result(self) -> dict:
        if self.server is None:
            return {}
        lat = sorted(self.lat)
        pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None  # noqa: E731
        return {
            "rss_growth_mib": (self.rss_peak - self.idle) / MiB,
            "rss_idle_mib": self.idle / MiB,
            "server_cpu_s": self.cpu,
            "status_p50_ms": pct(0.5),
            "status_p99_ms": pct(0.99),
            "status_n": len(lat),
        }


# ---------------------------------------------------------------- rows


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(BLOCK):
            h.update(b)
    return h.hexdigest()


class Bench:
    def __init__(self, src: Path, size: int, work: Path) -> None:
        self.src, self.size, self.work = src, size, work
        self.digest = sha256(src)
        q = size // 4
        self.parts = [(i * q, q if i < 3 else size - 3 * q) for i in range(4)]
        self.part_digests = []
        with open(src, "rb") as f:
            for off, n in self.parts:
                f.seek(off)
                self.part_digests.append(hashlib.sha256(f.read(n)).hexdigest())

    # each row: returns (seconds, [(landed path, expected sha256)], probe)

    def disk(self):
        dest = self.work / "disk.bin"
        t0 = time.perf_counter()
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        with open(self.src, "rb", buffering=0) as s, open(dest, "wb", buffering=0) as d:
            while n := s.readinto(buf):
                d.write(view[:n])
            os.fsync(d.fileno())
        return time.perf_counter() - t0, [(dest, self.digest)], Probe(None)

    def tornado(self, step: int | None):
        srv = TornadoCeiling(self.work).start()
        try:
            with open(self.src, "rb") as f:
                c = Conn(srv.port)
                expect(c.request("PUT", "/upload/warm.bin", src=f, count=WARM), 204)
                c.close()
            with open(self.src, "rb") as f, Probe(srv) as probe:
                conn = Conn(srv.port)
                t0 = time.perf_counter()
                sent = 0
                while sent < self.size:
                    n = min(step or self.size, self.size - sent)
                    expect(
                        conn.request(
                            "PUT",
                            "/upload/t.bin",
                            {"X-Offset": str(sent)},
                            src=f,
                            offset=sent,
                            count=n,
                        ),
                        204,
                    )
                    sent += n
                dt = time.perf_counter() - t0
                conn.close()
            return dt, [(srv.dir / "t.bin", self.digest)], probe, srv
        except BaseException:
            srv.stop()
            raise

    def discard(self):
        """One request to the raw-socket server that drops the bytes: the loopback
        ceiling of this client (nothing lands, nothing to check)."""
        srv = Discard(self.work).start()
        try:
            with open(self.src, "rb") as f, Probe(srv) as probe:
                conn = Conn(srv.port)
                t0 = time.perf_counter()
                expect(conn.request("PUT", "/upload", src=f, count=self.size), 204)
                dt = time.perf_counter() - t0
                conn.close()
            return dt, [], probe, srv
        except BaseException:
            srv.stop()
            raise

    def contents(self, args: list[str]):
        """JupyterLab's file browser upload: sequential PUT api/contents/<path>, JSON
        {type, format: base64, name, chunk: 1..n / -1 for the last, content}, 1 MiB each."""
        srv = Jupyter(self.work, args).start()
        try:
            name = "stock.bin"
            h = {**srv.headers, "Content-Type": "text/plain;charset=UTF-8"}
            c = Conn(srv.port)
            warm = {"type": "file", "format": "base64", "name": "warm.bin", "content": "AAAA"}
            expect(c.request("PUT", "/api/contents/warm.bin", h, json.dumps(warm).encode()), 201)
            c.close()
            with open(self.src, "rb") as f, Probe(srv) as probe:
                conn = Conn(srv.port)
                t0 = time.perf_counter()
                start = 0
                while start < self.size:
                    end = start + CONTENTS_CHUNK
                    chunk = -1 if end >= self.size else end // CONTENTS_CHUNK
                    data = f.read(CONTENTS_CHUNK)
                    body = json.dumps(
                        {
                            "type": "file",
                            "format": "base64",
                            "name": name,
                            "chunk": chunk,
                            "content": base64.b64encode(data).decode(),
                        }
                    ).encode()
                    expect(conn.request("PUT", f"/api/contents/{name}", h, body=body), 200, 201)
                    start = end
                dt = time.perf_counter() - t0
                conn.close()
            return dt, [(srv.dir / name, self.digest)], probe, srv
        except BaseException:
            srv.stop()
            raise

    def tus(self, srv: Server, mode: str):
        srv.start()
        try:
            target = srv.target()
            with open(self.src, "rb") as f:
                target.upload(f, 0, WARM, "warm.bin", None).unlink()  # first-request imports
            with open(self.src, "rb") as f, Probe(srv) as probe:
                t0 = time.perf_counter()
                if mode == "parallel":
                    with ThreadPoolExecutor(4) as ex:
                        futs = [
                            ex.submit(target.upload, f, off, n, f"p{i}.bin", None)
                            for i, (off, n) in enumerate(self.parts)
                        ]
                        landed = [fu.result() for fu in futs]
                    checks = list(zip(landed, self.part_digests, strict=True))
                elif mode == "cli":
                    checks = [(self.cli(srv), self.digest)]
                else:
                    step = {"8m": BLOCK, "1m": MiB}.get(mode)
                    p = target.upload(f, 0, self.size, "t.bin", step)
                    checks = [(p, self.digest)]
                dt = time.perf_counter() - t0
            return dt, checks, probe, srv
        except BaseException:
            srv.stop()
            raise

    def cli(self, srv: Jupyter) -> Path:
        """`jupyter tus upload` as a user runs it: a process of its own (startup, server
        discovery by OPTIONS, its state file), default chunk size; timed as a whole."""
        env = {**os.environ, "JUPYTER_DATA_DIR": str(self.work / "cli-data")}
        subprocess.run(
            [
                str(Path(sys.executable).parent / "jupyter-tus"),
                "upload",
                str(self.src),
                "--server",
                srv.jp.url,
                "--token",
                srv.jp.token,
                "--quiet",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            check=True,
        )
        return srv.dir / self.src.name


# ---------------------------------------------------------------- many small files


class SmallFiles:
    """Many small files as the browser sends them (issue 10), against one server (the
    default durability, ``complete``), the two ways interleaved in every round:

    - stock: JupyterLab's file browser, one ``PUT api/contents/<folder>/<name>`` with
      JSON ``{type: "file", format: "base64", name, content}`` per file
      (``packages/filebrowser/src/model.ts``, files under its 1 MiB chunk size);
    - tus: the jupyter-tus lab extension, one creation-with-upload ``POST`` per file
      (``Upload-Length`` and the whole body, ``application/offset+octet-stream``).

    ``threads`` client threads, each with its own keep-alive connection (a browser
    has 6 per host). Measured per batch: wall time from the first request to the last
    answer, and the server's CPU time (user + system). Every file is checked after
    the round. Files are made of random bytes, the same for every file."""

    def __init__(self, work: Path, count: int, size: int, threads: int) -> None:
        self.work, self.count, self.size, self.threads = work, count, size, threads
        self.data = os.urandom(size)
        self.b64 = base64.b64encode(self.data).decode()
        self.local = threading.local()

    def conn(self, srv: Jupyter) -> Conn:
        c = getattr(self.local, "conn", None)
        if c is None or c.port != srv.port:
            c = self.local.conn = Conn(srv.port)
        return c

    def put(self, srv: Jupyter, folder: str, i: int) -> None:
        name = f"f{i}.bin"
        body = json.dumps(
            {"type": "file", "format": "base64", "name": name, "content": self.b64}
        ).encode()
        h = {**srv.headers, "Content-Type": "text/plain;charset=UTF-8"}
        expect(self.conn(srv).request("PUT", f"/api/contents/{folder}/{name}", h, body), 201)

    def post(self, srv: Jupyter, folder: str, i: int) -> None:
        h = {
            **srv.headers,
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(self.size),
            "Upload-Metadata": f"filename {b64(f'f{i}.bin')},path {b64(folder)},filetype {OCTETS}",
            "Content-Type": "application/offset+octet-stream",
        }
        expect(self.conn(srv).request("POST", "/api/tus/uploads", h, self.data), 201)

    def batch(self, srv: Jupyter, ex: ThreadPoolExecutor, fn, folder: str) -> tuple[float, float]:
        (srv.dir / folder).mkdir()
        os.sync()  # untimed: no batch pays for another's writeback
        probe = Probe(srv)
        cpu0 = probe.tree_cpu()
        t0 = time.perf_counter()
        list(ex.map(lambda i: fn(srv, folder, i), range(self.count)))
        dt = time.perf_counter() - t0
        cpu = probe.tree_cpu() - cpu0
        names = sorted(p.name for p in (srv.dir / folder).iterdir())
        assert len(names) == self.count, f"{folder}: {len(names)} of {self.count} files"
        for name in names:
            assert (srv.dir / folder / name).read_bytes() == self.data, f"{folder}/{name}"
        return dt, cpu

    def run(self, rounds: int) -> dict:
        srv = Jupyter(self.work, []).start()
        out: dict[str, list] = {"stock": [], "tus": []}
        try:
            with ThreadPoolExecutor(self.threads) as ex:
                for way, fn in (("stock", self.put), ("tus", self.post)):
                    self.batch(srv, ex, fn, f"warm-{way}")  # first-request imports
                for rnd in range(rounds):
                    ways = [("stock", self.put), ("tus", self.post)]
                    for way, fn in ways if rnd % 2 == 0 else ways[::-1]:
                        dt, cpu = self.batch(srv, ex, fn, f"{way}-{rnd}")
                        out[way].append({"seconds": dt, "server_cpu_s": cpu})
                        print(
                            f"round {rnd + 1}/{rounds}  small files {way:5s}"
                            f" {dt:6.3f} s  server CPU {cpu:.3f} s",
                            flush=True,
                        )
        finally:
            srv.stop()
        return {
            "count": self.count,
            "size": self.size,
            "threads": self.threads,
            "rounds": rounds,
            **{
                way: {
                    "runs": runs,
                    "best_s": min(r["seconds"] for r in runs),
                    "median_s": statistics.median(r["seconds"] for r in runs),
                    "cpu_s": statistics.median(r["server_cpu_s"] for r in runs),
                }
                for way, runs in out.items()
            },
        }


def small_markdown(r: dict) -> str:
    stock, tus = r["stock"], r["tus"]
    lines = [
        f"{r['count']} files of {r['size']} bytes, {r['threads']} client threads, one server"
        f" (durability complete), {r['rounds']} interleaved rounds",
        "",
        "| upload | wall s, best (median) | files/s (best) | server CPU ms/file (median) |",
        "|---|---|---|---|",
    ]
    for label, x in (
        ("stock contents PUT (base64 JSON)", stock),
        ("tus creation-with-upload", tus),
    ):
        lines.append(
            f"| {label} | {x['best_s']:.3f} ({x['median_s']:.3f}) "
            f"| {r['count'] / x['best_s']:.0f} | {1000 * x['cpu_s'] / r['count']:.2f} |"
        )
    lines += [
        "",
        f"tus / stock wall time: {tus['best_s'] / stock['best_s']:.2f} (best),"
        f" {tus['median_s'] / stock['median_s']:.2f} (median); server CPU"
        f" {tus['cpu_s'] / stock['cpu_s']:.2f}",
    ]
    return "\n".join(lines) + "\n"


def rows(b: Bench, work: Path) -> dict:
    never = ["--TusApp.durability=never"]
    table = {
        "disk: 8 MiB writes + fsync": b.disk,
        "tornado ceiling: 1 request": lambda: b.tornado(None),
        "tornado ceiling: 8 MiB requests": lambda: b.tornado(BLOCK),
        "tornado ceiling: 1 MiB requests": lambda: b.tornado(MiB),
        "raw socket, bytes discarded (loopback ceiling)": b.discard,
        "stock contents API (1 MiB base64 JSON)": lambda: b.contents([]),
    }
    for label, mk in [
        ("@tus/server", lambda: TusNode(work)),
        ("tuspyserver", lambda: TusPy(work)),
        ("jupyter-tus never", lambda: Jupyter(work, never)),
        ("jupyter-tus complete", lambda: Jupyter(work, [])),
    ]:
        modes = [("one", "1 PATCH"), ("8m", "8 MiB PATCHes"), ("parallel", "4 parallel")]
        if label.startswith("jupyter-tus"):
            modes.insert(2, ("1m", "1 MiB PATCHes"))  # behind a 1 MiB proxy limit
            modes.append(("cli", "`jupyter tus upload`"))
        for mode, what in modes:
            table[f"{label}: {what}"] = lambda mk=mk, mode=mode: b.tus(mk(), mode)
    return table


def run_row(fn) -> dict:
    out = fn()
    dt, checks, probe = out[:3]
    srv = out[3] if len(out) > 3 else None
    try:
        ok = all(p.exists() and sha256(p) == d for p, d in checks)
        res = {"seconds": dt, "ok": ok, "checked": len(checks), **probe.result()}
    finally:
        for p, _ in checks:
            with contextlib.suppress(OSError):
                p.unlink()
        if srv is not None:
            srv.stop()
        os.sync()
    return res


def summarize(label: str, runs: list[dict], size: int) -> dict:
    speeds = [size / MiB / r["seconds"] for r in runs if r.get("ok")]
    out = {"label": label, "runs": runs, "ok": bool(runs) and all(r.get("ok") for r in runs)}
    out["checked"] = any(r.get("checked") for r in runs)
    if speeds:
        out.update(mibs=statistics.median(speeds), mibs_min=min(speeds), mibs_max=max(speeds))
    cpu = [r["server_cpu_s"] / (size / (1 << 30)) for r in runs if r.get("server_cpu_s")]
    if cpu:
        out["server_cpu_s_per_gib"] = statistics.median(cpu)
    for key in ("rss_growth_mib", "status_p50_ms", "status_p99_ms"):
        vals = [r[key] for r in runs if r.get(key) is not None]
        if vals:
            out[key] = statistics.median(vals) if key != "rss_growth_mib" else max(vals)
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    fs = (
        subprocess.run(["df", "-T", str(HERE)], capture_output=True, text=True)
        .stdout.splitlines()[-1]
        .split()[1]
    )
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{os.cpu_count()} x {cpu}, {psutil.virtual_memory().total / (1 << 30):.0f} GiB RAM, "
        f"{fs} filesystem, Linux {platform.release()}, Python {platform.python_version()}, "
        f"Node {node}"
    )


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(results: list[dict], size: int, rounds: int, when: str) -> str:
    by = {r["label"]: r for r in results}
    ceiling = by.get("tornado ceiling: 1 request", {}).get("mibs")
    disk = by.get("disk: 8 MiB writes + fsync", {}).get("mibs")
    lines = [
        f"{size / MiB:.0f} MiB, {rounds} interleaved rounds, {when}; {machine()}",
        "",
        "| path | MiB/s median (min-max) | x tornado 1 req | x disk+fsync "
        "| server CPU s/GiB | RSS growth MiB (max) | status p50 / p99 ms | sha256 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.get("mibs")
        lines.append(
            f"| {r['label']} | {fmt(m, '.0f')} "
            f"({fmt(r.get('mibs_min'), '.0f')}-{fmt(r.get('mibs_max'), '.0f')}) "
            f"| {fmt(m / ceiling if m and ceiling else None, '.2f')} "
            f"| {fmt(m / disk if m and disk else None, '.2f')} "
            f"| {fmt(r.get('server_cpu_s_per_gib'), '.2f')} "
            f"| {fmt(r.get('rss_growth_mib'), '.1f')} "
            f"| {fmt(r.get('status_p50_ms'), '.1f')} / {fmt(r.get('status_p99_ms'), '.1f')} "
            f"| {('ok' if r['checked'] else '-') if r['ok'] else 'FAIL'} |"
        )
    pairs = [  # issue 13, part 7: the per-request cost and the bulk path
        ("jupyter-tus never: 1 MiB PATCHes", "tornado ceiling: 1 MiB requests", 0.8),
        ("jupyter-tus never: 1 PATCH", "raw socket, bytes discarded (loopback ceiling)", 0.85),
    ]
    pairs = [
        (a, b, t) for a, b, t in pairs if by.get(a, {}).get("mibs") and by.get(b, {}).get("mibs")
    ]
    if pairs:
        lines += ["", "| ratio | medians | best rounds | target |", "|---|---|---|---|"]
    for a, b, target in pairs:
        x, y = by[a], by[b]
        lines.append(
            f"| {a} / {b} | {x['mibs'] / y['mibs']:.2f} | {x['mibs_max'] / y['mibs_max']:.2f}"
            f" | >= {target} |"
        )
    cli_rows = [r for r in results if r["label"].endswith(": `jupyter tus upload`")]
    if cli_rows:
        lines.append("")
    for r in cli_rows:
        server = r["label"].split(":")[0]
        one = by.get(f"{server}: 1 PATCH", {}).get("mibs")
        m = r.get("mibs")
        if m and one:
            lines.append(
                f"`jupyter tus upload` ({server}): {m / one:.2f} x the single PATCH to the "
                "same server (medians; the command's process start included)"
            )
    return "\n".join(lines) + "\n"


def ensure_peers() -> None:
    if not PEER_PY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS / "venv")], check=True)
        subprocess.run(
            [str(PEER_PY), "-m", "pip", "install", "-q", *PEER_PACKAGES],
            check=True,
        )
    if not (HERE / "node_modules" / "@tus" / "server").exists():
        subprocess.run(
            ["npm", "install", "--no-package-lock", "--no-audit", "--no-fund"], cwd=HERE, check=True
        )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", default="1G", help="upload size (1G, 256M, ...)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated substrings of the rows to run")
    ap.add_argument("--no-browser", action="store_true", help="skip the Playwright run")
    ap.add_argument(
        "--small",
        default="200x10000",
        help="the many-small-files section: COUNTxBYTES (issue 10: 200 files of 10 kB)",
    )
    ap.add_argument("--small-threads", type=int, default=6, help="its client threads")
    ap.add_argument("--small-rounds", type=int, default=7, help="its interleaved rounds")
    ap.add_argument(
        "--work", default=None, help="scratch directory (default: benchmarks/results/work)"
    )
    args = ap.parse_args()
    size = parse_size(args.size)
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    work = Path(args.work) if args.work else results_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    src = work / "source.bin"
    if not src.exists() or src.stat().st_size != size:
        with open(src, "wb") as f:
            left = size
            while left:
                n = min(BLOCK, left)
                f.write(os.urandom(n))
                left -= n
    b = Bench(src, size, work)
    table = rows(b, work)
    if args.only:
        keys = [k.strip() for k in args.only.split(",")]
        table = {k: v for k, v in table.items() if any(s in k for s in keys)}
    if any(k.startswith(("@tus/server", "tuspyserver")) for k in table):
        ensure_peers()  # only the peers' rows need them
    runs: dict[str, list[dict]] = {k: [] for k in table}
    order = list(table.items())
    small = None
    if not args.only or "small" in args.only:
        count, nbytes = (int(x) for x in args.small.lower().split("x"))
        small = SmallFiles(work, count, nbytes, args.small_threads).run(args.small_rounds)
    for rnd in range(args.rounds if order else 0):
        # rotate the order each round: no row always follows the same one
        k = rnd % len(order)
        for label, fn in order[k:] + order[:k]:
            try:
                res = run_row(fn)
            except Exception as exc:  # a failed row is reported, the run goes on
                res = {"ok": False, "error": repr(exc)}
            runs[label].append(res)
            speed = size / MiB / res["seconds"] if res.get("seconds") else 0
            print(
                f"round {rnd + 1}/{args.rounds}  {label:45s} {speed:7.0f} MiB/s"
                f"  rss +{res.get('rss_growth_mib', 0):.1f} MiB"
                f"  p99 {res.get('status_p99_ms') or 0:.1f} ms"
                f"  {'ok' if res.get('ok') else 'FAIL ' + res.get('error', 'sha256')}",
                flush=True,
            )
    results = [summarize(k, v, size) for k, v in runs.items()]
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = markdown(results, size, args.rounds, when) if results else ""
    if small is not None:
        md += ("\n" if md else "") + small_markdown(small)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    (results_dir / f"bench-{stamp}.md").write_text(md)
    (results_dir / f"bench-{stamp}.json").write_text(
        json.dumps(
            {
                "size": size,
                "rounds": args.rounds,
                "when": when,
                "machine": machine(),
                "rows": results,
                "small_files": small,
            },
            indent=1,
        )
    )
    print()
    print(md)
    print(f"written to {results_dir}/bench-{stamp}.md and .json")
    status = 0 if all(r["ok"] for r in results) else 1
    if not args.no_browser:
        status |= subprocess.call([sys.executable, str(HERE / "browser.py"), "--size", args.size])
    return status


if __name__ == "__main__":
    sys.exit(main())
