"""One test per tus 1.0.0 rule, against a real jupyter server with the extension, with
each store behind it (tests/backends.py): the file store, and S3Store on a real S3
server (SeaweedFS). A rule about the file system only (a symlink, a read-only folder)
runs on the file store; its S3 counterpart (a key outside the prefix, a file where a
folder should be) is a test of its own."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest

from tests.backends import backend_server_config  # noqa: F401 (jp_server_config)

from .conftest import OFFSET_TYPE, sha256

DATA = bytes(range(256)) * 40  # 10 KiB


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


async def test_options_advertises_version_and_extensions(tus):
    r = await tus.request("OPTIONS", headers={"Tus-Resumable": None})
    assert r.code == 204
    assert r.headers["Tus-Resumable"] == "1.0.0"
    assert r.headers["Tus-Version"] == "1.0.0"
    extensions = set(r.headers["Tus-Extension"].split(","))
    assert extensions == {
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "concatenation",
        "checksum",
        "expiration",
    }
    assert {"sha1", "md5", "sha256", "crc32"} <= set(r.headers["Tus-Checksum-Algorithm"].split(","))


@pytest.mark.parametrize("version", [None, "0.2.2", "2.0.0"])
async def test_wrong_version_is_412_with_tus_version(tus, version):
    r = await tus.request("POST", headers={"Tus-Resumable": version, "Upload-Length": "10"})
    assert r.code == 412
    assert r.headers["Tus-Version"] == "1.0.0"


async def test_full_upload_lands_in_workspace(tus, backend):
    uid = await tus.create_id(len(DATA), {"filename": "data.bin"})
    assert len(uid) >= 22
    r = await tus.patch(uid, 0, DATA[:4000])
    assert r.code == 204 and r.headers["Upload-Offset"] == "4000"
    r = await tus.head(uid)
    assert r.code == 200
    assert r.headers["Upload-Offset"] == "4000"
    assert r.headers["Upload-Length"] == str(len(DATA))
    assert r.headers["Cache-Control"] == "no-store"
    assert "filename" in r.headers["Upload-Metadata"]
    r = await tus.patch(uid, 4000, DATA[4000:])
    assert r.code == 204 and r.headers["Upload-Offset"] == str(len(DATA))
    assert backend.landed("data.bin") == DATA
    assert backend.staged() == [f"{uid}.info"]  # only the record of a finished upload


async def test_location_is_under_base_url(tus, jp_base_url):
    r = await tus.create(10, {"filename": "a.txt"})
    assert r.code == 201
    assert r.headers["Location"].startswith(jp_base_url + "api/tus/uploads/")
    assert "Upload-Expires" in r.headers


async def test_upload_into_subfolder_is_created(tus, backend):
    uid = await tus.create_id(3, {"filename": "x.txt", "path": "deep/er"})
    assert (await tus.patch(uid, 0, b"abc")).code == 204
    assert backend.landed("deep/er/x.txt") == b"abc"


async def test_creation_with_upload(tus, backend):
    r = await tus.create(len(DATA), {"filename": "cwu.bin"}, body=DATA[:1000])
    assert r.code == 201
    assert r.headers["Upload-Offset"] == "1000"
    uid = r.headers["Location"].rsplit("/", 1)[-1]
    assert (await tus.patch(uid, 1000, DATA[1000:])).code == 204
    assert backend.landed("cwu.bin") == DATA


async def test_creation_with_whole_body_completes(tus, backend):
    r = await tus.create(len(DATA), {"filename": "whole.bin"}, body=DATA)
    assert r.code == 201 and r.headers["Upload-Offset"] == str(len(DATA))
    assert backend.landed("whole.bin") == DATA


async def test_empty_file_completes_at_creation(tus, backend):
    assert (await tus.create(0, {"filename": "empty.txt"})).code == 201
    assert backend.landed("empty.txt") == b""


async def test_missing_length_is_400(tus):
    r = await tus.request("POST")
    assert r.code == 400
    assert b"Upload-Length" in r.body


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", ""])
async def test_bad_length_is_400(tus, value):
    assert (await tus.request("POST", headers={"Upload-Length": value})).code == 400


async def test_length_and_defer_together_is_400(tus):
    r = await tus.request("POST", headers={"Upload-Length": "5", "Upload-Defer-Length": "1"})
    assert r.code == 400


async def test_defer_length(tus, backend):
    uid = await tus.create_id(None, {"filename": "deferred.bin"})
    r = await tus.head(uid)
    assert r.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in r.headers
    assert (await tus.patch(uid, 0, DATA[:100])).code == 204
    r = await tus.patch(uid, 100, DATA[100:], headers={"Upload-Length": str(len(DATA))})
    assert r.code == 204 and r.headers["Upload-Offset"] == str(len(DATA))
    assert backend.landed("deferred.bin") == DATA


async def test_patch_wrong_content_type_is_415(tus):
    uid = await tus.create_id(10)
    r = await tus.request(
        "PATCH",
        uid,
        headers={"Content-Type": "application/json", "Upload-Offset": "0"},
        body=b"0123456789",
    )
    assert r.code == 415
    assert (await tus.head(uid)).headers["Upload-Offset"] == "0"


async def test_patch_offset_mismatch_is_409(tus):
    uid = await tus.create_id(10)
    assert (await tus.patch(uid, 0, b"01234")).code == 204
    r = await tus.patch(uid, 3, b"34567")
    assert r.code == 409
    assert (await tus.head(uid)).headers["Upload-Offset"] == "5"


async def test_patch_missing_offset_is_400(tus):
    uid = await tus.create_id(10)
    r = await tus.request("PATCH", uid, headers=OFFSET_TYPE, body=b"x")
    assert r.code == 400


async def test_patch_past_length_is_413_and_writes_nothing(tus):
    uid = await tus.create_id(10)
    r = await tus.patch(uid, 0, b"x" * 11)
    assert r.code == 413
    assert (await tus.head(uid)).headers["Upload-Offset"] == "0"


@pytest.mark.parametrize("tus_config", [{"max_size": 1000}])
async def test_max_size(tus, tus_config):
    r = await tus.request("OPTIONS")
    assert r.headers["Tus-Max-Size"] == "1000"
    assert (await tus.create(1001)).code == 413
    assert (await tus.create(1000)).code == 201


async def test_unknown_upload_is_404(tus):
    fake = "A" * 32
    assert (await tus.head(fake)).code == 404
    assert (await tus.patch(fake, 0, b"x")).code == 404


async def test_termination(tus, backend):
    uid = await tus.create_id(100, {"filename": "gone.bin"})
    assert (await tus.patch(uid, 0, b"x" * 50)).code == 204
    assert (await tus.request("DELETE", uid)).code == 204
    assert (await tus.head(uid)).code in (404, 410)
    assert (await tus.patch(uid, 50, b"x")).code in (404, 410)
    assert not any(uid in name for name in backend.staged())


async def test_method_override(tus):
    uid = await tus.create_id(10)
    r = await tus.request("POST", uid, headers={"X-HTTP-Method-Override": "DELETE"})
    assert r.code == 204
    assert (await tus.head(uid)).code == 404
    uid = await tus.create_id(4)
    r = await tus.request(
        "POST",
        uid,
        headers={**OFFSET_TYPE, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"},
        body=b"abcd",
    )
    assert r.code == 204 and r.headers["Upload-Offset"] == "4"


@pytest.mark.parametrize(
    "algo,digest",
    [
        ("sha1", hashlib.sha1(DATA).digest()),
        ("md5", hashlib.md5(DATA).digest()),
        ("sha256", hashlib.sha256(DATA).digest()),
        ("crc32", zlib.crc32(DATA).to_bytes(4, "big")),
    ],
)
async def test_checksum_accepted(tus, algo, digest):
    uid = await tus.create_id(len(DATA))
    r = await tus.patch(uid, 0, DATA, headers={"Upload-Checksum": f"{algo} {b64(digest)}"})
    assert r.code == 204 and r.headers["Upload-Offset"] == str(len(DATA))


async def test_checksum_mismatch_is_460_and_offset_unchanged(tus, backend):
    uid = await tus.create_id(len(DATA))
    assert (await tus.patch(uid, 0, DATA[:10])).code == 204
    bad = b64(hashlib.sha1(b"other").digest())
    r = await tus.patch(uid, 10, DATA[10:], headers={"Upload-Checksum": f"sha1 {bad}"})
    assert r.code == 460
    assert (await tus.head(uid)).headers["Upload-Offset"] == "10"
    assert backend.kept(uid) == 10


async def test_unsupported_checksum_algorithm_is_400(tus):
    uid = await tus.create_id(4)
    r = await tus.patch(uid, 0, b"abcd", headers={"Upload-Checksum": f"whirlpool {b64(b'x')}"})
    assert r.code == 400
    assert (await tus.head(uid)).headers["Upload-Offset"] == "0"


async def test_concatenation(tus, backend, jp_base_url):
    a = await tus.create_id(4000, headers={"Upload-Concat": "partial"})
    b = await tus.create_id(len(DATA) - 4000, headers={"Upload-Concat": "partial"})
    r = await tus.head(a)
    assert r.headers["Upload-Concat"] == "partial"
    assert (await tus.patch(b, 0, DATA[4000:])).code == 204
    assert (await tus.patch(a, 0, DATA[:4000])).code == 204
    urls = f"{jp_base_url}api/tus/uploads/{a} {jp_base_url}api/tus/uploads/{b}"
    r = await tus.create(
        None,
        {"filename": "joined.bin"},
        headers={"Upload-Concat": f"final;{urls}", "Upload-Defer-Length": None},
    )
    assert r.code == 201, r.body
    final = r.headers["Location"].rsplit("/", 1)[-1]
    assert backend.landed("joined.bin") == DATA
    r = await tus.head(final)
    assert r.headers["Upload-Offset"] == str(len(DATA))
    assert r.headers["Upload-Concat"].startswith("final;")
    # a final upload takes no PATCH
    assert (await tus.patch(final, len(DATA), b"x")).code == 403


async def test_concatenation_of_unfinished_partial_is_400(tus, jp_base_url):
    a = await tus.create_id(10, headers={"Upload-Concat": "partial"})
    r = await tus.create(
        None,
        {"filename": "never.bin"},
        headers={
            "Upload-Concat": f"final;{jp_base_url}api/tus/uploads/{a}",
            "Upload-Defer-Length": None,
        },
    )
    assert r.code == 400


async def test_get_streams_finished_upload(tus):
    uid = await tus.create_id(len(DATA), {"filename": "page.html", "filetype": "text/html"})
    assert (await tus.patch(uid, 0, DATA)).code == 204
    r = await tus.request("GET", uid, headers={"Tus-Resumable": None})
    assert r.code == 200
    assert sha256(r.body) == sha256(DATA)
    assert r.headers["Content-Length"] == str(len(DATA))
    assert r.headers["Content-Type"] == "text/html"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Disposition"].startswith("attachment;")
    assert "page.html" in r.headers["Content-Disposition"]


async def test_get_inline_for_safe_type(tus):
    uid = await tus.create_id(3, {"filename": "a.png", "filetype": "image/png"})
    await tus.patch(uid, 0, b"png")
    r = await tus.request("GET", uid)
    assert r.headers["Content-Disposition"].startswith("inline;")


async def test_get_refuses_unfinished_upload(tus):
    uid = await tus.create_id(10, {"filename": "half.bin"})
    await tus.patch(uid, 0, b"12345")
    r = await tus.request("GET", uid)
    assert r.code == 400
    assert b"5 of 10" in r.body


async def test_name_clash_is_409_at_creation(tus, backend):
    backend.put("taken.txt", b"mine")
    r = await tus.create(3, {"filename": "taken.txt"})
    assert r.code == 409
    assert b"already exists" in r.body
    assert backend.landed("taken.txt") == b"mine"


async def test_overwrite_replaces(tus, backend):
    backend.put("taken.txt", b"mine")
    uid = await tus.create_id(3, {"filename": "taken.txt", "overwrite": "true"})
    assert (await tus.patch(uid, 0, b"new")).code == 204
    assert backend.landed("taken.txt") == b"new"


async def test_name_taken_during_upload_gets_unique_name(tus, backend):
    backend.put("dir é/other.txt", b"a folder that exists")
    uid = await tus.create_id(3, {"filename": "race.txt", "path": "dir é"})
    r = await tus.patch(uid, 0, b"ne")
    assert "Jupyter-Tus-Path" not in r.headers  # not finished yet
    backend.put("dir é/race.txt", b"someone else")
    r = await tus.patch(uid, 2, b"w")
    assert r.code == 204
    assert backend.landed("dir é/race.txt") == b"someone else"
    assert backend.landed("dir é/race (1).txt") == b"new"
    # the client learns the name it could not guess, on the last PATCH and on HEAD
    assert r.headers["Jupyter-Tus-Path"] == "dir%20%C3%A9/race%20%281%29.txt"
    assert (await tus.head(uid)).headers["Jupyter-Tus-Path"] == r.headers["Jupyter-Tus-Path"]


async def test_creation_that_finishes_the_upload_says_where_it_landed(tus):
    r = await tus.create(0, {"filename": "empty.txt"})
    assert r.code == 201 and r.headers["Jupyter-Tus-Path"] == "empty.txt"
    r = await tus.create(2, {"filename": "with-body.txt"}, body=b"ok")
    assert r.code == 201 and r.headers["Jupyter-Tus-Path"] == "with-body.txt"


@pytest.mark.parametrize(
    "metadata",
    [
        {"filename": "../escape.txt"},
        {"filename": "x.txt", "path": "../outside"},
        {"filename": "x.txt", "path": "a/../../outside"},
        {"filename": "x.txt", "path": "/etc"},
        {"filename": ".hidden"},
        {"filename": "x.txt", "path": ".secret"},
        {"filename": "x.txt", "path": ".tus"},
        {"filename": "a\x00b"},
    ],
)
async def test_refused_destinations_write_nothing(tus, backend, metadata):
    before = backend.snapshot()
    r = await tus.create(3, metadata)
    assert r.code in (400, 403)
    assert b"message" in r.body
    assert backend.snapshot() == before


@pytest.mark.parametrize("backend", ["file"], indirect=True)
async def test_symlink_out_of_root_refused(tus, jp_root_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (jp_root_dir / "link").symlink_to(outside)
    r = await tus.create(3, {"filename": "x.txt", "path": "link"})
    assert r.code == 403
    assert list(outside.iterdir()) == []


async def test_error_messages_do_not_leak_server_paths(tus, jp_root_dir, backend):
    r = await tus.create(3, {"filename": "x.txt", "path": "../../etc"})
    assert str(jp_root_dir).encode() not in r.body
    if backend.kind == "s3":
        assert backend.bucket.encode() not in r.body


@pytest.fixture
def read_only_folder(jp_root_dir):
    """A read-only folder in the workspace: a read-only mount as root (root ignores
    permission bits), permission bits otherwise."""
    import os
    import subprocess

    folder = jp_root_dir / "readonly"
    folder.mkdir()
    if os.geteuid() == 0:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], check=True
        )
        yield folder
        subprocess.run(["umount", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


@pytest.mark.parametrize("backend", ["file"], indirect=True)
async def test_read_only_destination_is_refused(tus, read_only_folder):
    r = await tus.create(3, {"filename": "x.txt", "path": "readonly"})
    assert r.code == 403
    assert b"read-only" in r.body
    assert list(read_only_folder.iterdir()) == []


async def test_a_file_on_the_way_is_refused(tus, backend):
    """A folder of ``path`` that is a file (an object, in the bucket) is refused at
    creation: the upload could never land. The read-only folder's counterpart."""
    backend.put("notes.txt", b"a file")
    r = await tus.create(3, {"filename": "x.txt", "path": "notes.txt/sub"})
    assert r.code == 403
    assert b"is a file, not a folder" in r.body
    assert backend.landed("notes.txt") == b"a file"
    assert backend.staged() == []


