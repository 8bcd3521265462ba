"""Upload files and folders to a Jupyter server's tus endpoint, resumably: the engine
behind ``jupyter tus upload`` (``cli.py``) and a Python API for notebooks and pipelines.

    from jupyter_tus.client import upload
    upload(["data/"], server="https://hub.example.org/user/alice/", to="inbox")
    # -> ["inbox/data/a.csv", "inbox/data/sub/b.parquet"]

The HTTP client is httpx (streaming request bodies from the file, keep-alive per
thread), not tuspy: tuspy has no concatenation (parallel partial uploads), reads each
chunk whole into memory, opens a new connection per PATCH, retries a fixed number of
times without backoff, and cannot shrink its chunks on a proxy's 413. The tus framing
(headers, offsets, metadata) is the protocol's own (tus 1.0.0, https://tus.io/protocols/
resumable-upload) and lives here; bodies, connections and TLS are httpx's.

How a file travels (docs/cli.md has the user's view):

- The server is asked once (OPTIONS on ``{base_url}api/tus/uploads``) what it takes:
  ``Tus-Max-Size``, the checksum algorithms, and the chunk limit (``Upload-Limit:
  max-append-size=N`` or ``Jupyter-Tus-Max-Chunk-Size: N``, also read from every later
  answer). A 413 from something that is not the tus server (no ``Tus-Resumable``) halves
  the chunk size for the rest of the run.
- Every upload is recorded, as soon as it exists, in a small JSON state file per server
  under the user's Jupyter data dir (``<data_dir>/tus/uploads-<key>.json``), keyed by a
  fingerprint of the source (absolute path, size, mtime) and its destination (folder,
  name, overwrite). The same command run again finds it, asks the server for the offset
  (HEAD) and sends only the rest. The entry goes once the file has landed.
- Network errors, 5xx, 423 and 409 (offset mismatch) are retried with capped
  exponential backoff, reset after every chunk that lands; a run gives up only after
  ``patience`` seconds without a chunk landing. Refusals that retrying cannot fix
  (a taken name, a refused destination, too big, no permission, a wrong token) end that
  file with the server's own message (``UploadRefused``).
- ``parallel=N``: N files at once, and a big file as N partial uploads (each resumable
  on its own) joined by the concatenation extension.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import http.client
import json
import os
import random
import re
import sys
import threading
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

TUS_VERSION = "1.0.0"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
LANDED_PATH_HEADER = "Jupyter-Tus-Path"
CHUNK_LIMIT_HEADER = "Jupyter-Tus-Max-Chunk-Size"

MiB = 1024 * 1024
DEFAULT_CHUNK_SIZE = 64 * MiB
MIN_CHUNK_SIZE = 64 * 1024  # halving on 413 stops here: a proxy refusing 64 KiB is broken
PIECE = 1 * MiB  # bodies are read from the file and sent in pieces of this size
# Files up to this size go with their creation (creation-with-upload): one request
# each. Bigger ones are created first, so a refusal (a taken name) costs no bytes.
SMALL_FILE = 1 * MiB
MIN_PART = 8 * MiB  # a file is split into partial uploads only if each part gets this much
FIRST_DELAY = 0.5  # seconds before the first retry; doubles up to MAX_DELAY
MAX_DELAY = 30.0
DEFAULT_PATIENCE = 15 * 60.0  # seconds without a chunk landing before a run gives up
CLOCK_SLACK = 120.0  # seconds: the server's clock may differ from ours (listing times)
CHECKSUM_RETRIES = 3  # consecutive 460 answers for one chunk before the file fails
TIMEOUT = httpx.Timeout(connect=30.0, read=300.0, write=120.0, pool=60.0)
# PATCH bodies to a plain-HTTP server without a proxy go by socket.sendfile (the kernel
# sends from the page cache: no copy through Python); False (or $JUPYTER_TUS_SENDFILE=0)
# sends them through httpx, as for https.
USE_SENDFILE = hasattr(os, "sendfile") and os.environ.get("JUPYTER_TUS_SENDFILE") != "0"


# --------------------------------------------------------------------------- errors


class TusClientError(Exception):
    """Base of what this module raises."""


class ServerNotFound(TusClientError):
    """No ``server`` given and no running local Jupyter server found."""


class NotTusServer(TusClientError):
    """The URL answers, but not as a jupyter-tus endpoint (no extension, a login page,
    a stopped hub server)."""


class EndpointUnavailable(TusClientError):
    """The jupyter-tus endpoint answers (with ``Tus-Resumable``) but refuses uploads:
    its store is unavailable (a bucket missing or denied, a staging folder refused;
    503), with the server's reason in the message."""


class AuthenticationFailed(TusClientError):
    """The server refused the token (401/403 on OPTIONS)."""


