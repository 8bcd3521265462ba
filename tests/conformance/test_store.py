"""The store contract, one suite for every store (as @tus/server's shared store tests):
each test runs against FileStore and against S3Store on a real SeaweedFS.

What a store promises (store.py, docs/architecture.md): the offset counts only bytes
the storage holds; a write starts at the offset or is refused; two writers never
interleave; a checksummed write that fails its checksum (or is cut short) leaves the
offset where it was; a deferred length is declared once; partial uploads concatenate
in order; termination leaves nothing behind; unfinished uploads expire; a crash at any
point loses nothing acknowledged; a finished upload lands at its destination without
clobbering anything unless asked to; and a writer holds at most about one part.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import random
import signal
import subprocess
import threading
import time
import tracemalloc
import zlib

import pytest

from jupyter_tus import store as protocols
from jupyter_tus.store import (
    Checksum,
    ChecksumMismatch,
    DestinationExists,
    DestinationRefused,
    FileInfo,
    LandingFailed,
    LengthAlreadyDeclared,
    OffsetMismatch,
    StagingRefused,
    StorageUnavailable,
    UploadGone,
    UploadIncomplete,
    UploadLocked,
    UploadNotFound,
    UploadNotPatchable,
    UploadTooLarge,
)

from .harness import S3_PART, MiB, child_command


def body(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def write(store, upload_id: str, offset: int, data: bytes, checksum=None, piece=MiB):
    """One write (a PATCH) of ``data`` at ``offset``, handed over in ``piece``s."""
    writer = store.open_writer(upload_id, offset, checksum)
    for i in range(0, len(data), piece):
        writer.write(data[i : i + piece])
    return writer.commit()


def read_all(store, upload_id: str) -> bytes:
    with store.get_reader(upload_id) as reader:
        return reader.read()


def digest(algorithm: str, data: bytes) -> Checksum:
    if algorithm == "crc32":
        return Checksum("crc32", zlib.crc32(data).to_bytes(4, "big"))
    return Checksum(algorithm, hashlib.new(algorithm, data).digest())


def records_only(names: list[str]) -> bool:
    """Nothing but the upload's record (and, for the file store, its lock file)."""
    return all(n.endswith((".info", ".lock")) for n in names)


# --------------------------------------------------------------------------- the core


def test_every_store_has_every_capability(harness):
    store = harness.store()
    for capability in (
        protocols.DataStore,
        protocols.TerminaterDataStore,
        protocols.ConcaterDataStore,
        protocols.LengthDeclarableDataStore,
        protocols.LockerDataStore,
        protocols.ExpiringDataStore,
        protocols.LandingDataStore,
    ):
        assert isinstance(store, capability), capability.__name__


def test_new_write_offset_read(harness):
    """Writes of every size (below a part, across parts, exactly to the end) move the
    offset by what they carried; the bytes read back whole and from any position."""
    store = harness.store()
    data = body(12 * MiB + 7)
    uid = store.new_upload(FileInfo(size=len(data), metadata={"filename": "x.bin"}))
    assert len(uid) >= 22 and store.get_info(uid).offset == 0
    offset = 0
    for end in (3 * MiB, 3 * MiB + 1, 9 * MiB + 5, len(data)):
        info = write(store, uid, offset, data[offset:end])
        assert info.offset == end == store.get_info(uid).offset
        offset = end
    info = store.get_info(uid)
    assert info.is_complete and info.size == len(data) and info.path is None
    assert read_all(store, uid) == data
    with store.get_reader(uid) as reader:
        reader.seek(5 * MiB - 3)
        assert reader.read(10) == data[5 * MiB - 3 : 5 * MiB + 7]
        reader.seek(-4, io.SEEK_END)
        assert reader.read() == data[-4:]
    assert [i.id for i in store.list_uploads()] == [uid]


def test_unknown_and_malformed_ids(harness):
    store = harness.store()
    for bad in ("A" * 32, "../../etc/passwd", "", "x" * 300):
        with pytest.raises(UploadNotFound) as caught:
            store.get_info(bad)
        assert isinstance(caught.value, KeyError)
        with pytest.raises(UploadNotFound):
            store.open_writer(bad, 0)


