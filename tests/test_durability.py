"""Durability proven by the order of the store's system calls, not by luck.

A power cut cannot be simulated in a test, and a suite that passes with every fsync
removed proves nothing about them. So the calls that make bytes and names durable are
recorded as they happen: ``os.fsync``/``os.fdatasync``/``os.sync`` and the name
operations ``os.rename``/``os.replace``/``os.link``/``os.unlink``/``os.remove``/
``os.mkdir`` (``*_dir_fd`` variants included, a descriptor resolved through
``/proc/self/fd``), each wrapped to record an event and call through. A sync event
carries the identity (st_dev, st_ino) of the file and a sha256 of its content *at the
moment of the sync*, so "fsynced after its last byte was written" is checked without
tracking the writes themselves: the content synced must be the content the call leaves
behind. Likewise the sync of a folder carries the names the folder holds at that moment,
so "synced after that name was made (or removed)" is checked without tracking how the
store made it: the names synced must hold it (or not). An ``.info`` move also carries
the identity and sha256 of the data file beside it at the moment of the move.

The rules are orderings, not an exact sequence, so that refactors that keep the
guarantees keep the test green:

(a) ``always``: when a ``write_chunk`` returns, the data file was synced during that
    call with the content it now has (its last byte written before the sync).
(b) ``always``/``complete``: the data file is synced with all its bytes before the
    ``.info`` recording ``is_complete`` is installed, and the file moved into the
    workspace (the staged data, or its copy beside the destination when the workspace
    is on another filesystem) is synced with all its bytes before that move.
(c) every ``.info`` is installed by a rename of a temp file synced with exactly the
    content installed; the staging directory is synced after that rename, before the
    next rename or link of any kind and before the call returns; and a record that
    marks a checksummed write as unverified is durable before a byte of that write
    reaches the data file.
(d) after the landing link/rename, the destination's directory is synced before the
    call returns.
(e) ``never``: no fsync, fdatasync or sync at all, in any thread.
(f) ``always``/``complete``: the data file's name is durable: the staging folder is
    synced while it holds ``<id>`` (so after new_upload made it) -- with ``always``
    before the upload's first write returns (its acknowledgement; for a final
    concatenation, before the concatenation returns), with ``complete`` before the
    completing call returns (the sync after the completion record).
(g) ``always``/``complete``: every folder a store call makes in the workspace (a
    landing into folders that do not exist yet) is durable in its parent: the parent is
    synced while it holds the new folder, before the call returns.
(h) ``always``/``complete``: a cut-back (a checksummed write cut back to where it
    began: a checksum mismatch, a body that ended early, recovery after a crash before
    the verdict) syncs the data file with the content it was cut back to, after the
    last moment it was seen longer, before the ``.info`` that clears
    ``unverified_from`` (and so counts the file's bytes again) is installed.
(i) ``always``/``complete``: a termination (``terminate``, and the removal of the
    partial uploads a concatenation used) syncs the staging folder, without the
    upload's ``<id>`` and ``<id>.info``, before the call returns.

Each mode drives: ``a``, three writes (the middle one checksummed), landing with a
link; ``b``, two writes (the completing one checksummed), landing with a rename over
an existing file; two partial uploads and their concatenation ``c``, which completes
without a write's commit, so that even ``always`` needs the completion's own fsync;
``n``, landing in ``new/deeper/``, two folders the landing makes; ``w`` and ``wp``,
created with their whole body in one call (``create_whole``: the creation, the write
and the completion at once, so its one call is held to every rule of each), landing
with a link and staying in the store (a partial upload); ``h``, a checksummed
write cut back three times (a wrong checksum, an aborted writer, a crash and
``recover()`` in a new store), then the rest written and landed; ``t``, terminated
after a write. Rules (g), (h) and (i) count what they checked, and the test asserts
that these scenarios were among it (2 folders, 3 cut-backs, 3 terminations).
Once with the staging folder beside the workspace, once on /dev/shm (landing then goes
through a copy beside the destination, whose fsync rule (b) requires).

Only syncs made by the thread that drives the store count for (a)-(d) and (f)-(i).
The store's background writeback (``_writeback_and_close``: an ``fdatasync`` on a
duplicate descriptor every ``WRITEBACK_EVERY`` bytes with ``complete``) runs in a
thread of its own, nobody waits for it, and it may run before or after the rename it
would have to precede: it is a head start for the completion fsync, never a
substitute. It does count for (e) (it must not happen with ``never``), and
``test_background_writeback_is_not_the_completion_fsync`` makes one happen after the
last byte, where it *could* satisfy (b) by chance, to show that it does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import secrets
import shutil
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from jupyter_tus import filestore as fs
from jupyter_tus.filestore import FileStore
from jupyter_tus.store import Checksum, ChecksumMismatch, FileInfo

SYNCS = ("fsync", "fdatasync", "sync")
MOVES = ("rename", "replace", "link")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def real_name(path: str | os.PathLike) -> str:
    """An absolute name with its folders' symlinks resolved (the last part kept as is,
    it may not exist or be a link itself): how names from arguments and from
    ``/proc/self/fd`` are compared."""
    head, tail = os.path.split(os.path.abspath(os.fsdecode(path)))
    return os.path.join(os.path.realpath(head), tail)


@dataclass
class Event:
    index: int
    op: str  # fsync fdatasync sync rename replace link unlink mkdir mark
    path: str = ""  # the synced file or folder, a move's source, the unlinked or made name
    dst: str = ""  # a move's destination
    inode: tuple[int, int] | None = None  # of the synced file / the moved source
    is_dir: bool = False
    digest: str | None = None  # sha256 of the synced file / the moved .info, at the call
    record: dict | None = None  # the JSON an .info move installs
    entries: frozenset[str] | None = None  # the names in a synced folder, at the call
    data: tuple[tuple[int, int], str] | None = None  # an .info move: its data file's
    # (inode, sha256) at the call
    sizes: dict[str, int] = field(default_factory=dict)  # watched data files at the call
    caller: bool = True  # made by the thread that drives the store
    label: str = ""  # marks: the store call that begins or ends


class Recorder:
    """Wraps the os functions with recording ones for the duration of a test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[Event] = []
        self.segments: dict[str, tuple[int, int]] = {}
        self.watched: dict[str, str] = {}  # name -> staged data file
        self.other_thread_sync = threading.Event()
        self._lock = threading.Lock()
        self._caller = threading.get_ident()
        self._real = {
            name: getattr(os, name) for name in (*SYNCS, *MOVES, "unlink", "remove", "mkdir")
        }
        for name in ("fsync", "fdatasync"):
            monkeypatch.setattr(os, name, self._sync_wrapper(name))
        monkeypatch.setattr(os, "sync", self._global_sync)
        for name in MOVES:
            monkeypatch.setattr(os, name, self._move_wrapper(name))
        for name in ("unlink", "remove"):
            monkeypatch.setattr(os, name, self._unlink_wrapper(name))
        monkeypatch.setattr(os, "mkdir", self._mkdir)

    # -------------------------------------------------------------- recording

    def _add(self, event: Event) -> None:
        with self._lock:
            event.caller = threading.get_ident() == self._caller
            event.sizes = self._sizes()
            event.index = len(self.events)
            self.events.append(event)
        if event.op in SYNCS and not event.caller:
            self.other_thread_sync.set()

    def _sizes(self) -> dict[str, int]:
        sizes = {}
        for name, path in self.watched.items():
            with contextlib.suppress(OSError):
                sizes[name] = os.stat(path).st_size
        return sizes

    def _sync_wrapper(self, name: str):
        real = self._real[name]

        def wrapper(fd):
            st = os.fstat(fd)
            is_dir = stat.S_ISDIR(st.st_mode)
            path = os.readlink(f"/proc/self/fd/{fd}")
            digest = entries = None
            if stat.S_ISREG(st.st_mode):
                with open(f"/proc/self/fd/{fd}", "rb") as f:  # a new description: any fd
                    digest = sha(f.read())
            if is_dir:  # what the sync makes durable: the names in the folder now
                entries = frozenset(os.listdir(f"/proc/self/fd/{fd}"))
            result = real(fd)
            self._add(
                Event(
                    0,
                    name,
                    path=path,
                    inode=(st.st_dev, st.st_ino),
                    is_dir=is_dir,
                    digest=digest,
                    entries=entries,
                )
            )
            return result

        return wrapper

    def _global_sync(self):
        self._real["sync"]()
        self._add(Event(0, "sync"))

    def _move_wrapper(self, name: str):
        real = self._real[name]

        def wrapper(src, dst, *, src_dir_fd=None, dst_dir_fd=None, **kw):
            s, d = _resolve(src, src_dir_fd), _resolve(dst, dst_dir_fd)
            follow = kw.get("follow_symlinks", True) if name == "link" else False
            try:
                st = os.stat(s, follow_symlinks=follow)
            except OSError:  # the call itself fails the same way: nothing to record
                return real(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, **kw)
            digest = record = data = None
            if d.endswith(".info") and stat.S_ISREG(st.st_mode):
                with open(s, "rb") as f:
                    content = f.read()
                digest = sha(content)
                with contextlib.suppress(ValueError):
                    record = json.loads(content)
                with contextlib.suppress(OSError), open(d[: -len(".info")], "rb") as f:
                    beside = os.fstat(f.fileno())
                    data = ((beside.st_dev, beside.st_ino), sha(f.read()))
            result = real(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, **kw)
            self._add(
                Event(
                    0,
                    name,
                    path=s,
                    dst=d,
                    inode=(st.st_dev, st.st_ino),
                    digest=digest,
                    record=record,
                    data=data,
                )
            )
            return result

        return wrapper

    def _unlink_wrapper(self, name: str):
        real = self._real[name]

        def wrapper(path, *, dir_fd=None):
            p = _resolve(path, dir_fd)
            result = real(path, dir_fd=dir_fd)
            self._add(Event(0, "unlink", path=p))
            return result

        return wrapper

    def _mkdir(self, path, mode=0o777, *, dir_fd=None):
        p = _resolve(path, dir_fd)
        result = self._real["mkdir"](path, mode, dir_fd=dir_fd)
        self._add(Event(0, "mkdir", path=p))
        return result

    def mark(self, label: str) -> None:
        """A moment inside a store call (with the sizes of the data files then)."""
        self._add(Event(0, "mark", label=label))

    def enclosing(self, index: int) -> tuple[str, int] | None:
        """The innermost store call event ``index`` belongs to: its label and end."""
        calls = [(e - s, label, e) for label, (s, e) in self.segments.items() if s <= index < e]
        return min(calls)[1:] if calls else None

    def upload_of(self, path: str) -> str:
        """The name of the upload whose staged entry ``path`` is (the id, else)."""
        uid = os.path.basename(path).split(".")[0]
        return next((k for k, v in self.watched.items() if v.endswith(uid)), uid)

    @contextlib.contextmanager
    def call(self, label: str) -> Iterator[None]:
        """Mark the events of one store call."""
        self._add(Event(0, "mark", label=f"begin {label}"))
        start = len(self.events)
        try:
            yield
        finally:
            self.segments[label] = (start, len(self.events))
            self._add(Event(0, "mark", label=f"end {label}"))

    def segment(self, label: str) -> list[Event]:
        start, end = self.segments[label]
        return self.events[start:end]

    # -------------------------------------------------------------- reading

    def dump(self, names: dict[str, str], ids: dict[str, str]) -> str:
        """The trace, one event a line, long prefixes and upload ids shortened (a synced
        folder's names shown without locks and the store's mark), for failure messages."""

        def short(path: str) -> str:
            for prefix, alias in names.items():
                if path == prefix:
                    return alias + "/"
                if path.startswith(prefix + "/"):
                    return alias + "/" + path[len(prefix) + 1 :]
            return path

        lines = []
        for e in self.events:
            sizes = ""
            if e.sizes:
                sizes = " sizes=" + ",".join(f"{k}:{v}" for k, v in sorted(e.sizes.items()))
            if e.op == "mark":
                lines.append(f"{e.index:4} -- {e.label}{sizes}")
                continue
            text = f"{e.index:4} {e.op:9} {short(e.path)}"
            if e.dst:
                text += f" -> {short(e.dst)}"
            if e.digest:
                text += f" sha={e.digest[:8]}"
            if e.record is not None:
                keys = ("is_complete", "unverified_from")
                text += " {" + ", ".join(f"{k}={e.record.get(k)}" for k in keys) + "}"
            if e.entries is not None:
                shown = sorted(n for n in e.entries if not n.endswith(".lock") and n != fs.MARKER)
                text += " holds=" + ",".join(shown)
            text += sizes
            if not e.caller:
                text += "  [other thread]"
            for uid, alias in ids.items():
                text = text.replace(uid, alias)
            lines.append(text)
        return "\n".join(lines)