class UploadRefused(TusClientError):
    """A refusal that retrying cannot fix: a taken name (409), a refused destination or
    no permission (403), too big (413), a bad request (400), the upload removed on the
    server (404/410). ``status`` is the HTTP status, the message the server's."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GaveUp(TusClientError):
    """Nothing landed for ``patience`` seconds while retrying; the upload stays
    resumable (the state file keeps it)."""


class Cancelled(TusClientError):
    """The run was interrupted (Ctrl-C); the uploads stay resumable."""


class UploadFailed(TusClientError):
    """Some files did not land. ``landed``: the ``Landed`` of those that did;
    ``failures``: ``[(source path, exception)]``."""

    def __init__(self, landed: list[Landed], failures: list[tuple[str, Exception]]) -> None:
        lines = [f"{src}: {exc}" for src, exc in failures]
        super().__init__(f"{len(failures)} file(s) did not land:\n" + "\n".join(lines))
        self.landed = landed
        self.failures = failures


class _Retry(Exception):
    """Internal: this step failed in a way that may pass; retry after a backoff."""

    def __init__(self, message: str, *, rehead: bool = True, delay: bool = True) -> None:
        super().__init__(message)
        self.rehead = rehead  # ask the server for the offset before going on
        self.delay = delay  # wait (backoff) before the next try


# --------------------------------------------------------------------------- results


@dataclasses.dataclass
class Landed:
    """One file that landed: ``path`` is where (relative to the server's root_dir, as
    ``Jupyter-Tus-Path`` says: ``name (1).ext`` when the name was taken meanwhile)."""

    source: str
    path: str
    id: str
    size: int
    seconds: float
    sha256: str | None = None
    requested: str = ""  # the destination asked for; differs from path when renamed

    @property
    def renamed(self) -> bool:
        return bool(self.requested) and self.requested != self.path

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "source": self.source,
            "path": self.path,
            "size": self.size,
            "seconds": round(self.seconds, 3),
        }
        if self.sha256 is not None:
            data["sha256"] = self.sha256
        if self.renamed:
            data["requested"] = self.requested
        return data


# --------------------------------------------------------------------------- server


@dataclasses.dataclass
class Server:
    """A Jupyter server: ``url`` with its base_url and a trailing slash
    (``https://hub.example.org/user/alice/``), and the token sent as
    ``Authorization: token …`` (never printed: ``repr`` hides it)."""

    url: str
    token: str | None = dataclasses.field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return self.url + "api/tus/uploads"

    def upload_url(self, location: str) -> str:
        """An absolute URL for a (path-only) ``Location``."""
        return urllib.parse.urljoin(self.url, location)


def running_servers() -> list[dict]:
    """jupyter-server's own list of running servers on this machine (its runtime dir)."""
    from jupyter_server.serverapp import list_running_servers

    return list(list_running_servers())


def _norm_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _local_token(url: str) -> str | None:
    """The token of the running local server at ``url`` (same port and base_url)."""
    want = urllib.parse.urlsplit(url)
    for info in running_servers():
        have = urllib.parse.urlsplit(_norm_url(info.get("url", "")))
        same_host = have.hostname in (want.hostname, "localhost", "127.0.0.1") and (
            want.hostname in (have.hostname, "localhost", "127.0.0.1")
        )
        if same_host and have.port == want.port and have.path == want.path:
            return info.get("token") or None
    return None


def find_server(server: str | None = None, token: str | None = None) -> Server:
    """The server to talk to and its token.

    ``server``: a Jupyter server URL including its base_url; a ``?token=`` in it is
    used as the token and dropped from the URL. Without it, the running local server
    (jupyter-server's list of running servers; the one whose root_dir holds the current
    folder, else the most recent). Token: ``token``, else ``$JUPYTER_TOKEN``, else
    ``$JUPYTERHUB_API_TOKEN``, else the running local server's. Raises ServerNotFound."""
    url_token = None
    if server:
        parts = urllib.parse.urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ServerNotFound(f"--server must be an http(s) URL, not {server!r}")
        url_token = urllib.parse.parse_qs(parts.query).get("token", [None])[0]
        url = _norm_url(server)
        found_token = None
    else:
        info = _pick_running()
        if info is None:
            raise ServerNotFound(
                "no running Jupyter server found on this machine; pass --server URL "
                "(e.g. https://hub.example.org/user/NAME/)"
            )
        url = _norm_url(info["url"])
        found_token = info.get("token") or None
    chosen = token or url_token or os.environ.get("JUPYTER_TOKEN")
    chosen = chosen or os.environ.get("JUPYTERHUB_API_TOKEN")
    if not chosen:
        chosen = found_token if not server else _safe_local_token(url)
    return Server(url, chosen or None)


def _safe_local_token(url: str) -> str | None:
    try:
        return _local_token(url)
    except Exception:  # no jupyter_server, unreadable runtime dir
        return None


def _pick_running() -> dict | None:
    servers = [s for s in running_servers() if s.get("url")]
    if not servers:
        return None
    here = Path.cwd().resolve()
    best: tuple[int, dict] | None = None
    for info in servers:
        root = Path(info.get("root_dir") or info.get("notebook_dir") or "/").expanduser()
        with contextlib.suppress(OSError):
            root = root.resolve()
        inside = here == root or root in here.parents
        if inside and (best is None or len(root.parts) > best[0]):
            best = (len(root.parts), info)
    if best is not None:
        return best[1]
    return max(servers, key=lambda s: s.get("pid", 0))


# --------------------------------------------------------------------------- state


def state_dir() -> Path:
    """``<jupyter data dir>/tus``: where the per-server state files live."""
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "tus"


class StateFile:
    """The unfinished uploads of this user to one server: a small JSON file
    ``uploads-<key>.json`` (key: a hash of the server URL), ``{"server": url,
    "uploads": {fingerprint: entry}}``. Each change re-reads and rewrites it under an
    exclusive lock (``fcntl.flock`` on a ``.lock`` beside it, where available), written
    to a temp file and renamed, so concurrent runs and a kill never corrupt it."""

    def __init__(self, server_url: str, directory: str | os.PathLike | None = None) -> None:
        self.server_url = server_url
        self.directory = Path(directory) if directory else state_dir()
        key = hashlib.sha256(server_url.encode()).hexdigest()[:16]
        self.path = self.directory / f"uploads-{key}.json"
        self._thread_lock = threading.Lock()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_suffix(".lock"), "a") as lockfile:
                try:
                    import fcntl

                    fcntl.flock(lockfile, fcntl.LOCK_EX)
                except ImportError:  # Windows: one process at a time is the user's job
                    pass
                yield

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        uploads = data.get("uploads") if isinstance(data, dict) else None
        return uploads if isinstance(uploads, dict) else {}

    def _write(self, uploads: dict[str, dict]) -> None:
        if not uploads:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"server": self.server_url, "uploads": uploads}, indent=1))
        os.replace(tmp, self.path)

    def entries(self) -> dict[str, dict]:
        with self._locked():
            return self._read()

    def get(self, fingerprint: str) -> dict | None:
        return self.entries().get(fingerprint)

    def put(self, fingerprint: str, entry: dict) -> None:
        with self._locked():
            uploads = self._read()
            uploads[fingerprint] = entry
            self._write(uploads)

    def update(self, fingerprint: str, fn: Callable[[dict], None]) -> dict:
        """Change one entry in place (``fn(entry)``) under the lock; return it."""
        with self._locked():
            uploads = self._read()
            entry = uploads.setdefault(fingerprint, {})
            fn(entry)
            self._write(uploads)
            return entry

    def drop(self, fingerprint: str) -> None:
        with self._locked():
            uploads = self._read()
            if uploads.pop(fingerprint, None) is not None:
                self._write(uploads)

    def drop_where(self, pred: Callable[[dict], bool]) -> list[dict]:
        with self._locked():
            uploads = self._read()
            gone = {k: v for k, v in uploads.items() if pred(v)}
            for k in gone:
                del uploads[k]
            if gone:
                self._write(uploads)
            return list(gone.values())


# --------------------------------------------------------------------------- files


@dataclasses.dataclass
class Job:
    """One local file and where it goes: ``folder`` (the ``path`` metadata, relative to
    root_dir, ``/``-separated) and ``name`` (``filename``)."""

    source: Path
    folder: str
    name: str
    size: int = 0
    mtime_ns: int = 0

    @property
    def destination(self) -> str:
        return f"{self.folder}/{self.name}" if self.folder else self.name


def collect(paths: Iterable[str | os.PathLike], to: str = "") -> tuple[list[Job], list[str]]:
    """Files to send and where each goes. A file lands as ``<to>/<name>``; a folder as
    ``<to>/<folder name>/<its tree>`` (hidden files and folders inside it are skipped,
    symlinked folders not followed). Returns the jobs and notes on what was skipped.
    Raises FileNotFoundError for a path that does not exist."""
    base = "/".join(p for p in str(to or "").replace("\\", "/").split("/") if p)
    jobs: list[Job] = []
    notes: list[str] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise FileNotFoundError(f"{given}: no such file or folder")
        if path.is_dir():
            top = path.resolve().name
            hidden = 0
            for root, dirs, files in os.walk(path):
                hidden += sum(1 for d in dirs if d.startswith(".")) + sum(
                    1 for f in files if f.startswith(".")
                )
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                rel = Path(root).relative_to(path).parts
                folder = "/".join(p for p in (base, top, *rel) if p)
                for name in sorted(f for f in files if not f.startswith(".")):
                    if (Path(root) / name).is_file():
                        jobs.append(Job(Path(root) / name, folder, name))
            if hidden:
                notes.append(f"{given}: skipped {hidden} hidden file(s) or folder(s)")
        else:
            jobs.append(Job(path, base, path.name))
    for job in jobs:
        st = job.source.stat()
        job.size, job.mtime_ns = st.st_size, st.st_mtime_ns
    return jobs, notes


