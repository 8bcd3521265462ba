"""What only S3Store has to get right, on a real SeaweedFS (tests/s3server.py): its
layout, crashes between its own steps (completion, landing, a tail), part numbers
never reused, conditional writes and their absence, multipart copies, abandoned
multipart uploads, an unreachable or missing bucket, its settings. The store contract
it shares with FileStore is tests/conformance/.
"""

from __future__ import annotations

import json
import random
import secrets
import time

import pytest
from traitlets import TraitError
from traitlets.config import Config

from jupyter_tus.s3store import PART_MIN, PLANNED_PARTS, S3Store
from jupyter_tus.store import (
    FileInfo,
    LandingRefused,
    StagingRefused,
    StorageUnavailable,
    UploadNotFound,
    UploadQuarantined,
    UploadTooLarge,
)
from tests.servers import free_port

MiB = 1024 * 1024


class Crash(BaseException):
    """A process dying at this point (raised by fault injection, caught by no store
    code)."""


@pytest.fixture(scope="module")
def bucket(s3_server) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def make(s3_env, bucket):
    """``make(prefix=..., **settings)``: a claimed S3Store on the test server."""
    prefix = f"p-{secrets.token_hex(4)}/"

    def make(**settings) -> S3Store:
        settings.setdefault("prefix", prefix)
        settings.setdefault("part_size", PART_MIN)
        store = S3Store(bucket=bucket, endpoint_url=s3_env.endpoint_url, **settings)
        store.claim()
        return store

    make.client = s3_env.client()
    make.bucket = bucket
    return make


