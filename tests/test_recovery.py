"""Start-up recovery, one deterministic test per branch (what a crash or a person can
leave in the staging folder), and the promise that no upload, however bad, keeps the
extension from loading."""

from __future__ import annotations

import fcntl
import io
import json
import os
from pathlib import Path

import pytest
import requests

from jupyter_tus import FileInfo, FileStore
from jupyter_tus.store import (
    LandingRefused,
    StagingRefused,
    UploadNotFound,
    UploadQuarantined,
)
from jupyter_tus.workspace import NAME_MAX, Workspace

from .reliability.helpers import TUS, Client, server


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "root"
    folder.mkdir()
    return folder


@pytest.fixture
def store(root):
    return FileStore(root / ".tus", workspace=Workspace(root))


def edit_info(store: FileStore, uid: str, **changes) -> None:
    """Rewrite a record as a crash at some point would have left it."""
    path = store.directory / f"{uid}.info"
    info = json.loads(path.read_text())
    info.update(changes)
    path.write_text(json.dumps(info))


def staged_complete(store: FileStore, dest: Path, data: bytes) -> str:
    """A finished upload whose move had not happened yet when the server died."""
    uid = store.new_upload(FileInfo(size=len(data), path=str(dest)))
    (store.directory / uid).write_bytes(data)
    edit_info(store, uid, is_complete=True, offset=len(data))
    return uid


# ----------------------------------------------------------- one test per branch


def test_recovery_removes_temp_files_of_replaced_records(store):
    uid = store.new_upload(FileInfo(size=3))
    tmp = store.directory / f"{uid}.info.deadbeef.tmp"
    tmp.write_text("{half")
    assert store.recover() == [f"removed temp file {tmp.name}"]
    assert not tmp.exists() and store.get_info(uid).size == 3


def test_recovery_removes_a_lock_whose_upload_is_gone(store):
    store.claim()
    lock = store.directory / f"{'L' * 32}.lock"
    lock.write_bytes(b"")
    store.recover()
    assert not lock.exists()


def test_recovery_drops_a_record_whose_bytes_are_gone(store):
    # a creation cut between its record and its data file, or a termination between
    # its data file and its record
    uid = store.new_upload(FileInfo(size=3))
    (store.directory / uid).unlink()
    assert store.recover() == [f"removed {uid}, whose data file was gone"]
    with pytest.raises(UploadNotFound):
        store.get_info(uid)


def test_recovery_drops_a_finished_partial_whose_bytes_are_gone(store):
    # a termination (expiry, DELETE) of a finished partial upload cut between its data
    # file and its record: nothing can be concatenated from it any more
    uid = store.new_upload(FileInfo(size=2, is_partial=True))
    store.write_chunk(uid, 0, io.BytesIO(b"ab"))
    assert store.get_info(uid).is_complete
    (store.directory / uid).unlink()
    assert store.recover() == [f"removed {uid}, whose data file was gone"]
    with pytest.raises(UploadNotFound):
        store.get_info(uid)
    assert not list(store.directory.glob(f"{uid}*"))


def test_recovery_cuts_an_unverified_write_back(store):
    uid = store.new_upload(FileInfo(size=10))
    store.write_chunk(uid, 0, io.BytesIO(b"abc"))
    with open(store.directory / uid, "ab") as f:
        f.write(b"unchecked")  # a checksummed write the crash cut before its verdict
    edit_info(store, uid, unverified_from=3)
    assert store.recover() == [f"cut {uid} back to its last verified offset 3"]
    assert store.get_info(uid).offset == 3
    assert (store.directory / uid).read_bytes() == b"abc"


def test_recovery_completes_an_upload_whose_bytes_had_all_arrived(store, root):
    # the last PATCH wrote every byte, then the server died before recording completion
    uid = store.new_upload(FileInfo(size=4, path=str(root / "all.bin")))
    (store.directory / uid).write_bytes(b"abcdEXTRA")  # never more than the length
    assert store.recover() == [f"completed {uid} whose bytes had all arrived"]
    assert (root / "all.bin").read_bytes() == b"abcd"
    assert store.get_info(uid).is_complete


def test_recovery_finishes_an_interrupted_landing(store, root):
    uid = staged_complete(store, root / "sub" / "late.bin", b"late")
    assert store.recover() == [f"finished landing {uid} at {root / 'sub' / 'late.bin'}"]
    assert (root / "sub" / "late.bin").read_bytes() == b"late"