def fingerprint(job: Job, overwrite: bool) -> str:
    """What makes an upload the same one again: the source (absolute path, size,
    mtime) and the destination (folder, name, overwrite)."""
    key = [
        str(job.source.resolve()),
        job.size,
        job.mtime_ns,
        job.folder,
        job.name,
        bool(overwrite),
    ]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:32]


class _Crc32:
    """crc32 as tus checksums send it: the 4-byte big-endian value of ``zlib.crc32``."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def hasher(algorithm: str) -> Any:
    if algorithm == "crc32":
        return _Crc32()
    return hashlib.new(algorithm)


def _pread(fd: int, n: int, pos: int) -> bytes:
    """``os.pread`` where there is one; else (Windows) seek and read: each descriptor
    is read by one thread only."""
    if hasattr(os, "pread"):
        return os.pread(fd, n, pos)
    os.lseek(fd, pos, os.SEEK_SET)
    return os.read(fd, n)


def _read_range(fd: int, start: int, length: int) -> Iterator[bytes]:
    """The file's bytes ``[start, start + length)`` in pieces of PIECE; raises
    OSError if the file got shorter meanwhile."""
    end = start + length
    pos = start
    while pos < end:
        piece = _pread(fd, min(PIECE, end - pos), pos)
        if not piece:
            raise OSError(f"the file ended at byte {pos}, before {end}: it changed meanwhile")
        pos += len(piece)
        yield piece


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(PIECE):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- progress


class Progress:
    """What a run reports; subclass and pass as ``progress=``. Called from worker
    threads. ``update`` gets the bytes of the file the server has (``done``) of ``total``."""

    def begin(self, jobs: list[Job]) -> None:
        """Once, before any file starts: the files of the run."""

    def start(self, source: str, total: int, done: int) -> None: ...

    def update(self, source: str, done: int, total: int) -> None: ...

    def landed(self, landed: Landed) -> None: ...

    def failed(self, source: str, error: Exception) -> None: ...

    def note(self, message: str) -> None: ...

    def close(self) -> None: ...


class CallbackProgress(Progress):
    """``progress=callable``: ``fn(source, done, total)`` on every piece sent."""

    def __init__(self, fn: Callable[[str, int, int], Any]) -> None:
        self.fn = fn

    def update(self, source: str, done: int, total: int) -> None:
        self.fn(source, done, total)


class TqdmProgress(Progress):
    """One bar per file being sent and one for the total (bytes, MiB/s, ETA), from
    tqdm (``tqdm.auto``: widgets in a notebook, text on a terminal)."""

    def __init__(self, file: Any = None, leave_files: bool = False) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self._file = file
        self._leave = leave_files
        self._lock = threading.Lock()
        self._bars: dict[str, Any] = {}
        self._done: dict[str, int] = {}
        self._positions: list[int] = []
        self.total: Any = None

    def begin(self, jobs: list[Job]) -> None:
        files = len(jobs)
        self.total = self._tqdm(
            total=sum(j.size for j in jobs),
            unit="iB",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"total ({files} file{'s' if files != 1 else ''})",
            position=0,
            file=self._file,
            dynamic_ncols=True,
        )

    def start(self, source: str, total: int, done: int) -> None:
        with self._lock:
            position = next(i for i in range(1, 10**6) if i not in self._positions)
            self._positions.append(position)
            name = Path(source).name
            bar = self._tqdm(
                total=total,
                initial=done,
                unit="iB",
                unit_scale=True,
                unit_divisor=1024,
                desc=name if len(name) <= 30 else name[:27] + "...",
                position=position,
                leave=self._leave,
                file=self._file,
                dynamic_ncols=True,
            )
            bar.position_ = position
            self._bars[source] = bar
            self._done[source] = done
            if self.total is not None:
                self.total.update(done)

    def update(self, source: str, done: int, total: int) -> None:
        with self._lock:
            bar = self._bars.get(source)
            delta = done - self._done.get(source, 0)
            self._done[source] = done
            if bar is not None:
                bar.update(delta)
            if self.total is not None:
                self.total.update(delta)

    def _end(self, source: str) -> None:
        bar = self._bars.pop(source, None)
        if bar is not None:
            self._positions.remove(bar.position_)
            bar.close()

    def landed(self, landed: Landed) -> None:
        with self._lock:
            self._end(landed.source)

    def failed(self, source: str, error: Exception) -> None:
        with self._lock:
            self._end(source)

    def note(self, message: str) -> None:
        self._tqdm.write(message, file=self._file or sys.stderr)

    def close(self) -> None:
        with self._lock:
            for source in list(self._bars):
                self._end(source)
            if self.total is not None:
                self.total.close()


def _as_progress(progress: bool | Progress | Callable | None, jobs: list[Job]) -> Progress:
    if isinstance(progress, Progress):
        return progress
    if progress is True:
        return TqdmProgress()
    if callable(progress):
        return CallbackProgress(progress)
    return Progress()


# --------------------------------------------------------------------------- HTTP


def _message(response: httpx.Response) -> str:
    """The server's one-line reason (jupyter-server's JSON ``message``), else the
    status line; never the whole HTML page of a proxy."""
    with contextlib.suppress(Exception):
        data = response.json()
        if isinstance(data, dict) and data.get("message"):
            return str(data["message"])
    reason = response.reason_phrase or ""
    return f"HTTP {response.status_code} {reason}".strip()


def _is_tus(response: httpx.Response) -> bool:
    return "Tus-Resumable" in response.headers


def _int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


def _chunk_limit(response: httpx.Response) -> int | None:
    """The server's largest PATCH body: ``Jupyter-Tus-Max-Chunk-Size: N`` or
    ``Upload-Limit: max-append-size=N`` (draft-ietf-httpbis-resumable-upload)."""
    limits = [_int_header(response, CHUNK_LIMIT_HEADER)]
    upload_limit = response.headers.get("Upload-Limit", "")
    match = re.search(r"(?:^|[,;\s])max-append-size\s*=\s*(\d+)", upload_limit)
    if match:
        limits.append(int(match.group(1)))
    found = [n for n in limits if n]
    return min(found) if found else None


def encode_metadata(metadata: dict[str, str]) -> str:
    return ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}" if v else k for k, v in metadata.items()
    )


class Limits:
    """What the server takes, and the chunk size of this run (shared by every thread)."""

    def __init__(self, chunk_size: int) -> None:
        self._lock = threading.Lock()
        self.chunk_size = chunk_size
        self.max_size: int | None = None
        self.algorithms: list[str] = []
        self.extensions: list[str] = []

    def learn(self, response: httpx.Response) -> None:
        limit = _chunk_limit(response)
        if limit:
            with self._lock:
                self.chunk_size = min(self.chunk_size, limit)

    def halve(self, refused: int) -> int | None:
        """A body of ``refused`` bytes was too big: the next chunks are at most half of
        it. Returns the new size, or None when it would fall below MIN_CHUNK_SIZE."""
        with self._lock:
            if refused <= self.chunk_size:
                self.chunk_size = refused // 2
            if self.chunk_size < MIN_CHUNK_SIZE:
                return None
            return self.chunk_size


class Backoff:
    """Capped exponential backoff (FIRST_DELAY doubling to MAX_DELAY, with jitter),
    reset by ``progress()``; ``wait`` raises GaveUp once nothing has landed for
    ``patience`` seconds, Cancelled when the run is cancelled meanwhile."""

    def __init__(self, patience: float, cancel: threading.Event) -> None:
        self.patience = patience
        self.cancel = cancel
        self.failures = 0
        self.since = time.monotonic()

    def progress(self) -> None:
        self.failures = 0
        self.since = time.monotonic()

    def wait(self, error: Exception, delay: bool = True) -> None:
        if time.monotonic() - self.since > self.patience:
            raise GaveUp(
                f"nothing landed for {self.patience:.0f} s ({error}); run the same "
                "command again to resume"
            ) from error
        seconds = min(MAX_DELAY, FIRST_DELAY * 2**self.failures) if delay else 0.0
        self.failures += 1
        if seconds:
            seconds *= random.uniform(0.8, 1.2)
        if self.cancel.wait(seconds):
            raise Cancelled("cancelled")


# --------------------------------------------------------------------------- the run


class Uploader:
    """One run: the files of ``paths`` to ``server`` (see ``upload`` for the
    arguments). ``run()`` returns the ``Landed`` of every file or raises UploadFailed
    (some did not land), NotTusServer / AuthenticationFailed (nothing could start),
    KeyboardInterrupt (Ctrl-C: the uploads stay resumable)."""

    def __init__(
        self,
        server: Server,
        *,
        to: str = "",
        overwrite: bool = False,
        chunk_size: int | None = None,
        parallel: int = 1,
        checksum: str | None = None,
        progress: bool | Progress | Callable | None = None,
        patience: float = DEFAULT_PATIENCE,
        state: StateFile | None = None,
    ) -> None:
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        if chunk_size is not None and chunk_size < MIN_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be at least {MIN_CHUNK_SIZE} bytes")
        self.server = server
        self.to = to
        self.overwrite = overwrite
        self.parallel = parallel
        self.checksum = checksum.lower() if checksum else None
        self.progress_arg = progress
        self.progress: Progress = Progress()
        self.patience = patience
        self.state = state or StateFile(server.url)
        self.limits = Limits(chunk_size or DEFAULT_CHUNK_SIZE)
        self.cancel = threading.Event()
        self.slots = threading.BoundedSemaphore(parallel)  # streams sending at once
        self._local = threading.local()
        self._ssl = httpx.create_ssl_context()  # one for every thread's client (~60 ms each)
        self._clients: list[httpx.Client] = []
        self._clients_lock = threading.Lock()
        if self.checksum:
            try:
                hasher(self.checksum)
            except ValueError:
                raise ValueError(f"unknown checksum algorithm {checksum!r}") from None

    # ------------------------------------------------------------ HTTP plumbing

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            headers = {"Tus-Resumable": TUS_VERSION}
            if self.server.token:
                headers["Authorization"] = f"token {self.server.token}"
            client = httpx.Client(
                headers=headers, timeout=TIMEOUT, follow_redirects=False, verify=self._ssl
            )
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def _request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        """One request; transport errors become _Retry."""
        try:
            response = self._client().request(method, url, **kw)
        except httpx.TransportError as exc:
            raise _Retry(f"{type(exc).__name__}: {exc or 'connection failed'}") from exc
        self.limits.learn(response)
        return response

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()

    def sends_by_sendfile(self, url: str) -> bool:
        """Plain HTTP, no proxy for this host (``$http_proxy``, ``$no_proxy``)."""
        parts = urllib.parse.urlsplit(url)
        if not USE_SENDFILE or parts.scheme != "http":
            return False
        proxies = urllib.request.getproxies()
        return "http" not in proxies or bool(urllib.request.proxy_bypass(parts.hostname or ""))

    def sendfile_patch(
        self, url: str, headers: dict[str, str], fd: int, start: int, n: int, sent: Callable
    ) -> httpx.Response:
        """A PATCH whose body (the file's bytes ``[start, start + n)``) goes by
        ``socket.sendfile`` over a keep-alive ``http.client`` connection of this thread;
        ``sent(k)`` after each piece. The answer as an ``httpx.Response``; transport
        errors become _Retry."""
        parts = urllib.parse.urlsplit(url)
        conns = self._local.__dict__.setdefault("sendfile", {})
        conn = conns.get(parts.netloc)
        if conn is None:
            conn = http.client.HTTPConnection(
                parts.hostname, parts.port or 80, timeout=TIMEOUT.connect
            )
            conns[parts.netloc] = conn
            with self._clients_lock:
                self._clients.append(conn)  # type: ignore[arg-type] - closed alike
        all_headers = {"Tus-Resumable": TUS_VERSION, **headers}
        if self.server.token:
            all_headers["Authorization"] = f"token {self.server.token}"
        try:
            conn.putrequest("PATCH", parts.path or "/", skip_accept_encoding=True)
            for name, value in all_headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            conn.sock.settimeout(TIMEOUT.write)
            with open(fd, "rb", closefd=False) as f:
                done = 0
                while done < n:
                    if self.cancel.is_set():
                        raise Cancelled("cancelled")
                    k = conn.sock.sendfile(f, start + done, min(PIECE, n - done))
                    if not k:
                        raise OSError(f"the file ended before byte {start + n}")
                    done += k
                    sent(done)
            conn.sock.settimeout(TIMEOUT.read)
            answer = conn.getresponse()
            body = answer.read()
            if answer.will_close:
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _Retry(f"{type(exc).__name__}: {exc or 'connection failed'}") from exc
        except BaseException:
            conn.close()
            raise
        response = httpx.Response(answer.status, headers=answer.getheaders(), content=body)
        self.limits.learn(response)
        return response

    def _retryable(self, response: httpx.Response, what: str) -> None:
        """Raise _Retry for answers that may pass: 5xx, 423, and anything that is not
        the tus server (a hub answering for a stopped server, a proxy's error page)."""
        status = response.status_code
        if status >= 500 or status == 423 or (not _is_tus(response) and status != 413):
            raise _Retry(f"{what}: {_message(response)}")

    # ------------------------------------------------------------ discovery

    def discover(self) -> None:
        """OPTIONS on the endpoint: is it jupyter-tus, does the token work, what does it
        take. Raises NotTusServer, EndpointUnavailable (the endpoint's own refusal: its
        store unavailable), AuthenticationFailed, or TusClientError for a checksum
        algorithm it does not know."""
        url = self.server.endpoint
        try:
            response = self._client().request("OPTIONS", url)
        except httpx.TransportError as exc:
            raise NotTusServer(f"cannot reach {self.server.url}: {exc}") from exc
        if response.status_code in (401, 403) and _is_tus(response):
            raise AuthenticationFailed(
                f"{self.server.url} refused the token (HTTP {response.status_code}: "
                f"{_message(response)}); pass --token, or set $JUPYTER_TOKEN or "
                "$JUPYTERHUB_API_TOKEN"
            )
        if response.status_code in (401, 403) or 300 <= response.status_code < 400:
            # a tus endpoint never redirects: a login page or an OAuth dance (a hub)
            where = response.headers.get("Location", "")[:80]
            raise AuthenticationFailed(
                f"{self.server.url} asks for a login (HTTP {response.status_code}"
                f"{' to ' + where if where else ''}); pass --token, or set $JUPYTER_TOKEN "
                "or $JUPYTERHUB_API_TOKEN"
            )
        if response.status_code != 204 and _is_tus(response):
            # jupyter-tus itself, refusing: its store is unavailable (a staging folder
            # refused, a bucket missing or denied: 503), or another refusal. Its reason,
            # not a guess that the extension is missing.
            raise EndpointUnavailable(
                f"{url} cannot take uploads (HTTP {response.status_code}): {_message(response)}"
            )
        if response.status_code != 204 or not _is_tus(response):
            raise NotTusServer(
                f"{url} is not a jupyter-tus endpoint (HTTP {response.status_code}, "
                f"{'with' if _is_tus(response) else 'no'} Tus-Resumable): is the jupyter-tus "
                "server extension installed and enabled there, and the server running?"
            )
        limits = self.limits
        limits.learn(response)
        limits.max_size = _int_header(response, "Tus-Max-Size")
        limits.algorithms = [
            a.strip().lower()
            for a in response.headers.get("Tus-Checksum-Algorithm", "").split(",")
            if a.strip()
        ]
        limits.extensions = [
            e.strip() for e in response.headers.get("Tus-Extension", "").split(",") if e.strip()
        ]
        if self.checksum and self.checksum not in limits.algorithms:
            raise TusClientError(
                f"the server does not take {self.checksum} checksums; it takes: "
                + (", ".join(limits.algorithms) or "none")
            )

    # ------------------------------------------------------------ the run

    def run(self, paths: Sequence[str | os.PathLike] | str | os.PathLike) -> list[Landed]:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        jobs, notes = collect(paths, self.to)
        self.discover()
        self.progress = _as_progress(self.progress_arg, jobs)
        self.progress.begin(jobs)
        for note in notes:
            self.progress.note(note)
        landed: list[Landed] = []
        failures: list[tuple[str, Exception]] = []
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.parallel, thread_name_prefix="jupyter-tus"
        )
        try:
            futures = {pool.submit(self._one, job): job for job in jobs}
            for future in concurrent.futures.as_completed(futures):
                job = futures[future]
                try:
                    result = future.result()
                except Cancelled:
                    continue
                except (TusClientError, OSError, ValueError, httpx.HTTPError) as exc:
                    failures.append((str(job.source), exc))
                    self.progress.failed(str(job.source), exc)
                    continue
                landed.append(result)
                self.progress.landed(result)
        except BaseException:
            self.cancel.set()
            pool.shutdown(wait=False, cancel_futures=True)
            self.progress.close()
            raise
        pool.shutdown(wait=True)
        self.progress.close()
        self.close()
        order = {str(job.source): i for i, job in enumerate(jobs)}
        landed.sort(key=lambda r: order.get(r.source, 0))
        if failures:
            raise UploadFailed(landed, failures)
        return landed

    def _one(self, job: Job) -> Landed:
        """Send one file (in a worker thread); its Landed, or raise."""
        started = time.monotonic()
        if self.cancel.is_set():
            raise Cancelled("cancelled")
        max_size = self.limits.max_size
        if max_size is not None and job.size > max_size:
            raise UploadRefused(
                f"{job.size} bytes is more than the server takes (Tus-Max-Size {max_size})",
                413,
            )
        fp = fingerprint(job, self.overwrite)
        sha = None
        # Uploads of this source to this destination made before the file changed:
        # they can never finish, remove them on the server.
        self._drop_stale(job, fp)
        try:
            if self._splits(job, self.state.get(fp)):
                path, upload_id = _SplitUpload(self, job, fp).send()
            else:
                with self.slots:
                    path, upload_id = _SingleUpload(self, job, fp).send()
        except UploadRefused:
            self.state.drop(fp)  # nothing to resume: the next run starts afresh
            raise
        self.state.drop(fp)
        if self.checksum:
            sha = file_sha256(job.source)
        return Landed(
            source=str(job.source),
            path=path,
            id=upload_id,
            size=job.size,
            seconds=time.monotonic() - started,
            sha256=sha,
            requested=job.destination,
        )

    def _splits(self, job: Job, entry: dict | None) -> bool:
        if entry and entry.get("parts"):
            return True  # resume as it was started, whatever --parallel says now
        if entry and entry.get("url"):
            return False
        return (
            self.parallel > 1
            and job.size >= 2 * MIN_PART
            and "concatenation" in self.limits.extensions
        )

    def _drop_stale(self, job: Job, fp: str) -> None:
        source = str(job.source.resolve())

        def stale(entry: dict) -> bool:
            return (
                entry.get("source") == source
                and entry.get("destination") == job.destination
                and entry.get("fingerprint") != fp
            )

        for entry in self.state.drop_where(stale):
            urls = [entry.get("url")] + [p.get("url") for p in entry.get("parts") or []]
            for url in filter(None, urls):
                with contextlib.suppress(_Retry, httpx.HTTPError):
                    self._request("DELETE", self.server.upload_url(url))

    def new_entry(self, job: Job, fp: str) -> dict:
        return {
            "fingerprint": fp,
            "source": str(job.source.resolve()),
            "destination": job.destination,
            "size": job.size,
            "overwrite": self.overwrite,
            "created": time.time(),
        }

    def metadata(self, job: Job) -> dict[str, str]:
        meta = {"filename": job.name}
        if job.folder:
            meta["path"] = job.folder
        if self.overwrite:
            meta["overwrite"] = "true"
        return meta

    # ------------------------------------------------------------ listing

    def find_in_listing(self, job: Job, since: float) -> dict | None:
        """The server's record of an upload of this file to its destination made since
        ``since`` (a creation whose answer was lost): ``{"url", "state", "landed_path",
        "offset", "id"}``, or None."""
        response = self._request("GET", self.server.endpoint)
        if response.status_code != 200:
            self._retryable(response, "listing the uploads")
            return None
        best = None
        for upload in response.json().get("uploads", []):
            created = _parse_iso(upload.get("created"))
            if (
                upload.get("size") == job.size
                and _same_destination(upload, job)
                and created is not None
                and created >= since - CLOCK_SLACK
                and (best is None or created > _parse_iso(best.get("created")))
            ):
                best = upload
        return best


def _parse_iso(value: str | None) -> float | None:
    if not value:
        return None
    import datetime

    with contextlib.suppress(ValueError):
        moment = datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
        return moment.replace(tzinfo=datetime.timezone.utc).timestamp()
    return None


def _same_destination(upload: dict, job: Job) -> bool:
    landed = upload.get("landed_path")
    if landed:
        folder, _, name = landed.rpartition("/")
        stem, dot, ext = job.name.rpartition(".")
        renamed = re.fullmatch(
            re.escape(stem or job.name) + r" \(\d+\)" + (re.escape(dot + ext) if stem else ""),
            name,
        )
        return folder == job.folder and (name == job.name or bool(renamed))
    return upload.get("destination") == job.destination


class _Transfer:
    """What a single upload and a split one share: creation, PATCH loop, HEAD."""

    def __init__(self, run: Uploader, job: Job, fp: str) -> None:
        self.run = run
        self.job = job
        self.fp = fp
        self.backoff = Backoff(run.patience, run.cancel)
        self.checksum_failures = 0

    @property
    def source(self) -> str:
        return str(self.job.source)

    def cancelled(self) -> bool:
        return self.run.cancel.is_set()

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise Cancelled("cancelled")

    def retrying(self, step: Callable[[], Any], what: str) -> Any:
        """Run ``step`` until it does not raise _Retry (with backoff)."""
        while True:
            self.check_cancelled()
            try:
                return step()
            except _Retry as exc:
                self.wait(what, exc)

    def wait(self, what: str, exc: _Retry) -> None:
        """Say so (the first time and now and then), then back off."""
        if exc.delay and self.backoff.failures % 10 == 0:
            self.run.progress.note(f"{self.job.source.name}: {what}: {exc}; retrying")
        self.backoff.wait(exc, exc.delay)

    def refusal(self, response: httpx.Response, what: str) -> UploadRefused:
        message = _message(response)
        if response.status_code == 409 and "already exists" in message:
            message += " (--overwrite replaces it)"
        return UploadRefused(f"{what}: {message}", response.status_code)

    def head(self, url: str) -> httpx.Response | None:
        """HEAD of an upload: the answer (200), or None when the upload is gone (404,
        410: expired, terminated, or its landed file changed since). Retries what may
        pass; raises UploadRefused for a 403 (a landing refused for good)."""

        def step() -> httpx.Response | None:
            response = self.run._request("HEAD", url)
            if response.status_code == 200 and _is_tus(response):
                return response
            if response.status_code in (404, 410) and _is_tus(response):
                return None
            self.run._retryable(response, "asking for the offset")
            raise self.refusal(response, "the upload")

        return self.retrying(step, "asking for the offset")

    def create(self, headers: dict[str, str], what: str) -> httpx.Response:
        """A creation POST without a body, retried until it answers 201."""

        def step() -> httpx.Response:
            response = self.run._request("POST", self.run.server.endpoint, headers=headers)
            if response.status_code == 201 and response.headers.get("Location"):
                return response
            self.run._retryable(response, what)
            raise self.refusal(response, what)

        return self.retrying(step, what)

    def body(self, fd: int, start: int, length: int, base: int) -> Iterator[bytes]:
        """A request body: the file's bytes ``[start, start + length)`` in pieces,
        progress (``base`` + bytes so far) after each; stops at once on cancel."""
        sent = 0
        for piece in _read_range(fd, start, length):
            self.check_cancelled()
            yield piece
            sent += len(piece)
            self.progressed(base + sent)

    def progressed(self, done: int) -> None:
        self.run.progress.update(self.source, done, self.job.size)

    def checksum_header(self, fd: int, start: int, length: int) -> dict[str, str]:
        algorithm = self.run.checksum
        if not algorithm:
            return {}
        digest = hasher(algorithm)
        for piece in _read_range(fd, start, length):
            digest.update(piece)
        return {"Upload-Checksum": f"{algorithm} {base64.b64encode(digest.digest()).decode()}"}

    def patch_loop(self, url: str, fd: int, start: int, length: int, offset: int) -> httpx.Response:
        """Send the file's bytes ``[start + offset, start + length)`` to the upload at
        ``url`` (which has ``offset`` bytes), chunk by chunk, until it has ``length``;
        return the last answer (a PATCH's 204 or a HEAD's 200)."""
        last: httpx.Response | None = None
        while offset < length or last is None:
            self.check_cancelled()
            if offset >= length:  # nothing to send: the answer is the upload's HEAD
                last = self.head(url)
                if last is None:
                    raise UploadRefused("the upload was removed on the server", 404)
                break
            try:
                last, offset = self.patch_once(url, fd, start, length, offset)
                self.backoff.progress()
                self.checksum_failures = 0
            except _Retry as exc:
                self.wait("sending", exc)
                if exc.rehead:
                    head = self.head(url)
                    if head is None:
                        raise UploadRefused(
                            "the upload was removed on the server (cancelled or expired); "
                            "run the same command again to start over",
                            404,
                        ) from exc
                    offset = _int_header(head, "Upload-Offset") or 0
                    last = head if offset >= length else None
                    self.progressed(offset)
        return last

    def patch_once(
        self, url: str, fd: int, start: int, length: int, offset: int
    ) -> tuple[httpx.Response, int]:
        """One PATCH of at most a chunk; the answer and the new offset, or _Retry."""
        n = min(self.run.limits.chunk_size, length - offset)
        headers = {
            "Content-Type": OFFSET_CONTENT_TYPE,
            "Upload-Offset": str(offset),
            "Content-Length": str(n),
            **self.checksum_header(fd, start + offset, n),
        }
        if self.run.sends_by_sendfile(url):
            response = self.run.sendfile_patch(
                url, headers, fd, start + offset, n, lambda k: self.progressed(offset + k)
            )
        else:
            body = self.body(fd, start + offset, n, offset)
            response = self.run._request("PATCH", url, headers=headers, content=body)
        status = response.status_code
        if status == 204 and _is_tus(response):
            new = _int_header(response, "Upload-Offset")
            if new is None:
                raise _Retry("the answer had no Upload-Offset")
            return response, new
        self.refused_body(response, n)
        if status in (404, 410) and _is_tus(response):
            raise UploadRefused(
                f"the upload was removed on the server ({_message(response)}); run the "
                "same command again to start over",
                status,
            )
        self.run._retryable(response, "sending")
        raise self.refusal(response, "sending")

    def refused_body(self, response: httpx.Response, n: int) -> None:
        """413 (too large: shrink the chunks), 409 (offset mismatch: ask again), 460
        (checksum mismatch: send again): raise _Retry, or UploadRefused when retrying
        cannot help."""
        status = response.status_code
        if status == 413:
            self.too_big(response, n)
        if status == 409 and _is_tus(response) and "already exists" not in _message(response):
            raise _Retry("offset mismatch (409)", delay=False)
        if status == 460:
            self.checksum_failures += 1
            if self.checksum_failures >= CHECKSUM_RETRIES:
                raise UploadRefused(
                    f"the server found {self.checksum_failures} bad checksums in a row: "
                    "the file is changing, or the network corrupts it",
                    460,
                )
            raise _Retry("checksum mismatch (460)", delay=False)

    def too_big(self, response: httpx.Response, n: int) -> None:
        """A 413 to a body of ``n`` bytes: shrink the chunks and raise _Retry, unless the
        server says the whole file is too big (UploadRefused)."""
        if _is_tus(response) and "Tus-Max-Size" in _message(response):
            raise UploadRefused(f"too big: {_message(response)}", 413)
        limit = _chunk_limit(response)
        if limit and limit < n:  # the server said how much: Limits.learn took it
            raise _Retry(f"the server takes at most {limit} bytes per request", delay=False)
        new = self.run.limits.halve(n)
        if new is None:
            raise UploadRefused(
                f"even a {n}-byte body is refused as too large (413): something between "
                "here and the server limits request bodies",
                413,
            )
        if new < n:
            self.run.progress.note(
                f"a {n / MiB:.2f} MiB request body was refused as too large (413 from "
                f"{'the server' if _is_tus(response) else 'a proxy'}); sending "
                f"{new / MiB:.2f} MiB chunks from now on"
            )
        raise _Retry("413", delay=False)

    def wait_landed(self, url: str, response: httpx.Response) -> str:
        """Where the finished upload landed (``Jupyter-Tus-Path``); waits (HEAD,
        backoff) while the server retries a move that failed (200 without it)."""
        while True:
            value = response.headers.get(LANDED_PATH_HEADER)
            if value:
                return urllib.parse.unquote(value)
            self.wait(
                "landing",
                _Retry("all bytes arrived; the server has not moved the file into place yet"),
            )
            head = self.head(url)
            if head is None:
                raise UploadRefused(
                    "the upload was removed on the server, or its file moved since it landed",
                    410,
                )
            response = head


def _upload_id(url: str) -> str:
    return urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]