def _resolve(path, dir_fd) -> str:
    path = os.fsdecode(path)
    if dir_fd is not None and not os.path.isabs(path):
        path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
    return real_name(path)


# ------------------------------------------------------------------ the uploads


@dataclass
class Upload:
    name: str
    data: bytes
    chunks: list[tuple[int, bool]]  # (end offset, checksummed)
    overwrite: bool = False
    partial: bool = False  # a partial upload: completes in the store, never lands
    parts: list[Upload] = field(default_factory=list)  # a final concatenation of these
    folder: str = "incoming"  # where it lands, below the workspace: made by the landing
    # when it is not "incoming", which the test makes
    terminated: bool = False  # terminated before it completes
    whole: bool = False  # created with its whole body in one call (create_whole)
    uid: str = ""
    inode: tuple[int, int] | None = None  # of the staged data file
    landed: str = ""  # where it landed, "" for a partial upload

    def label(self, n: int) -> str:
        if self.whole:  # its one write is its creation
            return f"create_whole {self.name}"
        return f"write_chunk {self.name}#{n + 1}"

    @property
    def completing(self) -> str:
        """The store call that completes (and lands) the upload."""
        return f"concat_uploads {self.name}" if self.parts else self.label(len(self.chunks) - 1)


def make_uploads(seed: int) -> list[Upload]:
    rnd = random.Random(seed)
    a, b = rnd.randbytes(150_000), rnd.randbytes(80_000)
    p1, p2 = rnd.randbytes(50_000), rnd.randbytes(70_000)
    n = rnd.randbytes(60_000)
    parts = [
        Upload("p1", p1, [(20_000, False), (50_000, False)], partial=True),
        Upload("p2", p2, [(70_000, True)], partial=True),
    ]
    return [
        # lands with a link; the middle write is checksummed
        Upload("a", a, [(40_000, False), (90_000, True), (150_000, False)]),
        # lands with a rename over an existing file; the completing write is checksummed
        Upload("b", b, [(30_000, False), (80_000, True)], overwrite=True),
        # two partial uploads and their concatenation: completion without a PATCH's
        # commit, so only the completion's own fsync makes the final's bytes durable
        *parts,
        Upload("c", p1 + p2, [], parts=parts),
        # lands in two folders that do not exist yet: the landing makes them
        Upload("n", n, [(25_000, False), (60_000, False)], folder="new/deeper"),
        # created with the whole body, completed and landed in that one call
        Upload("w", rnd.randbytes(40_000), [(40_000, False)], whole=True),
        # the same, a partial upload: complete in the store, never lands
        Upload("wp", rnd.randbytes(30_000), [(30_000, False)], partial=True, whole=True),
    ]