def test_list_uploads_newest_first(harness):
    store = harness.store()
    ids = [store.new_upload(FileInfo(size=1)) for _ in range(3)]
    assert [i.id for i in store.list_uploads()] == ids[::-1]


def test_offset_mismatch(harness):
    store = harness.store()
    uid = store.new_upload(FileInfo(size=4096))
    write(store, uid, 0, b"a" * 1024)
    for wrong in (0, 2048):
        with pytest.raises(OffsetMismatch) as caught:
            store.open_writer(uid, wrong)
        assert (caught.value.expected, caught.value.given) == (1024, wrong)
    assert store.get_info(uid).offset == 1024


def test_a_write_past_the_length_keeps_what_fits(harness):
    store = harness.store()
    uid = store.new_upload(FileInfo(size=10))
    writer = store.open_writer(uid, 0)
    with pytest.raises(UploadTooLarge):
        writer.write(b"0123456789abcde")
    info = writer.commit()
    assert info.is_complete and info.offset == 10
    assert read_all(store, uid) == b"0123456789"


def test_a_finished_upload_takes_no_more_data(harness):
    store = harness.store()
    uid = store.new_upload(FileInfo(size=2))
    write(store, uid, 0, b"ok")
    with pytest.raises(UploadNotPatchable):
        store.open_writer(uid, 2)


def test_the_store_takes_over_only_its_own_storage(harness):
    """A staging area holding something that is not the store's is refused at start,
    and nothing in it is touched."""
    store = harness.store()
    uid = store.new_upload(FileInfo(size=1))
    harness.plant("notes.txt", b"mine")
    store.claim()  # marked as the store's: what it finds later is only left alone
    assert store.get_info(uid).size == 1
    fresh = harness.fresh_staging()
    harness.plant("notes.txt", b"mine", staging=fresh)
    with pytest.raises(StagingRefused):
        harness.store_at(fresh).claim()
    assert harness.planted("notes.txt", staging=fresh) == b"mine"


# --------------------------------------------------------------------------- writers


def test_writers_exclude_each_other_and_a_takeover_keeps_the_bytes(harness):
    """The lock excludes a second holder; asked to let go (a takeover), the holder
    aborts its write, keeping what arrived, and the newcomer goes on from there."""
    store = harness.store()
    data = body(8 * MiB)
    uid = store.new_upload(FileInfo(size=len(data)))
    first = store.lock(uid)
    assert first.acquire(blocking=False)
    assert not store.lock(uid).acquire(blocking=False)
    with pytest.raises(UploadLocked), store.lock(uid, timeout=0):
        pass
    writer = store.open_writer(uid, 0)
    for i in range(3):
        writer.write(data[i * MiB : (i + 1) * MiB])
    asked = threading.Event()
    store.on_release_request(uid, asked.set)
    assert store.request_release(uid) and asked.is_set()
    assert writer.abort().offset == 3 * MiB
    first.release()
    with store.lock(uid, timeout=5):
        with pytest.raises(OffsetMismatch):
            store.open_writer(uid, 0)
        assert write(store, uid, 3 * MiB, data[3 * MiB :]).is_complete
    assert read_all(store, uid) == data
    assert not store.request_release(uid)  # the holder that let go is forgotten


