"""The endpoint's promises later in an upload's life: what changed on disk between the
creating POST and the last PATCH, and after the file landed.

Each test changes the workspace the way a user (or an attacker with a shell in the
same workspace) would between two requests, then checks the answer and the disk.
A promise any store keeps runs on each (tests/backends.py: the file store, and
S3Store on SeaweedFS), changing and reading the store through ``Backend``; a promise
about the file system itself (symlinks, FIFOs, mounts, modes and groups, the staging
folder's files) runs on the file store only (``FILE_ONLY``)."""

from __future__ import annotations

import os
import stat
import subprocess
import time
import urllib.parse

import pytest

from jupyter_tus.workspace import NAME_MAX, unique_name
from tests.backends import backend_server_config  # noqa: F401 (jp_server_config)

PATH_HEADER = "Jupyter-Tus-Path"

# A promise about the file system itself: on the file store alone; its S3
# counterpart, where it has one, is S3_ONLY.
FILE_ONLY = pytest.mark.parametrize("backend", ["file"], indirect=True)
S3_ONLY = pytest.mark.parametrize("backend", ["s3"], indirect=True)


@pytest.fixture
def outside(jp_root_dir, tmp_path):
    folder = tmp_path / "outside"
    folder.mkdir()
    assert jp_root_dir not in folder.parents
    return folder