def create(store: FileStore, rec: Recorder, workspace: Path, up: Upload) -> None:
    dest = None if up.partial else workspace / up.folder / f"{up.name}.bin"
    if up.overwrite:
        dest.write_bytes(b"the old file")
    info = FileInfo(
        size=len(up.data),
        path=dest and str(dest),
        overwrite=up.overwrite,
        is_partial=up.partial,
        is_final=bool(up.parts),
        partial_uploads=[p.uid for p in up.parts],
    )
    if up.whole:
        with rec.call(f"new_upload {up.name}"), rec.call(up.completing):
            up.uid = store.create_whole(info, up.data).id
        rec.watched[up.name] = str(store.directory / up.uid)
        # the staged data file, as the completion record names it (it may have
        # landed, or been copied to another filesystem, since)
        record = next(
            e.record
            for e in rec.segment(up.completing)
            if e.op in MOVES and (e.record or {}).get("is_complete")
        )
        up.inode = tuple(record["landed"][:2]) if record.get("landed") else None
        if up.inode is None:  # stays in the store: no landed identity recorded
            st = os.stat(store.directory / up.uid)
            up.inode = (st.st_dev, st.st_ino)
        return
    with rec.call(f"new_upload {up.name}"):
        up.uid = store.new_upload(info)
    staged = store.directory / up.uid
    rec.watched[up.name] = str(staged)
    st = os.stat(staged)
    up.inode = (st.st_dev, st.st_ino)


