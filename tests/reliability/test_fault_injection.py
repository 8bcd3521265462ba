"""Store-level fault injection: every write, fsync, rename, link, copy, truncate and
unlink the FileStore makes while writing a chunk, completing, landing or
concatenating is made to fail in turn (OSError EIO), and the upload must stay
consistent and resume: at once in the same process, and after a restart (recover())."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import pathlib
import random

import pytest

from jupyter_tus import filestore as fs
from jupyter_tus.store import Checksum, FileInfo, StoreError

from .helpers import record_figures, seed_from_env, staging_problems, workspace_files

SIZE = 300_000


class Injector:
    """Counts the store's calls to each primitive; fails the ``fail_at``-th one."""

    def __init__(self, staging: pathlib.Path) -> None:
        self.staging = str(staging)
        self.calls: list[str] = []
        self.fail_at: int | None = None
        self.failed: str | None = None

    def hit(self, site: str) -> None:
        self.calls.append(site)
        if self.fail_at is not None and len(self.calls) - 1 == self.fail_at:
            self.failed = site
            raise OSError(errno.EIO, f"injected {site} failure")


def install(monkeypatch, inj: Injector) -> None:
    real_os = os

    class OS:
        def __getattr__(self, name):
            return getattr(real_os, name)

        def replace(self, a, b, **kw):
            inj.hit("rename")
            real_os.replace(a, b, **kw)

        def rename(self, a, b, **kw):
            inj.hit("rename")
            real_os.rename(a, b, **kw)

        def link(self, a, b, **kw):
            inj.hit("link")
            real_os.link(a, b, **kw)

        def unlink(self, path, **kw):
            if str(path).startswith(inj.staging) or "dir_fd" in kw:
                inj.hit("unlink")
            real_os.unlink(path, **kw)

        def fsync(self, fd):
            inj.hit("fsync")
            real_os.fsync(fd)

        def fdatasync(self, fd):
            inj.hit("fsync")
            real_os.fdatasync(fd)

        def copy_file_range(self, *a):
            inj.hit("copy")
            return real_os.copy_file_range(*a)

    class File:
        def __init__(self, f):
            self._f = f

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

        def write(self, data):
            inj.hit("write")
            return self._f.write(data)

        def truncate(self, *a):
            inj.hit("truncate")
            return self._f.truncate(*a)

    real_unlink = pathlib.Path.unlink

    def unlink(self, missing_ok=False):
        if str(self).startswith(inj.staging):
            inj.hit("unlink")
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(fs, "os", OS())
    monkeypatch.setattr(fs, "open", lambda *a, **k: File(open(*a, **k)), raising=False)  # noqa: SIM115
    monkeypatch.setattr(pathlib.Path, "unlink", unlink)


# ------------------------------------------------------------------ scenarios
# Each returns (store, expected bytes, destination, operation, resume).


def _store(root: pathlib.Path, durability: str) -> fs.FileStore:
    return fs.FileStore(root / ".tus", durability=durability, lock_timeout=1)


def _upload(store, root, data, done: int) -> str:
    uid = store.new_upload(FileInfo(size=len(data), path=str(root / "out" / "f.bin")))
    if done:
        with store.lock(uid):
            store.write_chunk(uid, 0, io.BytesIO(data[:done]))
    return uid


def _resume_write(store, uid, data):
    info = store.get_info(uid)
    if not info.is_complete:
        with store.lock(uid):
            store.write_chunk(uid, info.offset, io.BytesIO(data[info.offset :]))