def test_concurrent_writers_never_interleave(harness):
    """Threads appending under the lock: every piece lands whole, in some order."""
    store = harness.store()
    pieces = [bytes([65 + i]) * (MiB + 1000 * i) for i in range(6)]
    uid = store.new_upload(FileInfo(size=sum(map(len, pieces))))
    errors = []

    def append(mine: list[bytes]) -> None:
        try:
            for piece in mine:
                with store.lock(uid, timeout=60):
                    write(store, uid, store.get_info(uid).offset, piece, piece=256 * 1024)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(pieces[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    landed = read_all(store, uid)
    assert len(landed) == sum(map(len, pieces))
    at, seen = 0, []
    while at < len(landed):
        piece = next(p for p in pieces if landed[at : at + len(p)] == p)
        seen.append(piece)
        at += len(piece)
    assert sorted(seen) == sorted(pieces)


@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256", "sha512", "crc32"])
def test_checksums_are_verified(harness, algorithm):
    store = harness.store()
    data = body(MiB + 3)
    uid = store.new_upload(FileInfo(size=len(data)))
    wrong = Checksum(algorithm, bytes(len(digest(algorithm, b"").digest)))
    with pytest.raises(ChecksumMismatch):
        write(store, uid, 0, data, wrong)
    assert store.get_info(uid).offset == 0
    assert write(store, uid, 0, data, digest(algorithm, data)).is_complete
    assert read_all(store, uid) == data


def test_a_checksum_mismatch_cuts_the_write_back(harness):
    """A write that fails its checksum (here across several parts) counts for
    nothing; the offset stays, and the next write's bytes are the ones that land."""
    store = harness.store()
    good = body(16 * MiB, seed=1)
    uid = store.new_upload(FileInfo(size=len(good), metadata={"filename": "g.bin"}))
    assert write(store, uid, 0, good[: 2 * MiB], digest("sha256", good[: 2 * MiB])).offset == (
        2 * MiB
    )
    bad = body(11 * MiB, seed=2)
    with pytest.raises(ChecksumMismatch):
        write(store, uid, 2 * MiB, bad, digest("sha1", good[2 * MiB : 13 * MiB]))
    assert store.get_info(uid).offset == 2 * MiB
    restarted = harness.reopen()  # a restart now adopts none of the refused bytes
    restarted.recover()
    assert restarted.get_info(uid).offset == 2 * MiB
    rest = good[2 * MiB :]
    assert write(store, uid, 2 * MiB, rest, digest("crc32", rest)).is_complete
    assert read_all(store, uid) == good


def test_a_checksummed_write_cut_short_keeps_nothing(harness):
    store = harness.store()
    data = body(8 * MiB)
    uid = store.new_upload(FileInfo(size=len(data)))
    write(store, uid, 0, data[:MiB])
    writer = store.open_writer(uid, MiB, digest("md5", data[MiB:]))
    for i in range(1, 7):
        writer.write(data[i * MiB : (i + 1) * MiB])
    assert writer.abort().offset == MiB
    assert write(store, uid, MiB, data[MiB:]).is_complete
    assert read_all(store, uid) == data


# --------------------------------------------------------------------------- lengths


def test_deferred_length(harness):
    store = harness.store()
    data = body(9 * MiB)
    uid = store.new_upload(FileInfo(size=None))
    info = write(store, uid, 0, data[: 6 * MiB])
    assert info.size is None and info.offset == 6 * MiB
    with pytest.raises(UploadTooLarge):
        store.declare_length(uid, 5 * MiB)  # below what arrived
    assert store.declare_length(uid, len(data)).size == len(data)
    with pytest.raises(LengthAlreadyDeclared):
        store.declare_length(uid, len(data))
    assert write(store, uid, 6 * MiB, data[6 * MiB :]).is_complete
    assert read_all(store, uid) == data


def test_a_length_declared_with_a_write_counts_when_it_commits(harness):
    store = harness.store()
    data = body(7 * MiB)
    uid = store.new_upload(FileInfo(size=None))
    cut = store.open_writer(uid, 0, length=len(data))
    cut.write(data[:MiB])
    assert cut.abort().size is None  # cut short: declares nothing
    writer = store.open_writer(uid, MiB, length=len(data))
    with pytest.raises(UploadTooLarge):
        writer.write(data[MiB:] + b"past the end")
    info = writer.commit()
    assert info.is_complete and info.size == len(data)
    assert read_all(store, uid) == data
    with pytest.raises(LengthAlreadyDeclared):
        store.open_writer(store.new_upload(FileInfo(size=3)), 0, length=3)


def test_an_empty_upload_is_complete_at_once(harness):
    store = harness.store()
    path = harness.target("empty.txt")
    uid = store.new_upload(FileInfo(size=0, path=path, metadata={"filename": "empty.txt"}))
    info = store.get_info(uid)
    assert info.is_complete and store.landed_path(info) is not None
    assert harness.read(path) == b""


# --------------------------------------------------------------------------- concatenation


@pytest.mark.parametrize(
    "sizes",
    [
        pytest.param([MiB, 2 * MiB + 3, 10, 0], id="small-partials"),
        pytest.param([6 * MiB, 5 * MiB, MiB + 1], id="partials-of-whole-parts"),
    ],
)
def test_concatenation(harness, sizes):
    store = harness.store()
    pieces = [body(n, seed=i) for i, n in enumerate(sizes)]
    ids = []
    for piece in pieces:
        pid = store.new_upload(FileInfo(size=len(piece), is_partial=True))
        if piece:
            write(store, pid, 0, piece)
        assert store.get_info(pid).is_complete
        ids.append(pid)
    path = harness.target("joined.bin", "parts")
    final = store.new_upload(
        FileInfo(
            size=sum(sizes),
            is_final=True,
            partial_uploads=ids,
            path=path,
            metadata={"filename": "joined.bin"},
        )
    )
    with pytest.raises(UploadNotPatchable):
        store.open_writer(final, 0)
    info = store.concat_uploads(final, ids)
    assert info.is_complete and info.size == sum(sizes)
    assert harness.read(path) == b"".join(pieces)
    assert read_all(store, final) == b"".join(pieces)
    for pid in ids:
        with pytest.raises(UploadNotFound):
            store.get_info(pid)
        assert harness.leftovers(store, pid) == []


def test_concatenation_needs_complete_partial_uploads(harness):
    store = harness.store()
    whole = store.new_upload(FileInfo(size=2, is_partial=True))
    write(store, whole, 0, b"ok")
    half = store.new_upload(FileInfo(size=4, is_partial=True))
    write(store, half, 0, b"ha")
    plain = store.new_upload(FileInfo(size=1))
    write(store, plain, 0, b"x")
    refusals = (([whole, half], UploadIncomplete), ([whole, plain], UploadNotPatchable))
    for partials, error in refusals:
        final = store.new_upload(FileInfo(size=None, is_final=True, partial_uploads=partials))
        with pytest.raises(error):
            store.concat_uploads(final, partials)
    assert store.get_info(whole).is_complete  # a refused concatenation uses nothing up


# --------------------------------------------------------------------------- removal


def test_termination_leaves_nothing_behind(harness):
    store = harness.store()
    data = body(12 * MiB)
    uid = store.new_upload(FileInfo(size=len(data)))
    write(store, uid, 0, data[: 7 * MiB])  # a part and a tail in S3
    assert harness.leftovers(store, uid)
    store.terminate(uid)
    with pytest.raises(UploadNotFound):
        store.get_info(uid)
    with pytest.raises(UploadNotFound):
        store.open_writer(uid, 7 * MiB)
    assert harness.leftovers(store, uid) == []


def test_termination_keeps_a_landed_file(harness):
    store = harness.store()
    path = harness.target("kept.txt")
    uid = store.new_upload(FileInfo(size=4, path=path, metadata={"filename": "kept.txt"}))
    write(store, uid, 0, b"kept")
    store.terminate(uid)
    assert harness.read(path) == b"kept"
    assert harness.leftovers(store, uid) == []


def test_unfinished_uploads_expire(harness):
    store = harness.store(expiration=60)
    unfinished = store.new_upload(FileInfo(size=10))
    write(store, unfinished, 0, b"12345")
    finished = store.new_upload(FileInfo(size=2))
    write(store, finished, 0, b"ok")
    partial = store.new_upload(FileInfo(size=2, is_partial=True))
    write(store, partial, 0, b"ok")
    full = store.new_upload(FileInfo(size=3))
    writer = store.open_writer(full, 0)
    writer.write(b"all")
    writer.abort()  # every byte in, not committed: completed by the sweep, never expired
    info = store.get_info(unfinished)
    assert info.expires == pytest.approx(store.last_activity(info) + 60, abs=1)
    assert info.expires == pytest.approx(time.time() + 60, abs=5)
    assert list(store.expired_uploads()) == []
    later = time.time() + 61
    assert set(store.expired_uploads(now=later)) == {unfinished, partial}
    assert store.get_info(finished).expires is None


# --------------------------------------------------------------------------- crashes


@pytest.mark.parametrize("checksummed", [False, True], ids=["plain", "checksummed"])
def test_a_writer_killed_mid_write_loses_nothing_acknowledged(harness, checksummed):
    """A process writing an upload gets SIGKILL in the middle of a write. After a
    restart (a new store object, ``recover()``), the offset counts only bytes the
    storage holds (at most one unacknowledged part less than what was written; none of
    a checksummed write), and the upload goes on from there to the right bytes."""
    store = harness.store()
    size, seed = 4 * S3_PART + 2 * MiB, 7
    data = body(size, seed)
    uid = store.new_upload(FileInfo(size=size, path=harness.target("k.bin")))
    write(store, uid, 0, data[:MiB])
    child = subprocess.Popen(
        child_command(
            harness, id=uid, offset=MiB, size=size, seed=seed, piece=MiB, checksum=checksummed
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        written = 0
        while written < 2 * S3_PART + MiB:
            line = child.stdout.readline()
            assert line, "the writer process ended early"
            written = int(line)
            if written < 2 * S3_PART + MiB:
                child.stdin.write("\n")
                child.stdin.flush()
        os.kill(child.pid, signal.SIGKILL)  # paused right after a write() returned
    finally:
        child.kill()
        child.wait()
    restarted = harness.reopen()
    restarted.recover()
    offset = restarted.get_info(uid).offset
    if checksummed:
        assert offset == MiB
    else:
        assert MiB + written - harness.unacknowledged <= offset <= MiB + written
    info = write(restarted, uid, offset, data[offset:])
    assert info.is_complete
    assert harness.read(harness.target("k.bin")) == data


def test_every_byte_in_without_a_commit_completes_at_recovery_or_settling(harness):
    """A write that ended (a dropped connection) after the last byte arrived, before
    its commit: ``settle`` completes and lands it, and so does ``recover`` after a
    restart."""
    store = harness.store()
    data = body(6 * MiB + 5)
    paths, ids = [], []
    for name in ("settled.bin", "recovered.bin"):
        paths.append(harness.target(name))
        uid = store.new_upload(FileInfo(size=len(data), path=paths[-1]))
        writer = store.open_writer(uid, 0)
        for i in range(0, len(data), MiB):
            writer.write(data[i : i + MiB])
        info = writer.abort()
        assert not info.is_complete and info.offset == len(data)
        assert store.needs_settling(info)
        ids.append(uid)
    assert [i.id for i in store.pending_landings()] == ids[::-1]
    assert store.settle(store.get_info(ids[0])) is True
    assert harness.read(paths[0]) == data
    restarted = harness.reopen()
    restarted.recover()
    assert restarted.get_info(ids[1]).is_complete
    assert harness.read(paths[1]) == data


def test_a_landing_that_fails_is_retried_and_finished_at_recovery(harness, monkeypatch):
    store = harness.store()
    path = harness.target("later.csv", "data")
    uid = store.new_upload(FileInfo(size=5, path=path, metadata={"filename": "later.csv"}))
    failure = OSError(errno.EIO, "I/O error") if harness.kind == "file" else None
    failure = failure or StorageUnavailable("the object store did not answer")

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(store, "_land", fail)  # fault injection: the move fails once
    with pytest.raises(LandingFailed):
        write(store, uid, 0, b"a,b\n1")
    info = store.get_info(uid)
    assert info.is_complete and store.landed_path(info) is None
    assert store.needs_settling(info) and harness.read(path) is None
    assert read_all(store, uid) == b"a,b\n1"  # the bytes are readable meanwhile
    restarted = harness.reopen()
    assert any(uid in line for line in restarted.recover())
    info = restarted.get_info(uid)
    assert restarted.landed_path(info) is not None and not restarted.needs_settling(info)
    assert harness.read(path) == b"a,b\n1"


# --------------------------------------------------------------------------- destinations


def test_destinations_are_checked_at_creation(harness):
    store = harness.store()
    harness.put(harness.target("taken.txt", "in"), b"old")
    with pytest.raises(DestinationExists):
        harness.resolve(store, {"filename": "taken.txt", "path": "in"})
    asked = {"filename": "taken.txt", "path": "in", "overwrite": "1"}
    path, overwrite = harness.resolve(store, asked)
    assert overwrite and path == harness.target("taken.txt", "in")
    for bad in (
        {"filename": "a/b.txt"},
        {"filename": ".hidden"},
        {"filename": "x.txt", "path": "../up"},
        {"filename": "x.txt", "path": "in/.secret"},
        {"filename": "x" * 256},
    ):
        with pytest.raises(DestinationRefused):
            harness.resolve(store, bad)
    with pytest.raises(DestinationRefused):  # a folder on the way is a file
        harness.resolve(store, {"filename": "x.txt", "path": "in/taken.txt"})
    assert harness.resolve(store, {}) is None  # no filename: stays in the store


def test_a_name_taken_during_the_upload_is_never_clobbered(harness):
    store = harness.store()
    path = harness.target("report.csv", "out")
    uid = store.new_upload(FileInfo(size=3, path=path, metadata={"filename": "report.csv"}))
    harness.put(path, b"someone else's")
    write(store, uid, 0, b"new")
    info = store.get_info(uid)
    assert info.path == harness.target("report (1).csv", "out")
    assert store.landed_path(info) == info.path
    assert harness.read(path) == b"someone else's"
    assert harness.read(info.path) == b"new"


def test_overwrite_replaces(harness):
    store = harness.store()
    path = harness.target("over.txt")
    harness.put(path, b"old contents")
    resolved, overwrite = harness.resolve(store, {"filename": "over.txt", "overwrite": "true"})
    uid = store.new_upload(
        FileInfo(size=3, path=resolved, overwrite=overwrite, metadata={"filename": "over.txt"})
    )
    write(store, uid, 0, b"new")
    assert store.get_info(uid).path == path
    assert harness.read(path) == b"new"


def test_a_landed_file_changed_since_is_gone(harness):
    store = harness.store()
    path = harness.target("mine.txt")
    uid = store.new_upload(FileInfo(size=4, path=path, metadata={"filename": "mine.txt"}))
    write(store, uid, 0, b"mine")
    store.check_landed(store.get_info(uid))
    assert read_all(store, uid) == b"mine"
    harness.put(path, b"changed by someone")
    with pytest.raises(UploadGone):
        store.check_landed(store.get_info(uid))
    with pytest.raises(UploadGone):
        read_all(store, uid)


# --------------------------------------------------------------------------- memory


def test_memory_is_bounded_by_the_part_size(harness):
    """64 MiB written in 1 MiB pieces with 8 MiB parts, then read back in 1 MiB
    blocks: the store never holds more than about one part (tracemalloc's peak)."""
    part = 8 * MiB
    store = harness.store(**({"part_size": part} if harness.kind == "s3" else {}))
    size = 64 * MiB
    uid = store.new_upload(FileInfo(size=size))
    rng = random.Random(3)
    expected = hashlib.sha256()
    tracemalloc.start()
    try:
        writer = store.open_writer(uid, 0)
        for _ in range(size // MiB):
            piece = rng.randbytes(MiB)
            expected.update(piece)
            writer.write(piece)
            del piece
        writer.commit()
        got = hashlib.sha256()
        with store.get_reader(uid) as reader:
            while block := reader.read(MiB):
                got.update(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.hexdigest() == expected.hexdigest()
    assert peak < 2 * part + 4 * MiB, f"peak {peak / MiB:.1f} MiB"