def write(store: FileStore, rec: Recorder, up: Upload, n: int) -> None:
    start = up.chunks[n - 1][0] if n else 0
    end, checksummed = up.chunks[n]
    piece = up.data[start:end]
    checksum = Checksum("sha256", hashlib.sha256(piece).digest()) if checksummed else None
    with store.lock(up.uid), rec.call(up.label(n)):
        written = store.write_chunk(up.uid, start, io.BytesIO(piece), checksum)
    assert written == len(piece)


def finish(store: FileStore, rec: Recorder, up: Upload) -> None:
    """Concatenate a final upload; check that the upload completed (and landed)."""
    if up.parts:
        with store.lock(up.uid), rec.call(up.completing):
            store.concat_uploads(up.uid, [p.uid for p in up.parts])
    info = store.get_info(up.uid)
    assert info.is_complete
    if up.partial:
        assert info.path is None
        assert (store.directory / up.uid).read_bytes() == up.data
    else:
        up.landed = real_name(info.path)
        assert Path(info.path).read_bytes() == up.data


def drive(store: FileStore, rec: Recorder, workspace: Path, uploads: list[Upload]) -> None:
    """Create, write in chunks, complete and land every upload, each call marked."""
    (workspace / "incoming").mkdir(parents=True)
    for up in uploads:
        create(store, rec, workspace, up)
        for n in range(0 if up.whole else len(up.chunks)):
            write(store, rec, up, n)
        finish(store, rec, up)