class _SingleUpload(_Transfer):
    """A file as one upload: creation (with its bytes when they fit one chunk), then
    PATCHes; or, recorded in the state file, resumed from the server's offset."""

    def send(self) -> tuple[str, str]:
        job, run = self.job, self.run
        with open(job.source, "rb") as f:
            fd = f.fileno()
            url, head, offset = self.resume()
            run.progress.start(self.source, job.size, offset)
            if url is None:
                url, head, offset = self.retrying(lambda: self.create_once(fd), "creating")
            if offset < job.size:
                head = self.patch_loop(url, fd, 0, job.size, offset)
        return self.wait_landed(url, head), _upload_id(url)

    def resume(self) -> tuple[str | None, httpx.Response | None, int]:
        """The upload the state file knows for this file, and where it stands (HEAD);
        (None, None, 0) when there is none (or the server no longer has it)."""
        run, job = self.run, self.job
        entry = run.state.get(self.fp)
        if not entry:
            return None, None, 0
        if entry.get("url"):
            url = run.server.upload_url(entry["url"])
            head = self.head(url)
            if head is not None and _int_header(head, "Upload-Length") == job.size:
                return url, head, _int_header(head, "Upload-Offset") or 0
        elif entry.get("pending"):
            found = self.adopt(entry["pending"])
            if found is not None:
                return found
        run.state.drop(self.fp)
        return None, None, 0

    def adopt(self, since: float) -> tuple[str, httpx.Response, int] | None:
        """A creation whose answer never came (the run was killed or the connection cut
        during the POST): find that upload in the server's listing, to resume it or to
        take its landing."""
        run = self.run
        found = self.retrying(lambda: run.find_in_listing(self.job, since), "listing")
        if not found or not found.get("url"):
            return None
        url = run.server.upload_url(found["url"])
        head = self.head(url)
        if head is None:
            return None
        run.state.update(self.fp, lambda e: e.update(url=found["url"], pending=None))
        return url, head, _int_header(head, "Upload-Offset") or 0

    def create_once(self, fd: int) -> tuple[str, httpx.Response, int]:
        """One creation attempt (with the bytes of a small file when the server has
        creation-with-upload); _Retry when it may pass."""
        run, job = self.run, self.job
        entry = run.state.get(self.fp) or {}
        if entry.get("url"):  # made by an earlier attempt whose body failed
            url = run.server.upload_url(entry["url"])
            head = self.head(url)
            if head is not None:
                return url, head, _int_header(head, "Upload-Offset") or 0
        n = job.size
        with_body = 0 < n <= min(run.limits.chunk_size, SMALL_FILE) and (
            "creation-with-upload" in run.limits.extensions
        )
        headers = {
            "Upload-Length": str(n),
            "Upload-Metadata": encode_metadata(run.metadata(job)),
        }
        content = None
        if with_body:
            headers.update({"Content-Type": OFFSET_CONTENT_TYPE, "Content-Length": str(n)})
            headers.update(self.checksum_header(fd, 0, n))
            content = self.body(fd, 0, n, 0)
        attempt = time.time()
        run.state.put(self.fp, {**run.new_entry(job, self.fp), "pending": attempt})
        try:
            response = run._request("POST", run.server.endpoint, headers=headers, content=content)
        except _Retry:
            found = self.adopt(attempt)
            if found is not None:
                return found
            raise
        location = response.headers.get("Location")
        if location and _is_tus(response):
            run.state.update(self.fp, lambda e: e.update(url=location, pending=None))
            if response.status_code == 201:
                offset = _int_header(response, "Upload-Offset") or 0
                return run.server.upload_url(location), response, offset
        # Not created, or created with its body refused or cut (then resumed by URL).
        if with_body:
            self.refused_body(response, n)
        run._retryable(response, "creating the upload")
        raise self.refusal(response, "creating the upload")