async def half_sent(tus, data: bytes, **metadata) -> str:
    """An upload with the first half of ``data`` received."""
    uid = await tus.create_id(len(data), metadata)
    r = await tus.patch(uid, 0, data[: len(data) // 2])
    assert r.code == 204, r.body
    return uid


async def finish(tus, uid: str, data: bytes):
    return await tus.patch(uid, len(data) // 2, data[len(data) // 2 :])


async def assert_refused_but_kept(tus, uid: str, data: bytes, words: bytes) -> None:
    """A landing refused for good: 403 saying why, on the last PATCH and on HEAD (so a
    client never believes it finished), no landed path, and the bytes still served."""
    head = await tus.head(uid)
    assert head.code == 403 and PATH_HEADER not in head.headers
    r = await tus.request("GET", uid)
    assert r.code == 200 and r.body == data
    again = await tus.patch(uid, len(data), b"")
    assert again.code == 403 and words in again.body, again.body


# ----------------------------------------------------------- containment at landing


@FILE_ONLY
async def test_folder_swapped_for_a_symlink_out_of_root_is_refused_at_landing(
    tus, jp_root_dir, outside
):
    data = b"0123456789"
    (jp_root_dir / "dest").mkdir()
    uid = await half_sent(tus, data, filename="x.bin", path="dest")
    (jp_root_dir / "dest").rmdir()
    (jp_root_dir / "dest").symlink_to(outside)
    r = await finish(tus, uid, data)
    assert r.code == 403, r.body
    assert b"outside the server's root" in r.body and str(outside).encode() not in r.body
    assert PATH_HEADER not in r.headers
    assert list(outside.iterdir()) == []
    await assert_refused_but_kept(tus, uid, data, b"outside the server's root")


@FILE_ONLY
async def test_folder_swapped_for_a_symlink_into_a_hidden_folder_is_refused(tus, jp_root_dir):
    data = b"secret-ish"
    (jp_root_dir / "dest").mkdir()
    hidden = jp_root_dir / ".config"
    hidden.mkdir()
    uid = await half_sent(tus, data, filename="x.bin", path="dest")
    (jp_root_dir / "dest").rmdir()
    (jp_root_dir / "dest").symlink_to(hidden)
    r = await finish(tus, uid, data)
    assert r.code == 403 and b"hidden folder" in r.body, r.body
    assert list(hidden.iterdir()) == []
    await assert_refused_but_kept(tus, uid, data, b"hidden folder")


async def test_a_file_put_where_the_folder_goes_is_refused_with_what_to_change(tus, backend):
    # The folder a/b is made at landing; meanwhile a file (object) took its name.
    data = b"abcdef"
    uid = await half_sent(tus, data, filename="x.bin", path="a/b")
    backend.put("a/b", b"now a file")
    r = await finish(tus, uid, data)
    assert r.code == 403, r.body
    assert b"'a/b' is a file, not a folder" in r.body and b"rename it" in r.body
    assert backend.landed("a/b") == b"now a file"
    assert backend.landed("a/b/x.bin") is None
    await assert_refused_but_kept(tus, uid, data, b"not a folder")


@FILE_ONLY
async def test_a_symlink_inside_the_root_is_still_followed(tus, jp_root_dir):
    data = b"inside"
    (jp_root_dir / "real").mkdir()
    (jp_root_dir / "dest").mkdir()
    uid = await half_sent(tus, data, filename="x.bin", path="dest")
    (jp_root_dir / "dest").rmdir()
    (jp_root_dir / "dest").symlink_to(jp_root_dir / "real")
    r = await finish(tus, uid, data)
    assert r.code == 204, r.body
    assert (jp_root_dir / "real" / "x.bin").read_bytes() == data


@FILE_ONLY
async def test_the_retry_sweep_checks_the_folder_too(tus, tus_app, jp_root_dir, outside, staging):
    # A landing that failed for a while (read-only for a moment), then the folder is
    # swapped: the sweep must refuse it, not follow the new symlink.
    data = b"later"
    (jp_root_dir / "dest").mkdir()
    uid = await half_sent(tus, data, filename="x.bin", path="dest")
    (jp_root_dir / "dest").chmod(0o555)
    mount = ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(jp_root_dir / "dest")]
    subprocess.run(mount, check=True)  # tests run as root: permission bits are no bar
    try:
        r = await finish(tus, uid, data)
        assert r.code == 503 and b"retries the move" in r.body, r.body
        head = await tus.head(uid)  # complete, not landed yet: no path announced
        assert head.code == 200 and PATH_HEADER not in head.headers
    finally:
        subprocess.run(["umount", str(jp_root_dir / "dest")], check=True)
    (jp_root_dir / "dest").rmdir()
    (jp_root_dir / "dest").symlink_to(outside)
    landed, refused = tus_app.manager.retry_landings()
    assert landed == [] and [i.id for i in refused] == [uid]
    assert list(outside.iterdir()) == []
    assert tus_app.manager.retry_landings() == ([], [])  # never retried again
    await assert_refused_but_kept(tus, uid, data, b"outside")


@pytest.fixture
def copy_fails(tus_app, monkeypatch) -> list[bool]:
    """S3Store's landing copy fails (the object store unavailable: fault injection)
    while the list holds True: the S3 counterpart of a read-only mount."""
    from jupyter_tus.store import StorageUnavailable

    store = tus_app.manager.store
    real, failing = store._copy, [True]

    def copy(*args, **kwargs):
        if failing[0]:
            raise StorageUnavailable("the object store did not answer CopyObject (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "_copy", copy)
    return failing


@S3_ONLY
async def test_the_retry_sweep_checks_the_folder_of_an_object_too(
    tus, tus_app, backend, copy_fails
):
    data = b"later"
    uid = await half_sent(tus, data, filename="x.bin", path="dest")
    r = await finish(tus, uid, data)
    assert r.code == 503 and b"the server retries" in r.body, r.body
    head = await tus.head(uid)  # complete, not landed yet: no path announced
    assert head.code == 200 and PATH_HEADER not in head.headers
    copy_fails[0] = False
    backend.put("dest", b"now a file")
    landed, refused = tus_app.manager.retry_landings()
    assert landed == [] and [i.id for i in refused] == [uid]
    assert backend.landed("dest/x.bin") is None and backend.landed("dest") == b"now a file"
    assert tus_app.manager.retry_landings() == ([], [])  # never retried again
    await assert_refused_but_kept(tus, uid, data, b"not a folder")


# ----------------------------------------------------------- destinations at creation


async def test_a_file_on_the_destination_path_is_refused_at_creation(tus, backend):
    # The path a file, or a file deeper on it ("notes.txt/sub": test_protocol's
    # test_a_file_on_the_way_is_refused).
    backend.put("notes.txt", b"mine")
    backend.put("ok/notes.txt", b"mine")
    for path in ("notes.txt", "ok/notes.txt/deeper"):
        r = await tus.create(3, {"filename": "x.bin", "path": path})
        assert r.code == 403, (path, r.body)
        assert b"is a file, not a folder" in r.body
    assert backend.landed("notes.txt") == backend.landed("ok/notes.txt") == b"mine"
    assert backend.staged() == []


@FILE_ONLY
async def test_a_symlink_into_a_hidden_folder_is_refused_at_creation(tus, jp_root_dir):
    (jp_root_dir / ".private").mkdir()
    (jp_root_dir / "public").symlink_to(jp_root_dir / ".private")
    r = await tus.create(3, {"filename": "x.bin", "path": "public/sub"})
    assert r.code == 403 and b"hidden folder" in r.body, r.body
    assert list((jp_root_dir / ".private").iterdir()) == []


# ----------------------------------------------------------- unique names


def test_unique_names_stay_within_name_max():
    assert unique_name("data.csv", lambda n: False) == "data (1).csv"
    taken = {"data (1).csv", "data (2).csv"}
    assert unique_name("data.csv", taken.__contains__) == "data (3).csv"
    long = "é" * 124 + "x.csv"  # 253 bytes: two-byte characters up to the end
    name = unique_name(long, lambda n: False)
    assert len(name.encode()) <= NAME_MAX and name.endswith(" (1).csv")
    name.encode().decode("utf-8")  # cut on a character boundary
    assert unique_name("." + "a" * 254, lambda n: False).endswith(" (1)")


async def test_a_long_name_taken_during_the_upload_lands_shortened(tus, backend):
    name = "n" * 249 + ".csv"  # 253 bytes: "name (1).csv" would be 257
    data = b"a,b\n1,2\n"
    uid = await half_sent(tus, data, filename=name)
    backend.put(name, b"taken meanwhile")
    r = await finish(tus, uid, data)
    assert r.code == 204, r.body
    landed = urllib.parse.unquote(r.headers[PATH_HEADER])
    assert landed.endswith(" (1).csv") and len(landed.encode()) <= NAME_MAX
    assert backend.landed(landed) == data
    assert backend.landed(name) == b"taken meanwhile"
    head = await tus.head(uid)
    assert head.code == 200 and head.headers[PATH_HEADER] == r.headers[PATH_HEADER]
    assert (await tus.request("GET", uid)).body == data


# ----------------------------------------------------------- bodies past the length


async def send_chunked(tus, method: str, uid: str | None, headers: dict, pieces: list[bytes]):
    """A request whose body has no Content-Length (Transfer-Encoding: chunked)."""

    async def producer(write):
        for piece in pieces:
            await write(piece)

    parts = ["api", "tus", "uploads"] + ([uid] if uid else [])
    return await tus.fetch(
        *parts,
        method=method,
        headers={"Tus-Resumable": "1.0.0", **headers},
        body_producer=producer,
        raise_error=False,
        allow_nonstandard_methods=True,
    )


async def test_a_chunked_body_past_the_length_completes_and_lands_in_that_request(tus, backend):
    uid = await tus.create_id(10, {"filename": "exact.bin"})
    headers = {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    r = await send_chunked(tus, "PATCH", uid, headers, [b"01234", b"56789ABCDE"])
    assert r.code == 413, r.body
    assert r.headers["Upload-Offset"] == "10"
    assert r.headers[PATH_HEADER] == "exact.bin"
    assert backend.landed("exact.bin") == b"0123456789"
    head = await tus.head(uid)
    assert head.code == 200 and head.headers["Upload-Offset"] == "10"
    assert (await tus.request("GET", uid)).body == b"0123456789"


async def test_a_chunked_creation_past_the_length_answers_with_its_location(tus, backend):
    headers = {
        "Upload-Length": "4",
        "Upload-Metadata": "filename " + "Yy5iaW4=",  # c.bin
        "Content-Type": "application/offset+octet-stream",
    }
    r = await send_chunked(tus, "POST", None, headers, [b"abcdefgh"])
    assert r.code == 413, r.body
    uid = r.headers["Location"].rsplit("/", 1)[-1]
    head = await tus.head(uid)
    assert head.code == 200 and head.headers["Upload-Offset"] == "4"
    assert backend.landed("c.bin") == b"abcd"


async def test_a_creation_refused_after_it_exists_still_says_where_it_is(tus):
    # The upload is created, then its body is refused (wrong Content-Type): the client
    # must still learn its URL, or the upload is an orphan it cannot resume.
    headers = {"Upload-Length": "3", "Content-Type": "text/plain"}
    r = await tus.request("POST", headers=headers, body=b"abc")
    assert r.code == 415
    uid = r.headers["Location"].rsplit("/", 1)[-1]
    assert (await tus.head(uid)).code == 200


# ----------------------------------------------------------- after landing


# Deleted, edited, replaced: on both stores in test_s3_server's
# test_a_landed_file_that_changed_answers_gone; here what only a file system does.
@FILE_ONLY
@pytest.mark.parametrize("change", ["rename", "edit-in-place"])
async def test_a_landed_file_that_changed_answers_gone(tus, jp_root_dir, change):
    data = b"the original bytes"
    uid = await tus.create_id(len(data), {"filename": "landed.txt"})
    assert (await tus.patch(uid, 0, data)).code == 204
    path = jp_root_dir / "landed.txt"
    assert (await tus.head(uid)).code == 200
    if change == "rename":
        path.rename(jp_root_dir / "renamed.txt")
    else:  # the same file (inode), the same size
        with open(path, "r+b") as f:
            f.write(b"THE")
        os.utime(path, ns=(1, 1))  # a different mtime, whatever the clock's grain
    head = await tus.head(uid)
    assert head.code == 410 and PATH_HEADER not in head.headers
    get = await tus.request("GET", uid)
    assert get.code == 410 and b"upload it again" in get.body
    # a client that reuses its stored URL starts a fresh upload, and the file comes back
    if change == "rename":
        again = await tus.create_id(len(data), {"filename": "landed.txt"})
        assert (await tus.patch(again, 0, data)).code == 204
        assert path.read_bytes() == data


@FILE_ONLY  # an object in the bucket: test_s3_server's test_get_streams_the_upload
async def test_an_untouched_landed_file_is_served_whole(tus):
    data = os.urandom(3 * 1024 * 1024 + 7)
    uid = await tus.create_id(len(data), {"filename": "big.bin"})
    assert (await tus.patch(uid, 0, data)).code == 204
    r = await tus.request("GET", uid)
    assert r.code == 200 and r.body == data
    assert r.headers["Content-Length"] == str(len(data))


# ----------------------------------------------------------- ownership


def _contents_api_file(jp_root_dir, folder: str, name: str) -> os.stat_result:
    """How jupyter-server's own contents manager writes a new file there (in place)."""
    from jupyter_server.services.contents.largefilemanager import LargeFileManager

    manager = LargeFileManager(root_dir=str(jp_root_dir))
    manager.save({"type": "file", "format": "text", "content": "x"}, f"{folder}/{name}")
    return os.stat(jp_root_dir / folder / name)


@pytest.fixture
def shared_folder(jp_root_dir):
    """A setgid folder owned by another group, as hubs use for shared data."""
    folder = jp_root_dir / "shared"
    folder.mkdir()
    os.chown(folder, -1, 4242)
    folder.chmod(0o2775)
    return folder


@FILE_ONLY
async def test_a_landed_file_gets_the_group_and_mode_the_contents_manager_gives(
    tus, jp_root_dir, shared_folder, staging
):
    stock = _contents_api_file(jp_root_dir, "shared", "stock.txt")
    assert stock.st_gid == 4242
    uid = await tus.create_id(3, {"filename": "tus.txt", "path": "shared"})
    assert (await tus.patch(uid, 0, b"abc")).code == 204
    landed = os.stat(shared_folder / "tus.txt")
    assert os.stat(staging).st_gid != 4242  # it came from a folder of another group
    assert landed.st_gid == stock.st_gid
    assert stat.S_IMODE(landed.st_mode) == stat.S_IMODE(stock.st_mode)


@FILE_ONLY
async def test_an_overwritten_file_keeps_its_mode_and_group(tus, shared_folder):
    existing = shared_folder / "kept.txt"
    existing.write_text("old")
    os.chown(existing, -1, 777)
    existing.chmod(0o640)
    uid = await tus.create_id(3, {"filename": "kept.txt", "path": "shared", "overwrite": "1"})
    assert (await tus.patch(uid, 0, b"new")).code == 204
    landed = os.stat(existing)
    assert existing.read_bytes() == b"new"
    assert (stat.S_IMODE(landed.st_mode), landed.st_gid) == (0o640, 777)


@FILE_ONLY
async def test_an_empty_file_that_cannot_land_yet_is_answered_with_its_location(
    tus, jp_root_dir, monkeypatch
):
    from jupyter_tus import destinations

    (jp_root_dir / "dest").mkdir()
    r = await tus.create(0, {"filename": "empty.txt"})  # a control: lands at once
    assert r.code == 201 and r.headers[PATH_HEADER] == "empty.txt"
    # The folder turns read-only between the creation's check and its landing: the
    # check is taken as it was before the mount (fault injection).
    checked = destinations.resolve(jp_root_dir, {"filename": "empty.txt", "path": "dest"})
    monkeypatch.setattr(destinations, "resolve", lambda *a, **k: checked)
    mount = ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(jp_root_dir / "dest")]
    subprocess.run(mount, check=True)
    try:
        r = await tus.create(0, {"filename": "empty.txt", "path": "dest"})
        assert r.code == 503 and b"retries" in r.body, r.body
        uid = r.headers["Location"].rsplit("/", 1)[-1]
    finally:
        subprocess.run(["umount", str(jp_root_dir / "dest")], check=True)
    head = await tus.head(uid)  # the next request on it lands it
    assert head.code == 200 and head.headers[PATH_HEADER] == "dest/empty.txt"
    assert (jp_root_dir / "dest" / "empty.txt").read_bytes() == b""


@S3_ONLY
async def test_an_empty_object_that_cannot_land_yet_is_answered_with_its_location(
    tus, backend, copy_fails
):
    r = await tus.create(0, {"filename": "empty.txt", "path": "dest"})
    assert r.code == 503 and b"retries" in r.body, r.body
    uid = r.headers["Location"].rsplit("/", 1)[-1]
    assert backend.landed("dest/empty.txt") is None
    copy_fails[0] = False
    head = await tus.head(uid)  # the next request on it lands it
    assert head.code == 200 and head.headers[PATH_HEADER] == "dest/empty.txt"
    assert backend.landed("dest/empty.txt") == b""


async def test_a_refused_landing_is_reported_as_an_event(tus, backend, events):
    from .conftest import wait_events

    data = b"abcd"
    uid = await half_sent(tus, data, filename="x.bin", path="dest")
    backend.put("dest", b"now a file")
    assert (await finish(tus, uid, data)).code == 403
    await wait_events(events, 1)
    assert events[0]["action"] == "refused" and events[0]["id"] == uid
    assert "is a file, not a folder" in events[0]["reason"] and "path" not in events[0]


@FILE_ONLY  # a staging file swapped for a folder; S3Store's: tests/test_s3store.py
async def test_a_refused_landing_and_a_quarantine_are_reported_as_events(
    tus, tus_app, jp_root_dir, outside, events
):
    from .conftest import wait_events

    data = b"abcd"
    (jp_root_dir / "dest").mkdir()
    uid = await half_sent(tus, data, filename="x.bin", path="dest")
    (jp_root_dir / "dest").rmdir()
    (jp_root_dir / "dest").symlink_to(outside)
    assert (await finish(tus, uid, data)).code == 403
    await wait_events(events, 1)
    assert events[0]["action"] == "refused" and events[0]["id"] == uid
    assert "outside the server's root" in events[0]["reason"] and "path" not in events[0]
    # an upload recovery cannot repair: a folder where its bytes should be
    store = tus_app.manager.store
    bad = await tus.create_id(5, {"filename": "bad.bin"})
    (store.directory / bad).unlink()
    (store.directory / bad).mkdir()
    info = store.get_info(bad)
    info.unverified_from = 0
    store._save_info(info)
    tus_app.manager.recover()
    await wait_events(events, 2)
    assert events[1]["action"] == "quarantined" and events[1]["id"] == bad
    assert events[1]["reason"] == "FileNotFoundError: not a regular file"
    assert (await tus.head(bad)).code == 503
    assert (await tus.head(uid)).code == 403  # the others answer as before


# ----------------------------------------------------------- found by trying to break it


async def test_a_write_that_ended_with_every_byte_but_no_commit_lands_on_the_next_request(
    tus, tus_app, backend
):
    # A chunked PATCH carrying every byte whose end never came (the link dropped): the
    # bytes are kept; the next request on the upload completes and lands it.
    uid = await tus.create_id(10, {"filename": "cut.bin"})
    writer = tus_app.manager.store.open_writer(uid, 0)
    writer.write(b"0123456789")
    writer.abort()
    assert not tus_app.manager.store.get_info(uid).is_complete
    head = await tus.head(uid)
    assert head.code == 200 and head.headers[PATH_HEADER] == "cut.bin"
    assert backend.landed("cut.bin") == b"0123456789"
    assert (await tus.request("GET", uid)).body == b"0123456789"


async def test_the_sweep_completes_a_full_upload_and_never_expires_it(tus, tus_app, backend):
    store = tus_app.manager.store
    uid = await tus.create_id(4, {"filename": "swept.bin"})
    writer = store.open_writer(uid, 0)
    writer.write(b"abcd")
    writer.abort()
    assert uid not in list(store.expired_uploads(now=time.time() + 10 * 365 * 86400))
    landed, refused = tus_app.manager.retry_landings()
    assert [i.id for i in landed] == [uid] and refused == []
    assert backend.landed("swept.bin") == b"abcd"


@FILE_ONLY
async def test_a_fifo_in_place_of_staged_bytes_never_hangs_the_server(tus, staging):
    uid = await tus.create_id(3, headers={"Upload-Concat": "partial"})
    assert (await tus.patch(uid, 0, b"abc")).code == 204  # complete, kept in the store
    (staging / uid).unlink()
    os.mkfifo(staging / uid)
    assert (await tus.request("GET", uid)).code == 404
    fifo_record = "F" * 32
    os.mkfifo(staging / f"{fifo_record}.info")
    assert (await tus.head(fifo_record)).code == 404
    r = await tus.fetch("api", "tus", "uploads", method="GET", headers={"Tus-Resumable": "1.0.0"})
    assert r.code == 200  # the list reads every record: none blocks it


@FILE_ONLY
async def test_a_symlink_in_place_of_staged_bytes_is_never_followed(tus, staging, outside):
    secret = outside / "secret.txt"
    secret.write_bytes(b"TOPSECRET")
    uid = await tus.create_id(10, {"filename": "x.bin"})
    assert (await tus.patch(uid, 0, b"abc")).code == 204
    (staging / uid).unlink()
    (staging / uid).symlink_to(secret)
    head = await tus.head(uid)
    assert head.headers["Upload-Offset"] == "0"  # not the size of what the link names
    r = await tus.patch(uid, 0, b"XYZ")
    assert r.code == 404 and b"gone" in r.body
    assert secret.read_bytes() == b"TOPSECRET"
    partial = await tus.create_id(3, headers={"Upload-Concat": "partial"})
    assert (await tus.patch(partial, 0, b"abc")).code == 204
    (staging / partial).unlink()
    (staging / partial).symlink_to(secret)
    r = await tus.request("GET", partial)
    assert r.code == 404 and b"TOPSECRET" not in r.body


async def test_records_of_the_wrong_shape_are_no_uploads_and_break_nothing(tus, backend):
    # Written by someone else into the staging area: not JSON, a field of the wrong
    # type, a folder (a key under the record's name).
    records = {
        "W" * 32: b"not json",
        "X" * 32: b'{"id": "ID", "size": "10"}',  # the file store's layout
        # S3Store's layout: {"info": FileInfo, "s3": S3State}
        "Z" * 32: b'{"info": {"id": "ID", "size": "10"}, "s3": {}}',
        "V" * 32: b'{"info": {"id": "ID", "size": 10}, "s3": {"saved": "today"}}',
        "U" * 32: b'{"info": {"id": "ID", "size": 10}, "s3": {"parts": [[1, "5", "e"]]}}',
        # The right types, values no store writes: a negative size, a time that is NaN,
        # infinite or past datetime's year 9999 (JSON's NaN and Infinity, which
        # Python's json reads), in both layouts.
        "T" * 32: b'{"id": "ID", "size": -1}',
        "S" * 32: b'{"id": "ID", "size": 10, "created": NaN}',
        "R" * 32: b'{"id": "ID", "size": 10, "expires": 1e300}',
        "Q" * 32: b'{"info": {"id": "ID", "size": 10, "created": Infinity}, "s3": {}}',
        "P" * 32: b'{"info": {"id": "ID", "size": 10, "expires": 1e300}, "s3": {}}',
        "O" * 32: b'{"info": {"id": "ID", "size": 10}, "s3": {"saved": Infinity}}',
        # A name no client can send (metadata is UTF-8): a lone surrogate, in both layouts.
        "N" * 32: b'{"id": "ID", "size": 10, "metadata": {"filename": "a\\ud800"}}',
        "M" * 32: b'{"info": {"id": "ID", "size": 10, "metadata": {"filename": "a\\ud800"}},'
        b' "s3": {}}',
        # A finished upload to a path no file system or object store takes: a lone
        # surrogate, a NUL (ROOT: the root_dir, the file store's paths being absolute).
        "K" * 32: b'{"id": "ID", "size": 0, "is_complete": true, "path": "ROOT/a\\ud800"}',
        "J" * 32: b'{"id": "ID", "size": 0, "is_complete": true, "path": "ROOT/a\\u0000"}',
        "I" * 32: b'{"info": {"id": "ID", "size": 0, "is_complete": true, "path": "a\\ud800"},'
        b' "s3": {}}',
        "Y" * 32: None,
    }
    root = str(backend.root).encode()
    for uid, content in records.items():
        if content is None:
            backend.put(f".tus/{uid}.info/inside", b"")
        else:
            content = content.replace(b"ID", uid.encode()).replace(b"ROOT", root)
            backend.put(f".tus/{uid}.info", content)
        backend.put(f".tus/{uid}", b"")
    for uid in records:
        assert (await tus.head(uid)).code == 404, uid
        assert (await tus.patch(uid, 0, b"x")).code == 404, uid
    r = await tus.fetch("api", "tus", "uploads", method="GET", headers={"Tus-Resumable": "1.0.0"})
    assert r.code == 200 and not any(uid.encode() in r.body for uid in records)


@FILE_ONLY  # " (deleted)" is how /proc names an unlinked file: a file system's quirk
async def test_a_folder_named_like_a_kernel_note_is_an_ordinary_folder(tus, jp_root_dir):
    (jp_root_dir / "old (deleted)").mkdir()
    uid = await tus.create_id(2, {"filename": "x.bin", "path": "old (deleted)"})
    assert (await tus.patch(uid, 0, b"ok")).code == 204
    assert (jp_root_dir / "old (deleted)" / "x.bin").read_bytes() == b"ok"


async def test_names_taken_during_uploads_count_up_from_the_name_asked_for(tus, backend):
    uploads = [await half_sent(tus, b"abcd", filename="same.txt") for _ in range(3)]
    backend.put("same.txt", b"taken meanwhile")
    landed = []
    for uid in uploads:
        r = await finish(tus, uid, b"abcd")
        assert r.code == 204
        landed.append(urllib.parse.unquote(r.headers[PATH_HEADER]))
    assert landed == ["same (1).txt", "same (2).txt", "same (3).txt"]
    assert [backend.landed(name) for name in landed] == [b"abcd"] * 3


async def test_an_empty_file_created_with_an_empty_chunked_body_lands(tus, backend):
    headers = {
        "Upload-Length": "0",
        "Upload-Metadata": "filename ZS50eHQ=",  # e.txt
        "Content-Type": "application/offset+octet-stream",
    }
    r = await send_chunked(tus, "POST", None, headers, [b""])
    assert r.code == 201 and r.headers[PATH_HEADER] == "e.txt", r.body
    headers["Upload-Metadata"] = "filename Zi50eHQ="  # f.txt
    r = await send_chunked(tus, "POST", None, headers, [b"x"])
    assert r.code == 413 and "Location" in r.headers and r.headers[PATH_HEADER] == "f.txt"
    assert backend.landed("e.txt") == b""
    assert backend.landed("f.txt") == b""  # nothing past its length


async def test_a_refused_patch_declares_no_length(tus):
    uid = await tus.create_id(None, {"filename": "later.bin"})
    assert (await tus.patch(uid, 0, b"abc")).code == 204
    r = await tus.patch(uid, 1, b"x", headers={"Upload-Length": "10"})  # wrong offset
    assert r.code == 409
    r = await tus.patch(
        uid,
        3,
        b"d",
        headers={"Upload-Length": "10", "Upload-Checksum": "sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA="},
    )
    assert r.code == 460
    head = await tus.head(uid)
    assert head.headers.get("Upload-Defer-Length") == "1" and "Upload-Length" not in head.headers
    r = await tus.patch(uid, 3, b"defghij", headers={"Upload-Length": "10"})
    assert r.code == 204 and r.headers[PATH_HEADER] == "later.bin"