class Body(io.BytesIO):
    """A request body that marks when the store has read it to its end: by then every
    byte it read is written (write_chunk writes a block before it reads the next)."""

    def __init__(self, data: bytes, rec: Recorder, label: str) -> None:
        super().__init__(data)
        self._rec, self._label = rec, label

    def read(self, size: int | None = -1) -> bytes:
        block = super().read(size)
        if not block:
            self._rec.mark(f"{self._label}: body read to its end")
        return block


def drive_cut_backs(store: FileStore, rec: Recorder, workspace: Path) -> Upload:
    """Upload ``h``: a checksummed write past its first 30,000 bytes cut back three
    ways (a wrong checksum, a body that ends early, a crash before the verdict and the
    recovery after it), then the rest written and landed."""
    data = random.Random(3).randbytes(100_000)
    up = Upload("h", data, [(30_000, False), (100_000, False)])
    verified, piece = 30_000, data[30_000:60_000]
    right = Checksum("sha256", hashlib.sha256(piece).digest())
    create(store, rec, workspace, up)
    write(store, rec, up, 0)

    def cut_back() -> None:
        assert store.get_info(up.uid).offset == verified
        assert store.get_info(up.uid).unverified_from is None
        assert (store.directory / up.uid).read_bytes() == data[:verified]

    label = "write_chunk h, wrong checksum"
    with store.lock(up.uid), rec.call(label), pytest.raises(ChecksumMismatch):
        wrong = Checksum("sha256", bytes(32))
        store.write_chunk(up.uid, verified, Body(piece, rec, label), wrong)
    cut_back()

    with store.lock(up.uid):
        with rec.call("open_writer h, checksummed"):
            writer = store.open_writer(up.uid, verified, right)
        with rec.call("write h"):
            writer.write(piece[:20_000])
        with rec.call("abort h"):
            writer.abort()  # the body ended early: its bytes cannot be verified
    cut_back()

    with store.lock(up.uid):
        with rec.call("open_writer h, checksummed, then a crash"):
            writer = store.open_writer(up.uid, verified, right)
        with rec.call("write h, then a crash"):
            writer.write(piece[:25_000])
        # the process dies here: no commit, no abort
    with rec.call("recover"):
        restarted = FileStore(store.directory, durability=store.durability, lock_timeout=5)
        report = restarted.recover()
    writer._close()  # the dead process's descriptor
    assert report == [f"cut {up.uid} back to its last verified offset {verified}"]
    cut_back()

    write(store, rec, up, 1)
    finish(store, rec, up)
    return up


def drive_termination(store: FileStore, rec: Recorder, workspace: Path) -> Upload:
    """Upload ``t``: created, written in part, terminated."""
    up = Upload("t", random.Random(4).randbytes(50_000), [(20_000, False)], terminated=True)
    create(store, rec, workspace, up)
    write(store, rec, up, 0)
    with store.lock(up.uid), rec.call(f"terminate {up.name}"):
        store.terminate(up.uid)
    assert not (store.directory / up.uid).exists()
    assert not (store.directory / f"{up.uid}.info").exists()
    return up


# ------------------------------------------------------------------ the rules


def is_data_sync(e: Event, inode, digest: str) -> bool:
    return e.caller and e.op in ("fsync", "fdatasync") and e.inode == inode and e.digest == digest


def rule_a_every_write_synced(rec: Recorder, up: Upload, why) -> None:
    for n, (end, _) in enumerate(up.chunks):
        label = up.label(n)
        want = sha(up.data[:end])
        synced = [e for e in rec.segment(label) if is_data_sync(e, up.inode, want)]
        assert synced, why(
            f"(a) always: {label} returned without an fsync of the data file holding"
            f" its {end} bytes (its last byte written before the sync)"
        )