class _SplitUpload(_Transfer):
    """A big file as N partial uploads (``Upload-Concat: partial``), each sent (and
    resumed) on its own thread, then joined by a final concatenation that carries the
    destination (and lands the file)."""

    def __init__(self, run: Uploader, job: Job, fp: str) -> None:
        super().__init__(run, job, fp)
        self.failed = threading.Event()  # one part failed for good: the others stop
        self._lock = threading.Lock()
        self._part_done: dict[int, int] = {}

    def send(self) -> tuple[str, str]:
        run, job = self.run, self.job
        entry = run.state.get(self.fp)
        if entry and entry.get("final_pending"):
            landed = self.final_landed(entry["final_pending"])
            if landed:
                return landed
        if not entry or not entry.get("parts"):
            self.check_free_name()
            n = min(run.parallel, job.size // MIN_PART)
            q = job.size // n
            parts = [
                {"start": i * q, "length": q if i < n - 1 else job.size - i * q} for i in range(n)
            ]
            entry = {**run.new_entry(job, self.fp), "parts": parts}
            run.state.put(self.fp, entry)
        count = len(entry["parts"])
        run.progress.start(self.source, job.size, 0)
        # The parts get threads of their own, not the run's pool (whose workers may all
        # be waiting for parts); run.slots bounds how many streams send at once.
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=count, thread_name_prefix="jupyter-tus-part"
        ) as pool:
            futures = [pool.submit(self.send_part, i) for i in range(count)]
            errors: list[BaseException] = []
            for future in concurrent.futures.as_completed(futures):
                try:
                    future.result()
                except BaseException as exc:
                    self.failed.set()
                    errors.append(exc)
        if errors:
            raise next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
        entry = run.state.get(self.fp) or entry
        return self.finish([p["url"] for p in entry["parts"]])

    def check_free_name(self) -> None:
        """Before sending gigabytes: is the name free (or --overwrite)? The final
        concatenation checks it again (409)."""
        if self.run.overwrite:
            return
        url = f"{self.run.server.url}api/contents/{urllib.parse.quote(self.job.destination)}"
        response = self.retrying(
            lambda: self.run._request("GET", url, params={"content": "0"}), "checking the name"
        )
        if response.status_code == 200:
            raise UploadRefused(
                f"creating the upload: {self.job.destination!r} already exists; set overwrite "
                "to replace it (--overwrite replaces it)",
                409,
            )

    def send_part(self, i: int) -> None:
        with self.run.slots:
            self._send_part(i)

    def _send_part(self, i: int) -> None:
        run, job = self.run, self.job
        part = (run.state.get(self.fp) or {}).get("parts", [])[i]
        transfer = _PartTransfer(self, i)
        transfer.check_cancelled()
        url = part.get("url")
        offset = 0
        if url:
            head = transfer.head(run.server.upload_url(url))
            if head is None or _int_header(head, "Upload-Length") != part["length"]:
                url = None
            else:
                offset = _int_header(head, "Upload-Offset") or 0
        if not url:
            headers = {"Upload-Length": str(part["length"]), "Upload-Concat": "partial"}
            url = transfer.create(headers, f"creating part {i + 1}").headers["Location"]

            def record(entry: dict, url: str = url) -> None:
                entry["parts"][i]["url"] = url

            run.state.update(self.fp, record)
        transfer.progressed(offset)
        with open(job.source, "rb") as f:
            transfer.patch_loop(
                run.server.upload_url(url), f.fileno(), part["start"], part["length"], offset
            )

    def add_part_progress(self, i: int, done: int) -> None:
        with self._lock:
            self._part_done[i] = done
            total = sum(self._part_done.values())
        self.run.progress.update(self.source, total, self.job.size)

    def finish(self, urls: list[str]) -> tuple[str, str]:
        """The final concatenation: the server joins the parts and lands the file."""
        run = self.run
        headers = {
            "Upload-Concat": "final;" + " ".join(urllib.parse.urlsplit(u).path for u in urls),
            "Upload-Metadata": encode_metadata(run.metadata(self.job)),
        }

        def step() -> tuple[str, str]:
            attempt = time.time()
            run.state.update(self.fp, lambda e: e.update(final_pending=attempt))
            try:
                response = run._request("POST", run.server.endpoint, headers=headers)
            except _Retry:
                landed = self.final_landed(attempt)
                if landed:
                    return landed
                raise
            location = response.headers.get("Location")
            if response.status_code == 201 and location:
                url = run.server.upload_url(location)
                return self.wait_landed(url, response), _upload_id(url)
            if response.status_code in (400, 404) and _is_tus(response):
                landed = self.final_landed(attempt)  # an earlier attempt's answer was lost
                if landed:
                    return landed
            run._retryable(response, "joining the parts")
            raise self.refusal(response, "joining the parts")

        return self.retrying(step, "joining the parts")

    def final_landed(self, since: float) -> tuple[str, str] | None:
        found = self.retrying(lambda: self.run.find_in_listing(self.job, since), "listing")
        if found and found.get("landed_path"):
            return found["landed_path"], found["id"]
        return None


