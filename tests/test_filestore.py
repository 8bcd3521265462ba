"""FileStore on its own: no server, no HTTP."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest

from jupyter_tus import FileInfo, FileStore, UploadLocked, UploadNotFound
from jupyter_tus import filestore as fs
from jupyter_tus.store import (
    Checksum,
    ChecksumMismatch,
    OffsetMismatch,
    UploadIncomplete,
    UploadNotPatchable,
    UploadTooLarge,
)


@pytest.fixture
def store(tmp_path):
    return FileStore(tmp_path / "staging")


def test_upload_without_destination_stays_in_store(store):
    uid = store.new_upload(FileInfo(size=6, metadata={"filename": "x"}))
    with store.lock(uid):
        assert store.write_chunk(uid, 0, io.BytesIO(b"abc")) == 3
        assert store.get_info(uid).offset == 3
        store.write_chunk(uid, 3, io.BytesIO(b"def"))
    info = store.get_info(uid)
    assert info.is_complete and info.offset == 6 and info.path is None
    with store.get_reader(uid) as reader:
        assert reader.read() == b"abcdef"
        reader.seek(2)
        assert reader.read(2) == b"cd"


def test_ids_are_random_and_long(store):
    ids = {store.new_upload(FileInfo(size=1)) for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) >= 22 for i in ids)  # >= 128 bits of token_urlsafe


def test_unknown_and_malformed_ids(store):
    for bad in ["A" * 32, "../../etc/passwd", "", "a/b" * 10]:
        with pytest.raises(UploadNotFound):
            store.get_info(bad)
        with pytest.raises(KeyError):  # documented: a KeyError subclass
            store.get_reader(bad)


def test_offset_is_the_data_on_disk(store):
    uid = store.new_upload(FileInfo(size=100))
    (store.directory / uid).write_bytes(b"x" * 42)  # as if a crash cut a write short
    assert store.get_info(uid).offset == 42
    with pytest.raises(OffsetMismatch):
        store.write_chunk(uid, 50, io.BytesIO(b"y"))


def test_too_much_data_keeps_what_fits(store):
    uid = store.new_upload(FileInfo(size=4))
    with pytest.raises(UploadTooLarge):
        store.write_chunk(uid, 0, io.BytesIO(b"123456"))
    assert store.get_info(uid).offset == 4


def test_checksum_mismatch_leaves_offset(store):
    uid = store.new_upload(FileInfo(size=10))
    store.write_chunk(uid, 0, io.BytesIO(b"12345"))
    with pytest.raises(ChecksumMismatch):
        store.write_chunk(uid, 5, io.BytesIO(b"67890"), Checksum("sha1", b"\0" * 20))
    assert store.get_info(uid).offset == 5
    assert (store.directory / uid).read_bytes() == b"12345"


def test_unverified_bytes_never_count(store):
    """A crash in the middle of a checksummed write: the offset stays at its start."""
    uid = store.new_upload(FileInfo(size=10))
    writer = store.open_writer(uid, 0, Checksum("md5", b"\0" * 16))
    writer.write(b"1234567")
    assert store.get_info(uid).offset == 0  # while unverified
    # the process dies here: no commit, no abort
    assert store.get_info(uid).offset == 0
    assert store.recover() == [f"cut {uid} back to its last verified offset 0"]
    assert (store.directory / uid).read_bytes() == b""


def test_declare_length(store):
    uid = store.new_upload(FileInfo(size=None))
    store.write_chunk(uid, 0, io.BytesIO(b"abc"))
    assert store.get_info(uid).size is None
    info = store.declare_length(uid, 3)
    assert info.is_complete and info.size == 3


def test_lands_in_destination_and_never_clobbers(store, tmp_path):
    dest = tmp_path / "work" / "data.csv"
    first = store.new_upload(FileInfo(size=1, path=str(dest)))
    second = store.new_upload(FileInfo(size=1, path=str(dest)))
    store.write_chunk(first, 0, io.BytesIO(b"1"))
    store.write_chunk(second, 0, io.BytesIO(b"2"))
    assert dest.read_bytes() == b"1"
    assert (tmp_path / "work" / "data (1).csv").read_bytes() == b"2"
    assert store.get_info(second).path == str(tmp_path / "work" / "data (1).csv")
    info = json.loads((store.directory / f"{second}.info").read_text())
    assert info["path"].endswith("data (1).csv") and info["is_complete"]


def test_overwrite_replaces(store, tmp_path):
    dest = tmp_path / "data.csv"
    dest.write_text("old")
    uid = store.new_upload(FileInfo(size=3, path=str(dest), overwrite=True))
    store.write_chunk(uid, 0, io.BytesIO(b"new"))
    assert dest.read_text() == "new"


@pytest.fixture
def far_store(tmp_path):
    """A store whose staging directory is on another filesystem than tmp_path."""
    shm = "/dev/shm"
    if os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.fail("/dev/shm and the test's tmp_path share a filesystem on this machine")
    store = FileStore(f"{shm}/jupyter-tus-test-{os.getpid()}")
    yield store
    shutil.rmtree(store.directory)


def test_lands_across_filesystems(far_store, tmp_path):
    dest = tmp_path / "far.bin"
    uid = far_store.new_upload(FileInfo(size=5, path=str(dest)))
    far_store.write_chunk(uid, 0, io.BytesIO(b"hello"))
    assert dest.read_bytes() == b"hello"
    assert not (far_store.directory / uid).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tus-tmp")]


def test_recovery_across_filesystems_never_rewrites_the_landed_file(
    far_store, tmp_path, monkeypatch
):
    # A kill after the temp file was linked to its destination, before the cleanup:
    # recovery must not write into the temp file again, which is the landed file.
    dest = tmp_path / "far.bin"
    uid = far_store.new_upload(FileInfo(size=5, path=str(dest)))
    real_unlink = fs.Path.unlink

    def killed(self, missing_ok=False):
        raise KeyboardInterrupt("killed before the cleanup")

    monkeypatch.setattr(fs.Path, "unlink", killed)
    with pytest.raises(KeyboardInterrupt):
        far_store.write_chunk(uid, 0, io.BytesIO(b"hello"))
    monkeypatch.setattr(fs.Path, "unlink", real_unlink)
    landed = os.stat(dest)
    copies = []
    monkeypatch.setattr(fs, "_copy", lambda *a: copies.append(a))
    assert FileStore(far_store.directory).recover() == [f"finished landing {uid} at {dest}"]
    assert copies == []
    assert dest.read_bytes() == b"hello"
    assert os.stat(dest).st_ino == landed.st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["far.bin"]
    assert not (far_store.directory / uid).exists()


def test_concat(store, tmp_path):
    a = store.new_upload(FileInfo(size=3, is_partial=True))
    b = store.new_upload(FileInfo(size=2, is_partial=True))
    store.write_chunk(a, 0, io.BytesIO(b"abc"))
    with pytest.raises(UploadIncomplete):
        final = store.new_upload(FileInfo(is_final=True, path=str(tmp_path / "j.txt")))
        store.concat_uploads(final, [a, b])
    store.write_chunk(b, 0, io.BytesIO(b"de"))
    final = store.new_upload(FileInfo(is_final=True, path=str(tmp_path / "j.txt")))
    with store.lock(final):
        info = store.concat_uploads(final, [a, b])
    assert info.is_complete and (tmp_path / "j.txt").read_bytes() == b"abcde"
    with pytest.raises(UploadNotPatchable):
        store.write_chunk(final, 5, io.BytesIO(b"x"))
    with pytest.raises(UploadNotFound):  # partials are removed once the final landed
        store.get_info(a)


def test_terminate_keeps_landed_file(store, tmp_path):
    dest = tmp_path / "keep.txt"
    uid = store.new_upload(FileInfo(size=2, path=str(dest)))
    store.write_chunk(uid, 0, io.BytesIO(b"ok"))
    with store.lock(uid):
        store.terminate(uid)
    assert dest.read_text() == "ok"
    with pytest.raises(UploadNotFound):
        store.get_info(uid)


def test_lock_excludes_threads(store):
    uid = store.new_upload(FileInfo(size=1))
    held = store.lock(uid)
    assert held.acquire(blocking=False)
    results = []
    t = threading.Thread(target=lambda: results.append(store.lock(uid).acquire(blocking=False)))
    t.start()
    t.join()
    assert results == [False]
    with pytest.raises(UploadLocked), store.lock(uid, timeout=0.05):
        pass
    held.release()
    with store.lock(uid, timeout=0.05) as lock:
        assert lock.held


def test_lock_holds_across_processes(store):
    uid = store.new_upload(FileInfo(size=1))
    code = (
        "import sys; from jupyter_tus import FileStore;"
        f"l = FileStore({str(store.directory)!r}).lock({uid!r}); l.acquire();"
        "print('held', flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "held"
        assert not store.lock(uid).acquire(blocking=False)
    finally:
        child.stdin.close()
        child.wait(10)
    lock = store.lock(uid)
    assert lock.acquire(blocking=False)
    lock.release()


def test_recover_finishes_an_interrupted_landing(store, tmp_path):
    dest = tmp_path / "late.bin"
    uid = store.new_upload(FileInfo(size=4, path=str(dest)))
    (store.directory / uid).write_bytes(b"abcd")
    # as if the server died after recording completion, before the rename
    info = json.loads((store.directory / f"{uid}.info").read_text())
    info.update(is_complete=True, offset=4)
    (store.directory / f"{uid}.info").write_text(json.dumps(info))
    report = store.recover()
    assert report == [f"finished landing {uid} at {dest}"]
    assert dest.read_bytes() == b"abcd"
    assert not (store.directory / uid).exists()


def test_recover_after_link_before_unlink(store, tmp_path):
    dest = tmp_path / "twice.bin"
    uid = store.new_upload(FileInfo(size=2, path=str(dest)))
    store.write_chunk(uid, 0, io.BytesIO(b"ok"))
    os.link(dest, store.directory / uid)  # the staging name still there, same inode
    store.recover()
    assert dest.read_bytes() == b"ok"
    assert not (store.directory / uid).exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("twice")) == ["twice.bin"]


def test_recover_removes_only_its_own_debris(store):
    store.claim()
    tmp = f"{'D' * 32}.info.0123abcd.tmp"  # an .info being replaced when a crash came
    lock = f"{'E' * 32}.lock"  # a lock whose upload is gone
    (store.directory / tmp).write_text("{}")
    (store.directory / lock).write_bytes(b"")
    # Not the store's: a record-shaped file that is no record, bytes it never made
    # (the store writes the record first), and the user's own files and folders.
    foreign = {
        f"{'C' * 32}.info": b"{not json",
        "B" * 32: b"data",
        "draft.tmp": b"mine",
        "poetry.lock": b"mine",
        "measurement_summary_2024.info": b'{"id": "x"}',
    }
    for name, data in foreign.items():
        (store.directory / name).write_bytes(data)
    (store.directory / "sub").mkdir()
    report = store.recover()
    assert f"removed temp file {tmp}" in report
    assert not (store.directory / tmp).exists() and not (store.directory / lock).exists()
    for name, data in foreign.items():
        assert (store.directory / name).read_bytes() == data
    assert (store.directory / "sub").is_dir()
    assert any(line.startswith("left alone 5 entries") for line in report), report
    assert f"left alone {'C' * 32}.info: not an upload record" in report
    assert store.list_uploads() == []


def test_list_uploads_newest_first(store):
    ids = [store.new_upload(FileInfo(size=1)) for _ in range(3)]
    assert [i.id for i in store.list_uploads()] == ids[::-1]


def test_file_store_has_every_capability(store):
    """FileStore has every optional capability: terminate, concatenate, declare a
    length, lock, expire (what the endpoint advertises as tus extensions)."""
    from jupyter_tus import store as protocols

    for capability in (
        protocols.DataStore,
        protocols.TerminaterDataStore,
        protocols.ConcaterDataStore,
        protocols.LengthDeclarableDataStore,
        protocols.LockerDataStore,
        protocols.ExpiringDataStore,
    ):
        assert isinstance(store, capability), capability.__name__


def test_across_filesystems_the_landed_file_gets_the_folders_group_and_the_umask(
    far_store, tmp_path
):
    from jupyter_tus.workspace import Workspace, process_umask

    far_store.workspace = Workspace(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, -1, 4242)
    shared.chmod(0o2775)
    uid = far_store.new_upload(FileInfo(size=2, path=str(shared / "new.bin")))
    far_store.write_chunk(uid, 0, io.BytesIO(b"ok"))
    landed = os.stat(shared / "new.bin")
    assert landed.st_gid == 4242
    assert landed.st_mode & 0o7777 == 0o666 & ~process_umask()
    old = shared / "old.bin"
    old.write_bytes(b"old")
    os.chown(old, -1, 777)
    old.chmod(0o600)
    uid = far_store.new_upload(FileInfo(size=3, path=str(old), overwrite=True))
    far_store.write_chunk(uid, 0, io.BytesIO(b"new"))
    assert old.read_bytes() == b"new"
    assert (os.stat(old).st_gid, os.stat(old).st_mode & 0o7777) == (777, 0o600)


def test_across_filesystems_a_folder_swapped_out_of_root_is_refused(far_store, tmp_path):
    from jupyter_tus.store import LandingRefused
    from jupyter_tus.workspace import Workspace

    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "dest").mkdir(parents=True)
    outside.mkdir()
    far_store.workspace = Workspace(root)
    uid = far_store.new_upload(FileInfo(size=4, path=str(root / "dest" / "x.bin")))
    far_store.write_chunk(uid, 0, io.BytesIO(b"ab"))
    (root / "dest").rmdir()
    (root / "dest").symlink_to(outside)
    with pytest.raises(LandingRefused, match="outside the server's root"):
        far_store.write_chunk(uid, 2, io.BytesIO(b"cd"))
    assert list(outside.iterdir()) == []  # not even the temp copy
    with far_store.get_reader(uid) as reader:
        assert reader.read() == b"abcd"


def test_a_staged_copy_back_after_landing_never_lands_twice(far_store, tmp_path):
    # A power cut can undo the unlink of the staged bytes after a landing across
    # filesystems: recovery must see that the file there is the one that landed.
    dest = tmp_path / "once.bin"
    uid = far_store.new_upload(FileInfo(size=4, path=str(dest)))
    far_store.write_chunk(uid, 0, io.BytesIO(b"once"))
    (far_store.directory / uid).write_bytes(b"once")  # the unlink, undone
    FileStore(far_store.directory).recover()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["once.bin"]
    assert not (far_store.directory / uid).exists()
    assert far_store.get_info(uid).path == str(dest)


@pytest.mark.parametrize("planted", ["hard link", "fifo"])
def test_across_filesystems_a_planted_temp_name_is_replaced_never_written_through(
    far_store, tmp_path, planted
):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"not yours")
    uid = far_store.new_upload(FileInfo(size=8, path=str(tmp_path / "up.bin")))
    temp = tmp_path / f".{uid}.tus-tmp"  # its name can be guessed from the staging folder
    if planted == "hard link":
        os.link(victim, temp)
    else:
        os.mkfifo(temp)
    far_store.write_chunk(uid, 0, io.BytesIO(b"uploaded"))
    assert (tmp_path / "up.bin").read_bytes() == b"uploaded"
    assert victim.read_bytes() == b"not yours"
    assert not temp.exists()


def test_concatenation_holds_its_partials(store, tmp_path):
    from jupyter_tus.store import UploadLocked

    a = store.new_upload(FileInfo(size=1, is_partial=True))
    store.write_chunk(a, 0, io.BytesIO(b"a"))
    final = store.new_upload(FileInfo(is_final=True, path=str(tmp_path / "f.bin")))
    with store.lock(a), pytest.raises(UploadLocked):  # a DELETE of it in flight
        store.concat_uploads(final, [a])
    (store.directory / a).unlink()  # its bytes gone by hand
    with pytest.raises(UploadNotFound, match="gone"):
        store.concat_uploads(final, [a])
    b = store.new_upload(FileInfo(size=1, is_partial=True))
    store.write_chunk(b, 0, io.BytesIO(b"b"))
    final = store.new_upload(FileInfo(is_final=True, path=str(tmp_path / "twice.bin")))
    store.concat_uploads(final, [b, b])  # one partial twice: allowed
    assert (tmp_path / "twice.bin").read_bytes() == b"bb"