def completion_record(rec: Recorder, up: Upload, info_name: str) -> Event:
    label = up.completing
    for e in rec.segment(label):
        if (
            e.caller
            and e.op in MOVES
            and e.dst == info_name
            and (e.record or {}).get("is_complete")
        ):
            return e
    raise AssertionError(f"{label}: no .info with is_complete installed by a rename")


def landing(rec: Recorder, up: Upload) -> Event:
    label = up.completing
    moves = [e for e in rec.segment(label) if e.caller and e.op in MOVES and e.dst == up.landed]
    assert moves, f"{label}: no link or rename to {up.landed}"
    return moves[-1]


def rule_b_synced_before_completion_and_landing(
    rec: Recorder, up: Upload, info_name: str, why
) -> None:
    full = sha(up.data)
    record = completion_record(rec, up, info_name)
    before = [e for e in rec.events[: record.index] if is_data_sync(e, up.inode, full)]
    assert before, why(
        f"(b) upload {up.name}: the .info recording is_complete (event {record.index}) was"
        " installed before an fsync of the data file holding all its bytes"
        " (a sync in another thread, the background writeback, does not count)"
    )
    if up.partial:
        return  # stays in the store
    land = landing(rec, up)
    assert record.index < land.index, why(
        f"(b) upload {up.name}: moved to its destination (event {land.index}) before its"
        f" completion was recorded (event {record.index})"
    )
    moved = [e for e in rec.events[: land.index] if is_data_sync(e, land.inode, full)]
    assert moved, why(
        f"(b) upload {up.name}: the file linked/renamed to its destination (event"
        f" {land.index}) was not fsynced with all its bytes before the move"
    )


def rule_c_info_files(rec: Recorder, staging: str, why) -> None:
    """Every .info rename: temp synced with that content before it, staging folder synced
    after it, before any other rename or link and before the call returns."""
    ends = sorted(end for _, end in rec.segments.values())
    last_install: dict[str, int] = {}
    installs = [e for e in rec.events if e.caller and e.op in MOVES and e.dst.endswith(".info")]
    assert installs, "no .info was installed by a rename at all"
    for e in installs:
        since = last_install.get(e.dst, -1)
        last_install[e.dst] = e.index
        synced = [
            s
            for s in rec.events[since + 1 : e.index]
            if s.caller and s.op in ("fsync", "fdatasync") and s.inode == e.inode
        ]
        assert any(s.digest == e.digest for s in synced), why(
            f"(c) event {e.index}: {os.path.basename(e.dst)} installed from a temp file"
            " that was not fsynced with that content before the rename"
        )
        end = next(x for x in ends if x > e.index)  # the end of the call it belongs to
        dir_sync = None
        for later in rec.events[e.index + 1 : end]:
            if not later.caller:
                continue
            if later.op in ("fsync", "fdatasync") and later.is_dir and later.path == staging:
                dir_sync = later
                break
            assert later.op not in MOVES, why(
                f"(c) event {e.index}: {os.path.basename(e.dst)} renamed into place, then"
                f" event {later.index} ({later.op}) before the staging folder was fsynced"
            )
        assert dir_sync is not None, why(
            f"(c) event {e.index}: {os.path.basename(e.dst)} renamed into place, and the"
            " staging folder was not fsynced before the call returned"
        )
        unverified = (e.record or {}).get("unverified_from")
        if unverified is not None:
            for moment in (e, dir_sync):
                ahead = {k: v for k, v in moment.sizes.items() if v > unverified}
                owner = os.path.basename(e.dst)[: -len(".info")]
                mine = {k: v for k, v in ahead.items() if rec.watched[k].endswith(owner)}
                assert not mine, why(
                    f"(c) event {moment.index}: the record of an unverified write (from"
                    f" {unverified}) was not yet durable when its data file held {mine}"
                )


def rule_d_destination_folder_synced(rec: Recorder, up: Upload, why) -> None:
    land = landing(rec, up)
    folder = os.path.dirname(up.landed)
    label = up.completing
    _, end = rec.segments[label]
    synced = [
        e
        for e in rec.events[land.index + 1 : end]
        if e.caller and e.op in ("fsync", "fdatasync") and e.is_dir and e.path == folder
    ]
    assert synced, why(
        f"(d) upload {up.name}: linked/renamed to its destination (event {land.index}),"
        f" and {label} returned without an fsync of the destination folder"
    )


def rule_e_no_sync(rec: Recorder, why) -> None:
    syncs = [e for e in rec.events if e.op in SYNCS]
    assert not syncs, why(f"(e) never: {len(syncs)} sync calls, first at event {syncs[0].index}")