class _PartTransfer(_Transfer):
    """One partial upload of a _SplitUpload: its own backoff; progress into the file's;
    stops when another part failed for good."""

    def __init__(self, split: _SplitUpload, index: int) -> None:
        super().__init__(split.run, split.job, split.fp)
        self.split = split
        self.index = index

    def cancelled(self) -> bool:
        return self.run.cancel.is_set() or self.split.failed.is_set()

    def progressed(self, done: int) -> None:
        self.split.add_part_progress(self.index, done)


# --------------------------------------------------------------------------- API


def upload(
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
    server: str | None = None,
    token: str | None = None,
    to: str = "",
    *,
    overwrite: bool = False,
    chunk_size: int | None = None,
    parallel: int = 1,
    checksum: str | None = None,
    progress: bool | Progress | Callable[[str, int, int], Any] | None = None,
    patience: float = DEFAULT_PATIENCE,
) -> list[str]:
    """Upload files and folders to a Jupyter server; return where each landed.

    ``paths``: files and folders (a folder keeps its tree: ``data/`` lands as
    ``<to>/data/...``; hidden entries inside it are skipped). ``server``: the server's
    URL with its base_url (default: the running local server); ``token``: default
    ``$JUPYTER_TOKEN``, ``$JUPYTERHUB_API_TOKEN``, the running server's. ``to``: the
    destination folder, relative to the server's root_dir. ``overwrite``: replace
    existing files (else a taken name is refused). ``chunk_size``: bytes per PATCH
    (default 64 MiB, lowered to the server's limit, halved on a proxy's 413).
    ``parallel``: files at once, and parts of one big file. ``checksum``: an algorithm
    of the tus checksum extension (sha1, md5, sha256, sha512, crc32), checked by the
    server for every chunk. ``progress``: True for tqdm bars, a callable
    ``fn(source, bytes_done, total)``, or a ``Progress``. ``patience``: seconds of
    retrying without a chunk landing before giving up.

    Returns the landed paths, relative to the server's root_dir, in the order of the
    files (``name (1).ext`` when the name got taken during the upload). Raises
    UploadFailed (with ``.landed`` and ``.failures``) when some files did not land,
    NotTusServer, AuthenticationFailed, ServerNotFound, FileNotFoundError; on
    KeyboardInterrupt the uploads stay resumable: call again with the same arguments.
    """
    run = Uploader(
        find_server(server, token),
        to=to,
        overwrite=overwrite,
        chunk_size=chunk_size,
        parallel=parallel,
        checksum=checksum,
        progress=progress,
        patience=patience,
    )
    try:
        return [landed.path for landed in run.run(paths)]
    finally:
        if not run.cancel.is_set():
            run.close()