def body(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def write(store, upload_id, offset, data, piece=MiB):
    writer = store.open_writer(upload_id, offset)
    for i in range(0, len(data), piece):
        writer.write(data[i : i + piece])
    return writer.commit()


def keys(make, prefix: str) -> list[str]:
    listed = make.client.list_objects_v2(Bucket=make.bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def get(make, key: str) -> bytes:
    return make.client.get_object(Bucket=make.bucket, Key=key)["Body"].read()


def multipart_uploads(make, prefix: str) -> list[str]:
    listed = make.client.list_multipart_uploads(Bucket=make.bucket, Prefix=prefix)
    return sorted(u["Key"] for u in listed.get("Uploads", []))


def crash_on_save(monkeypatch, store: S3Store, when) -> None:
    """Fault injection: the process dies instead of writing a record ``when(info)``."""
    save = store._save

    def dying_save(info, state):
        if when(info, state):
            raise Crash
        save(info, state)

    monkeypatch.setattr(store, "_save", dying_save)


# --------------------------------------------------------------------------- layout


def test_layout_under_the_prefix(make):
    """A prefix without its slash gets one; the staging prefix holds the mark, the
    record (FileInfo and the S3 side), the tail; the file lands at <prefix><path>."""
    prefix = f"users/{secrets.token_hex(3)}"
    store = make(prefix=prefix)
    assert store.root == prefix + "/" and store.staging == prefix + "/.tus/"
    data = body(7 * MiB + 3)
    dest = store.resolve_destination({"filename": "a.csv", "path": "x/y", "filetype": "text/csv"})
    uid = store.new_upload(
        FileInfo(
            size=len(data), path=dest.path, metadata={"filename": "a.csv", "filetype": "text/csv"}
        )
    )
    write(store, uid, 0, data[: 6 * MiB])
    staged = keys(make, store.staging)
    assert staged[0] == f"{prefix}/.tus/.jupyter-tus-store"
    tail = next(k for k in staged if k.endswith(".part"))
    assert tail.startswith(f"{prefix}/.tus/{uid}.") and len(get(make, tail)) == MiB
    record = json.loads(get(make, f"{prefix}/.tus/{uid}.info"))
    assert record["info"]["id"] == uid and record["info"]["path"] == "x/y/a.csv"
    assert [p[:2] for p in record["s3"]["parts"]] == [[1, 5 * MiB]]
    assert record["s3"]["tail"] == [tail, MiB]
    # the next write's parts start past the last one, noted already (no record PUT first)
    assert record["s3"]["next_part"] == record["s3"]["in_flight_from"] == 2
    assert multipart_uploads(make, store.staging) == [f"{prefix}/.tus/{uid}"]
    info = write(store, uid, 6 * MiB, data[6 * MiB :])
    assert info.storage["key"] == f"{prefix}/x/y/a.csv" and info.storage["bucket"] == make.bucket
    assert keys(make, store.staging) == [
        f"{prefix}/.tus/.jupyter-tus-store",
        f"{prefix}/.tus/{uid}.info",
    ]
    assert multipart_uploads(make, store.staging) == []
    landed = make.client.head_object(Bucket=make.bucket, Key=f"{prefix}/x/y/a.csv")
    assert landed["ContentType"] == "text/csv" and landed["Metadata"]["tus-upload-id"] == uid
    assert get(make, f"{prefix}/x/y/a.csv") == data


def test_settings_come_from_traitlets_config(make):
    config = Config({"S3Store": {"bucket": make.bucket, "prefix": "cfg/", "part_size": 8 * MiB}})
    store = S3Store(config=config)
    assert (store.bucket, store.root, store.part_size) == (make.bucket, "cfg/", 8 * MiB)
    with pytest.raises(TraitError):
        S3Store(part_size=MiB)


def test_part_size_grows_with_a_known_length_only_as_needed():
    store = S3Store(bucket="b", part_size=16 * MiB)
    assert store._part_size_for(None) == 16 * MiB
    assert store._part_size_for(100 * 1024 * MiB) == 16 * MiB
    tib = 1024 * 1024 * MiB
    assert store._part_size_for(tib) * PLANNED_PARTS >= tib
    with pytest.raises(UploadTooLarge):
        store._part_size_for(6 * tib)


def test_a_deferred_length_beyond_what_its_parts_can_hold_is_refused(make):
    store = make()
    uid = store.new_upload(FileInfo(size=None))
    with pytest.raises(UploadTooLarge, match="declare the length at creation"):
        store.declare_length(uid, PART_MIN * PLANNED_PARTS + 1)


# --------------------------------------------------------------------------- crashes


def test_a_crash_in_the_middle_of_completion(make, monkeypatch):
    """S3 completed the multipart upload, the process died before the record said
    so: recovery recognises the staged object by its size, completes and lands."""
    store = make()
    data = body(11 * MiB)
    uid = store.new_upload(FileInfo(size=len(data), path="done.bin"))
    write(store, uid, 0, data[: 6 * MiB])
    crash_on_save(monkeypatch, store, lambda info, state: info.is_complete)
    with pytest.raises(Crash):
        write(store, uid, 6 * MiB, data[6 * MiB :])
    assert multipart_uploads(make, store.staging) == []
    restarted = make()
    assert any("cut short at completion" in line for line in restarted.recover())
    assert restarted.get_info(uid).is_complete
    assert get(make, restarted.key_of("done.bin")) == data


def test_a_crash_after_the_copy_before_its_record_lands_once(make, monkeypatch):
    """The copy to the destination was made, the record not yet written: recovery's
    conditional copy finds the name taken by our own object (its tus-upload-id) and
    records it, never landing a second copy as "done (1).bin"."""
    store = make()
    uid = store.new_upload(FileInfo(size=4, path="done.bin", metadata={"filename": "done.bin"}))
    crash_on_save(monkeypatch, store, lambda info, state: "etag" in info.storage)
    with pytest.raises(Crash):
        write(store, uid, 0, b"once")
    restarted = make()
    restarted.recover()
    info = restarted.get_info(uid)
    assert info.path == "done.bin" and restarted.landed_path(info) == "done.bin"
    assert keys(make, restarted.root + "done") == [restarted.root + "done.bin"]
    assert keys(make, restarted.staging + uid) == [restarted.staging + uid + ".info"]


def test_a_crash_between_a_new_tail_and_its_record(make, monkeypatch):
    store = make()
    data = body(3 * MiB)
    uid = store.new_upload(FileInfo(size=len(data)))
    write(store, uid, 0, data[:MiB])
    crash_on_save(monkeypatch, store, lambda info, state: state.stored > MiB)
    with pytest.raises(Crash):
        write(store, uid, MiB, data[MiB : 2 * MiB])
    assert len([k for k in keys(make, store.staging + uid) if k.endswith(".part")]) == 2
    restarted = make()
    restarted.recover()
    assert restarted.get_info(uid).offset == MiB  # the unrecorded write is not counted
    assert len([k for k in keys(make, restarted.staging + uid) if k.endswith(".part")]) == 1
    write(restarted, uid, MiB, data[MiB:])
    with restarted.get_reader(uid) as reader:
        assert reader.read() == data


@pytest.mark.parametrize("clean", [0, 1], ids=["first-write", "after-a-clean-write"])
def test_parts_of_a_failed_write_are_never_adopted_after_a_later_one(make, monkeypatch, clean):
    """A write sends three parts and then S3 fails under it, records included (so
    nothing is recorded); the next write goes past those part numbers, so when it is
    killed in turn, recovery adopts its part and none of the stale ones after it.
    ``clean``: parts written cleanly before, so the failed write sends its parts
    without noting them first (the record noted them at the clean write's commit)."""
    store = make()
    data = body(12 * PART_MIN, seed=5)
    stale = body(4 * PART_MIN, seed=6)
    uid = store.new_upload(FileInfo(size=len(data)))
    start = clean * PART_MIN
    if clean:
        write(store, uid, 0, data[:start])
    real_call = store._call
    sent = []

    def failing_call(operation, **kwargs):
        if len(sent) >= 3:  # S3 down from here on
            raise StorageUnavailable(f"the object store did not answer {operation}")
        if operation == "upload_part":
            sent.append(kwargs["PartNumber"])
        return real_call(operation, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(store, "_call", failing_call)
        writer = store.open_writer(uid, start)
        with pytest.raises(StorageUnavailable):  # in a write, or at the end (parts are
            for i in range(0, len(stale), MiB):  # sent in the background)
                writer.write(stale[i : i + MiB])
            writer.commit()
        with pytest.raises(StorageUnavailable):
            writer.abort()
    assert sent == [clean + 1, clean + 2, clean + 3] and store.get_info(uid).offset == start
    writer = store.open_writer(uid, start)
    for i in range(start, start + PART_MIN + MiB, MiB):  # one part sent, then the
        writer.write(data[i : i + MiB])  # process dies
    writer._sink.finish()  # (once S3 acknowledged it)
    del writer
    restarted = make()
    restarted.recover()
    assert restarted.get_info(uid).offset == start + PART_MIN
    write(restarted, uid, start + PART_MIN, data[start + PART_MIN :])
    with restarted.get_reader(uid) as reader:
        assert reader.read() == data


def test_recovery_quarantines_what_it_cannot_repair_and_goes_on(make, monkeypatch):
    store = make()
    bad = store.new_upload(FileInfo(size=10))
    good = store.new_upload(FileInfo(size=2))
    writer = store.open_writer(good, 0)
    writer.write(b"ok")
    writer.abort()  # all bytes in: recovery completes it
    restarted = make()
    real = restarted._recover_one

    def broken(info, state):
        if info.id == bad:
            raise ValueError("a record this version cannot read")
        return real(info, state)

    monkeypatch.setattr(restarted, "_recover_one", broken)
    report = restarted.recover()
    assert any(line.startswith(f"quarantined {bad}") for line in report)
    assert restarted.get_info(good).is_complete
    with pytest.raises(UploadQuarantined):
        restarted.get_info(bad)
    assert restarted.quarantined() == {bad: "ValueError: a record this version cannot read"}


def test_a_record_that_is_not_ours_is_left_alone(make):
    store = make()
    fake = "A" * 32
    make.client.put_object(Bucket=make.bucket, Key=f"{store.staging}{fake}.info", Body=b"not json")
    with pytest.raises(UploadNotFound):
        store.get_info(fake)
    assert any("not an upload record" in line for line in store.recover())
    assert get(make, f"{store.staging}{fake}.info") == b"not json"


# --------------------------------------------------------------------------- landing


def test_without_conditional_writes_a_head_guards_the_name(make):
    store = make(conditional_writes="off")
    assert store.supports_conditional_writes() is False
    uid = store.new_upload(FileInfo(size=3, path="n.txt", metadata={"filename": "n.txt"}))
    make.client.put_object(Bucket=make.bucket, Key=store.key_of("n.txt"), Body=b"theirs")
    assert write(store, uid, 0, b"new").path == "n (1).txt"
    assert get(make, store.key_of("n.txt")) == b"theirs"
    assert get(make, store.key_of("n (1).txt")) == b"new"


def test_the_server_is_probed_for_conditional_writes(make):
    store = make()  # claim() probed SeaweedFS, which honours If-None-Match
    assert store.supports_conditional_writes() is True
    assert not [k for k in keys(make, store.staging) if "probe" in k]


def test_objects_over_the_copy_limit_land_by_multipart_copy(make):
    """Above ``copy_max`` (5 GiB on S3; lowered here) the landing copy goes part by
    part (UploadPartCopy), completed with If-None-Match: a taken name still gets a
    unique one."""
    store = make()
    store.copy_max = PART_MIN
    data = body(12 * MiB)
    uid = store.new_upload(
        FileInfo(size=len(data), path="big.bin", metadata={"filename": "big.bin"})
    )
    make.client.put_object(Bucket=make.bucket, Key=store.key_of("big.bin"), Body=b"old")
    info = write(store, uid, 0, data)
    assert info.path == "big (1).bin"
    assert get(make, store.key_of("big (1).bin")) == data
    assert get(make, store.key_of("big.bin")) == b"old"
    assert multipart_uploads(make, store.root) == []
    with store.get_reader(uid) as reader:
        assert reader.read() == data


def test_a_landing_the_store_refuses_keeps_the_bytes(make):
    """A destination S3 cannot name (a key over 1024 bytes once a unique name or the
    prefix is added) is refused for good, recorded, and the bytes stay readable."""
    store = make()
    path = "d/" * 505 + "f.bin"  # 1015 bytes: over S3's 1024 with the prefix
    uid = store.new_upload(FileInfo(size=3, path=path, metadata={"filename": "f.bin"}))
    with pytest.raises(LandingRefused, match="longer than 1024 bytes"):
        write(store, uid, 0, b"abc")
    info = store.get_info(uid)
    assert info.is_complete and info.landing_error and not store.needs_settling(info)
    assert store.landed_path(info) is None
    with store.get_reader(uid) as reader:
        assert reader.read() == b"abc"


# --------------------------------------------------------------------------- cleanup


def test_abandoned_multipart_uploads_are_aborted(make):
    store = make(expiration=3600)
    fake = "B" * 32
    ours = make.client.create_multipart_upload(Bucket=make.bucket, Key=store.staging + fake)
    theirs = make.client.create_multipart_upload(Bucket=make.bucket, Key=store.staging + "notes")
    live = store.new_upload(FileInfo(size=20 * MiB))
    writer = store.open_writer(live, 0)
    writer.write(body(6 * MiB))
    writer.abort()  # a multipart upload its record names: kept
    assert list(store.expired_uploads()) == []
    assert store.staging + fake in multipart_uploads(make, store.staging)  # not old yet
    list(store.expired_uploads(now=time.time() + 7200))
    left = multipart_uploads(make, store.staging)
    assert store.staging + fake not in left
    assert store.staging + "notes" in left and store.staging + live in left
    for upload, key in ((ours, fake), (theirs, "notes")):
        make.client.abort_multipart_upload(
            Bucket=make.bucket, Key=store.staging + key, UploadId=upload["UploadId"]
        )


# --------------------------------------------------------------------------- the service


def test_an_unreachable_store_is_refused_at_start_and_unavailable_after(s3_env):
    import boto3
    from botocore.config import Config as BotoConfig

    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, config=BotoConfig(retries={"max_attempts": 1})
    )
    store = S3Store(bucket="nowhere", endpoint_url=endpoint, client=client)
    with pytest.raises(StagingRefused, match="cannot be reached"):
        store.claim()
    with pytest.raises(StorageUnavailable):
        store.get_info("C" * 32)


def test_a_missing_bucket_is_refused_by_name(s3_env):
    store = S3Store(bucket="no-such-bucket-here", endpoint_url=s3_env.endpoint_url)
    with pytest.raises(StagingRefused, match="'no-such-bucket-here' does not exist"):
        store.claim()
    with pytest.raises(StagingRefused, match=r"c\.S3Store\.bucket"):
        S3Store(endpoint_url=s3_env.endpoint_url).claim()


def test_a_multipart_upload_aborted_behind_the_stores_back_is_not_found(make):
    """A bucket lifecycle rule (AbortIncompleteMultipartUpload) may abort an upload's
    multipart upload: its next write is refused as not found (404), never a 500."""
    store = make()
    data = body(12 * MiB)
    uid = store.new_upload(FileInfo(size=len(data)))
    write(store, uid, 0, data[: 6 * MiB])
    listed = make.client.list_multipart_uploads(Bucket=make.bucket, Prefix=store.staging + uid)
    (upload,) = listed["Uploads"]
    make.client.abort_multipart_upload(
        Bucket=make.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
    )
    with pytest.raises(UploadNotFound, match="lifecycle rule"):
        write(store, uid, 6 * MiB, data[6 * MiB :])


def test_every_setting_is_documented():
    from pathlib import Path

    docs = Path(__file__).parent.parent / "docs"
    for page in ("settings.md", "object-storage.md"):
        text = (docs / page).read_text()
        for name, trait in S3Store.class_own_traits(config=True).items():
            assert f"| `{name}` |" in text, f"docs/{page} lacks S3Store.{name}"
            assert trait.help, f"S3Store.{name} has no help string"


def test_two_store_objects_over_one_prefix_share_its_locks(make):
    """In one process, every S3Store over the same bucket and prefix sees the same
    locks (across processes: one server per prefix, docs/object-storage.md)."""
    first, second = make(), make()
    uid = first.new_upload(FileInfo(size=1))
    with first.lock(uid, timeout=0):
        assert not second.lock(uid).acquire(blocking=False)
    lock = second.lock(uid)
    assert lock.acquire(blocking=False)
    lock.release()


def test_a_part_s3_does_not_acknowledge_fails_the_write_and_counts_nothing_after(make, monkeypatch):
    """Parts go to S3 in the background while the next one fills: one S3 refuses (here
    the second of a write that began with a tail, found out at commit, 2 MiB after it
    in the buffer) fails the write; the offset then counts the parts acknowledged
    before it and nothing of the bytes after it, and the upload resumes from there to
    the right bytes."""
    store = make()
    data = body(6 * PART_MIN, seed=7)
    uid = store.new_upload(FileInfo(size=len(data)))
    write(store, uid, 0, data[:MiB])  # a tail: the write's first part begins with it
    real_call = store._call
    refused = []

    def refusing_call(operation, **kwargs):
        if operation == "upload_part" and kwargs["PartNumber"] == 2 and not refused:
            refused.append(2)  # once; S3 is fine again after
            raise StorageUnavailable("the object store refused upload_part (500)")
        return real_call(operation, **kwargs)

    monkeypatch.setattr(store, "_call", refusing_call)
    writer = store.open_writer(uid, MiB)
    with pytest.raises(StorageUnavailable):
        for i in range(MiB, 2 * PART_MIN + 2 * MiB, MiB):
            writer.write(data[i : i + MiB])
        writer.commit()
    info = writer.abort()  # as the handler does after a failed write
    assert refused == [2]
    assert info.offset == store.get_info(uid).offset == PART_MIN  # part 1 only
    write(store, uid, PART_MIN, data[PART_MIN:])
    with store.get_reader(uid) as reader:
        assert reader.read() == data