def is_dir_sync(e: Event, folder: str) -> bool:
    return e.caller and e.op in ("fsync", "fdatasync") and e.is_dir and e.path == folder


def rule_f_data_file_name_synced(rec: Recorder, up: Upload, staging: str, mode: str, why):
    """The staging folder synced while it holds the name of the data file (so after
    new_upload made it): with ``always`` before the first write's acknowledgement, with
    ``complete`` before the completing call returns."""
    if mode == "always":
        due = up.label(0) if up.chunks else up.completing
    elif up.terminated:
        return  # ``complete`` promises nothing of an upload that never completes
    else:
        due = up.completing
    start, _ = rec.segments[f"new_upload {up.name}"]
    _, end = rec.segments[due]
    synced = [e for e in rec.events[start:end] if is_dir_sync(e, staging) and up.uid in e.entries]
    assert synced, why(
        f"(f) {mode}: upload {up.name}'s data file was created by new_upload, and {due}"
        " returned without an fsync of the staging folder holding its name"
    )


def rule_g_new_folders_synced(rec: Recorder, workspace: Path, why) -> int:
    """Every folder a store call made in the workspace: its parent synced while holding
    it, before the call returned. Returns how many folders were checked."""
    root = os.path.realpath(workspace)
    checked = 0
    for e in rec.events:
        if not (e.caller and e.op == "mkdir" and e.path.startswith(root + os.sep)):
            continue
        call = rec.enclosing(e.index)
        if call is None:
            continue  # made by the test, not by the store
        label, end = call
        parent, name = os.path.split(e.path)
        synced = [
            s for s in rec.events[e.index + 1 : end] if is_dir_sync(s, parent) and name in s.entries
        ]
        assert synced, why(
            f"(g) event {e.index}: folder {name!r} made in {parent}, and {label} returned"
            " without an fsync of that parent holding it"
        )
        checked += 1
    return checked


def rule_h_cut_backs_synced(rec: Recorder, why) -> int:
    """Every .info that clears ``unverified_from`` (U) while its data file holds no
    more than U bytes, after it held more since the record that set U: the data file
    synced, with the content it has when the clearing record is installed, after the
    last moment it was seen longer than U. Returns how many cut-backs were checked."""
    checked = 0
    previous: dict[str, Event] = {}
    for e in rec.events:
        if not (e.caller and e.op in MOVES and e.dst.endswith(".info")):
            continue
        before, previous[e.dst] = previous.get(e.dst), e
        cut = (before.record or {}).get("unverified_from") if before else None
        if cut is None or (e.record or {}).get("unverified_from") is not None:
            continue
        name = rec.upload_of(e.dst)
        if e.sizes.get(name, 0) > cut:
            continue  # verified: the write's bytes stay
        longer = [x for x in rec.events[before.index : e.index] if x.sizes.get(name, 0) > cut]
        if not longer:
            continue  # nothing was written past U: nothing to cut
        assert e.data is not None, f"event {e.index}: the data file of {name} is gone"
        inode, digest = e.data
        synced = [
            s for s in rec.events[longer[-1].index + 1 : e.index] if is_data_sync(s, inode, digest)
        ]
        label = (rec.enclosing(e.index) or ("?",))[0]
        assert synced, why(
            f"(h) event {e.index}, in {label}: the .info of upload {name} stops counting"
            f" the bytes from {cut} on (cut back since event {longer[-1].index}), installed"
            " before an fsync of the data file with its cut-back content"
        )
        checked += 1
    return checked


def rule_i_terminations_synced(rec: Recorder, staging: str, why) -> int:
    """Every upload record removed from the staging folder: the folder synced without
    the record and its data file, before the call returned. Returns how many."""
    checked = 0
    for e in rec.events:
        uid = os.path.basename(e.path)[: -len(".info")]
        if not (
            e.caller
            and e.op == "unlink"
            and os.path.dirname(e.path) == staging
            and e.path.endswith(".info")
            and fs.ID_PATTERN.match(uid)
        ):
            continue
        call = rec.enclosing(e.index)
        assert call is not None, f"event {e.index}: an .info removed outside a store call"
        label, end = call
        synced = [
            s
            for s in rec.events[e.index + 1 : end]
            if is_dir_sync(s, staging) and not {uid, f"{uid}.info"} & s.entries
        ]
        assert synced, why(
            f"(i) event {e.index}: upload {rec.upload_of(e.path)} removed from the staging"
            f" folder, and {label} returned without an fsync of the folder without its files"
        )
        checked += 1
    return checked