def test_recovery_redoes_an_interrupted_concatenation(store, root):
    a = store.new_upload(FileInfo(size=2, is_partial=True))
    b = store.new_upload(FileInfo(size=2, is_partial=True))
    store.write_chunk(a, 0, io.BytesIO(b"ab"))
    store.write_chunk(b, 0, io.BytesIO(b"cd"))
    final = store.new_upload(FileInfo(is_final=True, path=str(root / "joined.bin")))
    edit_info(store, final, size=4, partial_uploads=[a, b])
    (store.directory / final).write_bytes(b"a")  # the copy was cut short
    assert store.recover() == [f"redid concatenation of {final}"]
    assert (root / "joined.bin").read_bytes() == b"abcd"
    for pid in (a, b):
        with pytest.raises(UploadNotFound):
            store.get_info(pid)


def test_recovery_removes_the_partials_of_a_landed_final(store, root):
    a = store.new_upload(FileInfo(size=1, is_partial=True))
    store.write_chunk(a, 0, io.BytesIO(b"z"))
    final = store.new_upload(FileInfo(size=1, path=str(root / "z.bin")))
    store.write_chunk(final, 0, io.BytesIO(b"z"))
    edit_info(store, final, is_final=True, partial_uploads=[a])
    assert store.recover() == [f"removed the used partial uploads of {final}"]
    with pytest.raises(UploadNotFound):
        store.get_info(a)


def _create_whole_killed_before_its_record(store: FileStore, dest: Path, data: bytes) -> str:
    """A ``create_whole`` whose process died (``os._exit``, no cleanup) between its
    synced data file and its first record; the upload's id, read from what it left."""
    pid = os.fork()
    if pid == 0:  # the child: dies where a kill -9 could strike
        try:
            FileStore._complete = lambda *args, **kwargs: os._exit(0)
            store.create_whole(FileInfo(size=len(data), path=str(dest)), data)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    left = sorted(p.name for p in store.directory.iterdir() if p.name != ".jupyter-tus-store")
    uid = left[0]
    assert left == [uid, f"{uid}.lock"]  # the bytes and the lock file, no record
    return uid


def test_recovery_removes_a_creation_cut_short_before_its_record(store, root):
    uid = _create_whole_killed_before_its_record(store, root / "a.bin", b"whole body")
    report = FileStore(store.directory, workspace=Workspace(root)).recover()
    assert f"removed {uid}, a creation cut short before its record" in report
    assert [p.name for p in store.directory.iterdir()] == [".jupyter-tus-store"]
    assert not (root / "a.bin").exists()  # never promised: no answer was sent


