"""Durability proven by the order of the store's system calls, not by luck.

A power cut cannot be simulated in a test, and a suite that passes with every fsync
removed proves nothing about them. So the calls that make bytes and names durable are
recorded as they happen: ``os.fsync``/``os.fdatasync``/``os.sync`` and the name
operations ``os.rename``/``os.replace``/``os.link``/``os.unlink``/``os.remove``
(``*_dir_fd`` variants included, a descriptor resolved through ``/proc/self/fd``),
each wrapped to record an event and call through. A sync event carries the identity
(st_dev, st_ino) of the file and a sha256 of its content *at the moment of the sync*,
so "fsynced after its last byte was written" is checked without tracking the writes
themselves: the content synced must be the content the call leaves behind.

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

Each mode drives: ``a``, three writes (the middle one checksummed), landing with a
link; ``b``, two writes (the completing one checksummed), landing with a rename over
an existing file; two partial uploads and their concatenation ``c``, which completes
without a write's commit, so that even ``always`` needs the completion's own fsync.
Once with the staging folder beside the workspace, once on /dev/shm (landing then goes
through a copy beside the destination, whose fsync rule (b) requires).

Only syncs made by the thread that drives the store count for (a)-(d). The store's
background writeback (``_writeback_and_close``: an ``fdatasync`` on a duplicate
descriptor every ``WRITEBACK_EVERY`` bytes with ``complete``) runs in a thread of its
own, nobody waits for it, and it may run before or after the rename it would have to
precede: it is a head start for the completion fsync, never a substitute. It does
count for (e) (it must not happen with ``never``), and
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
from jupyter_tus.store import Checksum, FileInfo

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
    op: str  # fsync fdatasync sync rename replace link unlink mark
    path: str = ""  # the synced file or folder, a move's source, the unlinked name
    dst: str = ""  # a move's destination
    inode: tuple[int, int] | None = None  # of the synced file / the moved source
    is_dir: bool = False
    digest: str | None = None  # sha256 of the synced file / the moved .info, at the call
    record: dict | None = None  # the JSON an .info move installs
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
        self._real = {name: getattr(os, name) for name in (*SYNCS, *MOVES, "unlink", "remove")}
        for name in ("fsync", "fdatasync"):
            monkeypatch.setattr(os, name, self._sync_wrapper(name))
        monkeypatch.setattr(os, "sync", self._global_sync)
        for name in MOVES:
            monkeypatch.setattr(os, name, self._move_wrapper(name))
        for name in ("unlink", "remove"):
            monkeypatch.setattr(os, name, self._unlink_wrapper(name))

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
            digest = None
            if stat.S_ISREG(st.st_mode):
                with open(f"/proc/self/fd/{fd}", "rb") as f:  # a new description: any fd
                    digest = sha(f.read())
            result = real(fd)
            self._add(
                Event(
                    0, name, path=path, inode=(st.st_dev, st.st_ino), is_dir=is_dir, digest=digest
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
            digest = record = None
            if d.endswith(".info") and stat.S_ISREG(st.st_mode):
                with open(s, "rb") as f:
                    content = f.read()
                digest = sha(content)
                with contextlib.suppress(ValueError):
                    record = json.loads(content)
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

    def dump(self, names: dict[str, str]) -> str:
        """The trace, one event a line, long prefixes shortened, for failure messages."""

        def short(path: str) -> str:
            for prefix, alias in names.items():
                if path == prefix:
                    return alias + "/"
                if path.startswith(prefix + "/"):
                    return alias + "/" + path[len(prefix) + 1 :]
            return path

        lines = []
        for e in self.events:
            if e.op == "mark":
                lines.append(f"{e.index:4} -- {e.label}")
                continue
            text = f"{e.index:4} {e.op:9} {short(e.path)}"
            if e.dst:
                text += f" -> {short(e.dst)}"
            if e.digest:
                text += f" sha={e.digest[:8]}"
            if e.record is not None:
                keys = ("is_complete", "unverified_from")
                text += " {" + ", ".join(f"{k}={e.record.get(k)}" for k in keys) + "}"
            if e.sizes:
                text += " sizes=" + ",".join(f"{k}:{v}" for k, v in sorted(e.sizes.items()))
            if not e.caller:
                text += "  [other thread]"
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
    uid: str = ""
    inode: tuple[int, int] | None = None  # of the staged data file
    landed: str = ""  # where it landed, "" for a partial upload

    def label(self, n: int) -> str:
        return f"write_chunk {self.name}#{n + 1}"

    @property
    def completing(self) -> str:
        """The store call that completes (and lands) the upload."""
        return f"concat_uploads {self.name}" if self.parts else self.label(len(self.chunks) - 1)


def make_uploads(seed: int) -> list[Upload]:
    rnd = random.Random(seed)
    a, b = rnd.randbytes(150_000), rnd.randbytes(80_000)
    p1, p2 = rnd.randbytes(50_000), rnd.randbytes(70_000)
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
    ]


def drive(store: FileStore, rec: Recorder, workspace: Path, uploads: list[Upload]) -> None:
    """Create, write in chunks, complete and land every upload, each call marked."""
    dest_dir = workspace / "incoming"
    dest_dir.mkdir(parents=True)
    for up in uploads:
        dest = None if up.partial else dest_dir / f"{up.name}.bin"
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
        with rec.call(f"new_upload {up.name}"):
            up.uid = store.new_upload(info)
        staged = store.directory / up.uid
        rec.watched[up.name] = str(staged)
        st = os.stat(staged)
        up.inode = (st.st_dev, st.st_ino)
        start = 0
        for n, (end, checksummed) in enumerate(up.chunks):
            piece = up.data[start:end]
            checksum = Checksum("sha256", hashlib.sha256(piece).digest()) if checksummed else None
            with store.lock(up.uid), rec.call(up.label(n)):
                written = store.write_chunk(up.uid, start, io.BytesIO(piece), checksum)
            assert written == len(piece)
            start = end
        if up.parts:
            with store.lock(up.uid), rec.call(up.completing):
                store.concat_uploads(up.uid, [p.uid for p in up.parts])
        info = store.get_info(up.uid)
        assert info.is_complete
        if up.partial:
            assert info.path is None
            assert staged.read_bytes() == up.data
        else:
            up.landed = real_name(info.path)
            assert Path(info.path).read_bytes() == up.data


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


def check_rules(rec: Recorder, store: FileStore, workspace: Path, mode: str, uploads) -> None:
    staging = os.path.realpath(store.directory)
    names = {staging: "staging", os.path.realpath(workspace): "ws"}
    for up in uploads:
        names[real_name(store.directory / up.uid)] = f"staging/<{up.name}>"

    def why(message: str) -> str:
        return f"{message}\ntrace:\n{rec.dump(names)}"

    if mode == "never":
        rule_e_no_sync(rec, why)
        return
    for up in uploads:
        if mode == "always":
            rule_a_every_write_synced(rec, up, why)
        rule_b_synced_before_completion_and_landing(
            rec, up, real_name(store.directory / f"{up.uid}.info"), why
        )
        if not up.partial:
            rule_d_destination_folder_synced(rec, up, why)
    rule_c_info_files(rec, staging, why)


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
    if layout == "across-filesystems":
        assert os.stat(staging).st_dev != os.stat(workspace).st_dev
        # the landed file is a copy made beside the destination, not the staged inode
        assert all(landing(rec, up).inode != up.inode for up in uploads if not up.partial)
    check_rules(rec, store, workspace, mode, uploads)


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