# ------------------------------------------------------------------ the tests


@pytest.fixture
def other_filesystem(tmp_path) -> Iterator[Path]:
    """A folder on another filesystem than tmp_path (/dev/shm, a tmpfs)."""
    shm = Path("/dev/shm")
    if os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.fail("/dev/shm and the test's tmp_path share a filesystem on this machine")
    folder = shm / f"jupyter-tus-durability-{os.getpid()}-{secrets.token_hex(4)}"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def check_rules(
    rec: Recorder, store: FileStore, workspace: Path, mode: str, uploads
) -> dict[str, int]:
    """Check every rule; return how many new folders (g), cut-backs (h) and
    terminations (i) were checked, so that a test can tell that its own were."""
    staging = os.path.realpath(store.directory)
    names = {staging: "staging", os.path.realpath(workspace): "ws"}
    for up in uploads:
        names[real_name(store.directory / up.uid)] = f"staging/<{up.name}>"
    ids = {up.uid: f"<{up.name}>" for up in uploads}

    def why(message: str) -> str:
        return f"{message}\ntrace:\n{rec.dump(names, ids)}"

    if mode == "never":
        rule_e_no_sync(rec, why)
        return {}
    for up in uploads:
        if mode == "always":
            rule_a_every_write_synced(rec, up, why)
        if not up.terminated:
            rule_b_synced_before_completion_and_landing(
                rec, up, real_name(store.directory / f"{up.uid}.info"), why
            )
        if not up.partial and not up.terminated:
            rule_d_destination_folder_synced(rec, up, why)
        rule_f_data_file_name_synced(rec, up, staging, mode, why)
    rule_c_info_files(rec, staging, why)
    return {
        "new folders": rule_g_new_folders_synced(rec, workspace, why),
        "cut-backs": rule_h_cut_backs_synced(rec, why),
        "terminations": rule_i_terminations_synced(rec, staging, why),
    }


@pytest.mark.parametrize("layout", ["same-filesystem", "across-filesystems"])
@pytest.mark.parametrize("mode", ["always", "complete", "never"])
def test_fsync_order(mode, layout, tmp_path, monkeypatch, request):
    workspace = tmp_path / "workspace"
    if layout == "same-filesystem":
        staging = tmp_path / "staging"
    else:
        staging = request.getfixturevalue("other_filesystem")
    store = FileStore(staging, durability=mode, lock_timeout=5)
    rec = Recorder(monkeypatch)
    uploads = make_uploads(seed=len(mode) * 10 + len(layout))
    drive(store, rec, workspace, uploads)
    uploads.append(drive_cut_backs(store, rec, workspace))
    uploads.append(drive_termination(store, rec, workspace))
    if layout == "across-filesystems":
        assert os.stat(staging).st_dev != os.stat(workspace).st_dev
        # the landed file is a copy made beside the destination, not the staged inode
        assert all(
            landing(rec, up).inode != up.inode
            for up in uploads
            if not up.partial and not up.terminated
        )
    checked = check_rules(rec, store, workspace, mode, uploads)
    if mode != "never":
        # new/ and new/deeper/; three cut-backs of h; p1 and p2 (used by c), and t
        assert checked == {"new folders": 2, "cut-backs": 3, "terminations": 3}


def test_background_writeback_is_not_the_completion_fsync(tmp_path, monkeypatch):
    """With ``complete``, the writeback thread fdatasyncs the data file after its last
    byte (the last write is the one that reaches WRITEBACK_EVERY): a sync with the right
    content that could satisfy rule (b) by chance, and must not be what does."""
    last = 60_000
    monkeypatch.setattr(fs, "WRITEBACK_EVERY", last)
    data = random.Random(7).randbytes(20_000 + last)
    up = Upload("w", data, [(10_000, False), (20_000, False), (len(data), False)])
    store = FileStore(tmp_path / "staging", durability="complete", lock_timeout=5)
    rec = Recorder(monkeypatch)
    drive(store, rec, tmp_path / "workspace", [up])
    assert rec.other_thread_sync.wait(10), "the background writeback never ran"
    background = [e for e in rec.events if e.op in SYNCS and not e.caller]
    assert [e.op for e in background] == ["fdatasync"]
    assert background[0].inode == up.inode and background[0].digest == sha(data)
    check_rules(rec, store, tmp_path / "workspace", "complete", [up])