def list_uploads(server: str | None = None, token: str | None = None) -> list[dict]:
    """The server's uploads (``GET {base_url}api/tus/uploads``): every unfinished one
    and those finished in the last day, as docs/protocol.md describes them (id,
    filename, destination, size, offset, state, created, last_activity, expires,
    landed_path, message, url). Raises NotTusServer, AuthenticationFailed."""
    srv = find_server(server, token)
    run = Uploader(srv)
    try:
        run.discover()
        response = run._client().get(srv.endpoint)
        if response.status_code != 200:
            raise TusClientError(f"listing the uploads: {_message(response)}")
        return list(response.json().get("uploads", []))
    finally:
        run.close()


def cancel(upload_id: str, server: str | None = None, token: str | None = None) -> None:
    """Terminate one upload (DELETE): its bytes on the server are removed; a file that
    already landed stays. ``upload_id``: the id, or the upload's URL. Raises
    UploadRefused (404: no such upload), NotTusServer, AuthenticationFailed."""
    srv = find_server(server, token)
    upload_id = _upload_id(upload_id) if "/" in upload_id else upload_id
    if not re.fullmatch(r"[A-Za-z0-9_-]+", upload_id):
        raise UploadRefused(f"{upload_id!r} is not an upload id", 400)
    run = Uploader(srv)
    try:
        run.discover()
        response = run._client().delete(f"{srv.endpoint}/{upload_id}")
        if response.status_code not in (204, 200):
            raise UploadRefused(
                f"cancelling {upload_id}: {_message(response)}", response.status_code
            )
    finally:
        run.close()
    run.state.drop_where(
        lambda e: (
            _upload_id(e.get("url") or "") == upload_id
            or any(_upload_id(p.get("url") or "") == upload_id for p in e.get("parts") or [])
        )
    )