async def test_a_file_on_the_way_since_creation_refuses_the_landing(tus, backend):
    """A file (object) put where a folder of ``path`` goes while the upload runs: the
    last PATCH says so (403) and the bytes stay downloadable; nothing lands under the
    file's name."""
    uid = await tus.create_id(3, {"filename": "x.txt", "path": "sub/deeper"})
    assert (await tus.patch(uid, 0, b"ab")).code == 204
    backend.put("sub", b"a file where the folder goes")
    r = await tus.patch(uid, 2, b"c")
    assert r.code == 403
    assert b"'sub' is a file, not a folder" in r.body and b"the bytes are kept" in r.body
    assert backend.landed("sub") == b"a file where the folder goes"
    assert backend.landed("sub/deeper/x.txt") is None
    r = await tus.request("GET", uid)
    assert r.code == 200 and r.body == b"abc"


@pytest.mark.parametrize("overwrite", ["", "1"])
async def test_a_folder_at_the_destination_is_409(tus, backend, overwrite):
    """A name that is a folder (keys under it, in the bucket) is taken, even with
    overwrite: a file never replaces a folder."""
    backend.put("dir/inside.txt", b"kept")
    r = await tus.create(3, {"filename": "dir", "overwrite": overwrite})
    assert r.code == 409
    assert b"is a folder" in r.body
    assert backend.landed("dir/inside.txt") == b"kept"
    assert backend.staged() == []


@pytest.mark.parametrize("backend", ["s3"], indirect=True)
async def test_keys_outside_the_prefix_are_not_the_stores(tus, backend):
    """S3Store's counterpart of the workspace's confinement (the symlink test): its
    names live under its prefix; an object outside it with the same name neither
    takes the name nor is replaced, and nothing is written outside the prefix."""
    outside = backend.space + "same.txt"
    backend.client.put_object(Bucket=backend.bucket, Key=outside, Body=b"not the store's")
    before = [n for n in backend.snapshot() if not n.startswith(f"s3:{backend.prefix}")]
    r = await tus.create(3, {"filename": "same.txt"}, body=b"new")
    assert r.code == 201 and r.headers["Jupyter-Tus-Path"] == "same.txt"
    assert backend.landed("same.txt") == b"new"
    body = backend.client.get_object(Bucket=backend.bucket, Key=outside)["Body"].read()
    assert body == b"not the store's"
    after = [n for n in backend.snapshot() if not n.startswith(f"s3:{backend.prefix}")]
    assert after == before