def test_recovery_leaves_a_creation_whose_creator_is_at_work(store, root):
    uid = _create_whole_killed_before_its_record(store, root / "a.bin", b"whole body")
    # Its lock held, as by a creator in another process that is still writing.
    fd = os.open(store.directory / f"{uid}.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        FileStore(store.directory, workspace=Workspace(root)).recover()
        assert (store.directory / uid).read_bytes() == b"whole body"
    finally:
        os.close(fd)


def test_recovery_keeps_the_lock_file_of_a_creation_at_work(store, root):
    # A second server starting on the same root while a creator (another process)
    # holds its lock before its record: the lock file is what marks the bytes as the
    # store's, so once that creator dies the next recovery still removes them.
    uid = _create_whole_killed_before_its_record(store, root / "a.bin", b"whole body")
    fd = os.open(store.directory / f"{uid}.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        FileStore(store.directory, workspace=Workspace(root)).recover()
        assert (store.directory / f"{uid}.lock").exists()
    finally:
        os.close(fd)  # the creator dies
    report = FileStore(store.directory, workspace=Workspace(root)).recover()
    assert f"removed {uid}, a creation cut short before its record" in report
    assert [p.name for p in store.directory.iterdir()] == [".jupyter-tus-store"]


def test_a_creation_whose_lock_file_a_recovery_removed_makes_it_again(store, root, monkeypatch):
    # Another server's recovery finds the new lock file free (between its making and
    # its flock) and removes it: the creator must lock a lock file that is there, or
    # a crash before its record leaves bytes no recovery knows as the store's.
    from jupyter_tus import locking

    real_flock, raced = fcntl.flock, []

    def flock(fd, op):
        if not raced:
            raced.append(fd)
            FileStore(store.directory, workspace=Workspace(root)).recover()
        return real_flock(fd, op)

    monkeypatch.setattr(locking.fcntl, "flock", flock)
    uid = _create_whole_killed_before_its_record(store, root / "a.bin", b"whole body")
    monkeypatch.undo()
    report = FileStore(store.directory, workspace=Workspace(root)).recover()
    assert f"removed {uid}, a creation cut short before its record" in report


def test_a_record_written_while_another_server_recovers_is_written(store, root, monkeypatch):
    # A second server starting on the same folder removes the temp files of records
    # (what a crash leaves); one being written by the first server right then (here
    # the first record of a creation with its whole body) is written again.
    from jupyter_tus import filestore

    real_replace, raced = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if not raced and str(src).endswith(".tmp"):
            raced.append(src)
            FileStore(store.directory, workspace=Workspace(root)).recover()
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(filestore.os, "replace", replace)
    info = store.create_whole(FileInfo(size=4, path=str(root / "raced.bin")), b"data")
    assert raced and info.is_complete
    assert (root / "raced.bin").read_bytes() == b"data"


def test_recovery_keeps_the_bytes_of_a_record_an_earlier_version_set_aside(store, root):
    # <id>.info.corrupt beside its data file and its (free) lock file: a quarantined
    # upload of an earlier version, never a creation cut short.
    uid = staged_complete(store, root / "kept.bin", b"someone's bytes")
    with store.lock(uid):
        pass  # its lock file, as any upload has
    (store.directory / f"{uid}.info").rename(store.directory / f"{uid}.info.corrupt")
    FileStore(store.directory, workspace=Workspace(root)).recover()
    assert (store.directory / uid).read_bytes() == b"someone's bytes"
    assert (store.directory / f"{uid}.info.corrupt").exists()


def test_recovery_leaves_an_upload_locked_by_someone_else(store, root):
    uid = staged_complete(store, root / "busy.bin", b"busy")
    with store.lock(uid):
        assert store.recover() == []
    assert not (root / "busy.bin").exists()


def test_recovery_refuses_a_landing_that_can_never_happen_and_keeps_the_bytes(store, root):
    (root / "notes.txt").write_text("a file, not a folder")
    uid = staged_complete(store, root / "notes.txt" / "sub" / "x.bin", b"kept")
    [line] = store.recover()
    assert line.startswith(f"cannot land {uid}, its bytes are kept")
    info = store.get_info(uid)
    assert "'notes.txt' is a file, not a folder" in info.landing_error
    assert store.pending_landings() and list(store.pending_landings()) == []
    with store.get_reader(uid) as reader:
        assert reader.read() == b"kept"
    assert store.recover() == []  # recorded: never tried again


def test_recovery_refuses_a_landing_through_a_symlink_out_of_root(store, root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "data").symlink_to(outside)
    uid = staged_complete(store, root / "data" / "x.bin", b"kept")
    [line] = store.recover()
    assert "outside the server's root" in line
    assert list(outside.iterdir()) == []
    with pytest.raises(LandingRefused):
        store._land_checked(store.get_info(uid))


def test_recovery_quarantines_what_it_cannot_repair_and_goes_on(store, root):
    bad = store.new_upload(FileInfo(size=5))
    (store.directory / bad).unlink()
    (store.directory / bad).mkdir()  # a folder where its bytes should be
    edit_info(store, bad, unverified_from=0)
    good = staged_complete(store, root / "good.bin", b"good")
    report = store.recover()
    assert f"quarantined {bad}: FileNotFoundError: not a regular file" in report
    assert (root / "good.bin").read_bytes() == b"good"
    assert good and set(store.quarantined()) == {bad}
    with pytest.raises(UploadQuarantined, match="could not be recovered"):
        store.get_info(bad)
    assert [i.id for i in store.list_uploads()] == [good]
    assert (store.directory / bad).is_dir()  # kept as it was, for the administrator


def test_a_staging_folder_holding_foreign_files_is_refused_untouched(root):
    folder = root / ".tus"
    folder.mkdir()
    mine = {"draft.tmp": b"1", "poetry.lock": b"2", "requirements-dev-frozen": b"3"}
    for name, data in mine.items():
        (folder / name).write_bytes(data)
    (folder / "measurement_summary_2024.info").write_text("{}")
    (folder / "sub").mkdir()
    store = FileStore(folder, workspace=Workspace(root))
    with pytest.raises(StagingRefused, match=r"c\.TusApp\.staging_dir"):
        store.claim()
    with pytest.raises(StagingRefused):
        store.new_upload(FileInfo(size=1))
    assert store.recover() != []  # only reports
    for name, data in mine.items():
        assert (folder / name).read_bytes() == data
    assert (folder / "measurement_summary_2024.info").read_text() == "{}"
    assert (folder / "sub").is_dir()


def test_a_staging_folder_of_an_earlier_version_is_taken_over(root):
    old = FileStore(root / ".tus", workspace=Workspace(root))
    uid = old.new_upload(FileInfo(size=3))
    (root / ".tus" / ".jupyter-tus-store").unlink()  # as an earlier version left it
    store = FileStore(root / ".tus", workspace=Workspace(root))
    store.claim()
    assert (root / ".tus" / ".jupyter-tus-store").exists()
    assert store.get_info(uid).size == 3


# ----------------------------------------------------------- the server starts anyway


def test_a_server_starts_and_serves_whatever_its_staging_folder_holds(tmp_path):
    """Uploads that cannot land, or cannot be repaired, never keep the extension
    from loading: each answers for itself, every other upload and the endpoint work."""
    root = tmp_path / "root"
    root.mkdir()
    store = FileStore(root / ".tus", workspace=Workspace(root))
    (root / "notes.txt").write_text("mine")
    through_file = staged_complete(store, root / "notes.txt" / "sub" / "a.csv", b"a,b\n")
    long_name = "n" * (NAME_MAX - 6) + ".csv"
    (root / long_name).write_text("taken")
    taken_long = staged_complete(store, root / long_name, b"x,y\n")
    bad = store.new_upload(FileInfo(size=5))
    (store.directory / bad).unlink()
    (store.directory / bad).mkdir()
    edit_info(store, bad, unverified_from=0)
    resumable = store.new_upload(FileInfo(size=6, path=str(root / "later.bin")))
    store.write_chunk(resumable, 0, io.BytesIO(b"abc"))

    proc = server(root)
    proc.start()
    try:
        c = Client(proc)
        r = c.request("OPTIONS")
        assert r.status_code == 204 and r.headers["Tus-Resumable"] == "1.0.0"
        r = c.head(through_file)
        assert r.status_code == 403 and "Jupyter-Tus-Path" not in r.headers
        r = c.request("GET", through_file)
        assert r.status_code == 200 and r.content == b"a,b\n"
        r = c.head(taken_long)
        landed = requests.utils.unquote(r.headers["Jupyter-Tus-Path"])
        assert r.status_code == 200 and len(landed.encode()) <= NAME_MAX
        assert (root / landed).read_bytes() == b"x,y\n"
        r = c.head(bad)
        assert r.status_code == 503
        r = c.patch(bad, 0, b"12345")
        assert r.status_code == 503 and "could not be recovered" in r.json()["message"]
        assert (store.directory / bad).is_dir()
        assert c.patch(resumable, 3, b"def").status_code == 204
        assert (root / "later.bin").read_bytes() == b"abcdef"
        assert "Traceback" not in proc.log()
    finally:
        proc.stop()


def test_a_server_with_a_foreign_staging_folder_says_which_setting_to_change(tmp_path):
    root = tmp_path / "root"
    (root / ".tus").mkdir(parents=True)
    (root / ".tus" / "poetry.lock").write_text("mine")
    proc = server(root)
    proc.start()
    try:
        r = requests.options(proc.endpoint, headers={**TUS, **proc.auth}, timeout=30)
        assert r.status_code == 503
        assert "c.TusApp.staging_dir" in r.json()["message"]
        r = requests.post(proc.endpoint, headers={**TUS, "Upload-Length": "1"}, timeout=30)
        assert r.status_code == 403  # the unauthenticated learn nothing
        assert (root / ".tus" / "poetry.lock").read_text() == "mine"
        assert sorted(os.listdir(root / ".tus")) == ["poetry.lock"]
    finally:
        proc.stop()


async def test_a_file_named_like_a_record_is_never_an_upload(tus, staging):
    uid = "R" * 32
    (staging / f"{uid}.info").write_text("{not json")
    (staging / uid).write_bytes(b"someone's bytes")
    for method in ("HEAD", "GET", "DELETE"):
        assert (await tus.request(method, uid)).code == 404
    assert (await tus.patch(uid, 0, b"x")).code == 404
    assert (staging / f"{uid}.info").read_text() == "{not json"
    assert (staging / uid).read_bytes() == b"someone's bytes"


def test_a_record_larger_than_any_record_is_not_read_as_one(store):
    uid = store.new_upload(FileInfo(size=3))
    path = store.directory / f"{uid}.info"
    record = path.read_text()
    assert len(record) < 1000
    path.write_text(record + " " * (1024 * 1024))  # valid JSON, past RECORD_MAX
    with pytest.raises(UploadNotFound):
        store.get_info(uid)
    path.write_text(record + " " * 1000)
    assert store.get_info(uid).size == 3


def test_recovery_never_lands_a_forged_record_in_a_hidden_name(store, root):
    uid = staged_complete(store, root / ".bashrc", b"echo owned")
    [line] = store.recover()
    assert line.startswith(f"cannot land {uid}") and "hidden name" in line
    assert not (root / ".bashrc").exists()


def test_recovery_never_blocks_on_a_fifo(store):
    store.claim()
    os.mkfifo(store.directory / f"{'F' * 32}.info")
    uid = store.new_upload(FileInfo(size=3))
    (store.directory / uid).unlink()
    os.mkfifo(store.directory / uid)
    report = store.recover()  # returns: nothing opened the FIFOs for reading
    assert f"left alone {'F' * 32}.info: not an upload record" in report