def scenario(name: str, root: pathlib.Path, data: bytes):
    if name in ("patch-middle", "patch-middle-always", "patch-last", "patch-checksum"):
        store = _store(root, "always" if name.endswith("always") else "complete")
        uid = _upload(store, root, data, 100_000)
        end = 200_000 if name.startswith("patch-middle") else len(data)
        checksum = None
        if name == "patch-checksum":
            checksum = Checksum("sha256", hashlib.sha256(data[100_000:]).digest())

        def op():
            with store.lock(uid):
                store.write_chunk(uid, 100_000, io.BytesIO(data[100_000:end]), checksum)

        return store, uid, op, lambda s: _resume_write(s, uid, data)
    if name == "concat":
        store = _store(root, "complete")
        parts = []
        for a, b in ((0, 120_000), (120_000, 250_000), (250_000, len(data))):
            pid = store.new_upload(FileInfo(size=b - a, is_partial=True))
            with store.lock(pid):
                store.write_chunk(pid, 0, io.BytesIO(data[a:b]))
            parts.append(pid)
        uid = store.new_upload(
            FileInfo(
                size=len(data),
                is_final=True,
                partial_uploads=parts,
                path=str(root / "out" / "f.bin"),
            )
        )

        def op():
            with store.lock(uid):
                store.concat_uploads(uid, parts)

        def resume(s):
            if not s.get_info(uid).is_complete:
                with s.lock(uid):
                    s.concat_uploads(uid, parts)

        return store, uid, op, resume
    raise ValueError(name)


SCENARIOS = ["patch-middle", "patch-middle-always", "patch-last", "patch-checksum", "concat"]


def check_consistent(store: fs.FileStore, uid: str, data: bytes, root: pathlib.Path, where):
    info = store.get_info(uid)  # readable, never raises
    staged = store.directory / uid
    if not info.is_complete:
        on_disk = staged.read_bytes() if staged.exists() else b""
        assert info.offset <= len(on_disk), where
        assert on_disk[: info.offset] == data[: info.offset], where
    for rel, path in workspace_files(root).items():
        if rel.startswith("out/"):
            assert path.read_bytes() == data, f"{where}: a partial file at {rel}"
    return info


def check_landed(store, uid, data, root, where):
    info = store.get_info(uid)
    assert info.is_complete, where
    assert pathlib.Path(info.path).read_bytes() == data, where
    files = [r for r in workspace_files(root) if not r.startswith(".tus")]
    assert files == ["out/f.bin"], f"{where}: {files}"
    problems = staging_problems(store.directory)
    assert not problems, f"{where}: {problems}"


@pytest.mark.parametrize("restart", [False, True], ids=["same-process", "after-recover"])
@pytest.mark.parametrize("name", SCENARIOS)
def test_each_failing_call_leaves_a_resumable_upload(name, restart, tmp_path, monkeypatch):
    data = random.Random(seed_from_env()).randbytes(SIZE)
    # a clean run counts the calls the operation makes
    root0 = tmp_path / "count"
    store, uid, op, _ = scenario(name, root0, data)
    inj = Injector(store.directory)
    with monkeypatch.context() as m:
        install(m, inj)
        op()
    calls = list(inj.calls)
    assert calls, "the operation made no calls to fail"
    for k, site in enumerate(calls):
        root = tmp_path / f"{k}"
        store, uid, op, resume = scenario(name, root, data)
        inj = Injector(store.directory)
        inj.fail_at = k
        where = f"{name}: failing call #{k} ({site}) of {calls}"
        with monkeypatch.context() as m:
            install(m, inj)
            with contextlib.suppress(OSError, StoreError):
                op()
        check_consistent(store, uid, data, root, where)
        if restart:
            store = _store(root, store.durability.value)
            store.recover()
            check_consistent(store, uid, data, root, where)
            assert not staging_problems(store.directory), where
        resume(store)
        if not restart and (
            not (root / "out" / "f.bin").exists() or (store.directory / uid).exists()
        ):
            # the final move failed after completion was recorded: the next request on
            # the upload (HEAD, under its lock) moves it, as UploadManager.get_info does
            with store.lock(uid):
                store.settle(store.get_info(uid))
        elif not restart and staging_problems(store.directory):
            # e.g. a failed unlink of a used partial's lock file: harmless, and the
            # next start's recover() removes it
            store = _store(root, store.durability.value)
            store.recover()
        check_landed(store, uid, data, root, where)
    record_figures("fault_injection", {"scenario": name, "restart": restart, "faults": len(calls)})
