"""The tus protocol through a real server with each store behind it: the file store, and
S3Store on a real S3 server (SeaweedFS): the conformance harness's idea at the HTTP
level (issue 11, phase 2). What differs between the stores is only where the bytes are:
``Backend`` reads a landed file from the workspace or from the bucket."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time

import pytest

from jupyter_tus.store import UploadGone
from tests.backends import MiB, backend_server_config  # noqa: F401 (jp_server_config)

from .conftest import TusClient

# Tests of what only S3Store does: on its backend alone (no file-store case to skip).
S3_ONLY = pytest.mark.parametrize("backend", ["s3"], indirect=True)

# Over one S3 part (5 MiB in these tests), so a PATCH sends a part and leaves a tail.
BIG = bytes(range(256)) * (6 * MiB // 256) + b"end"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def uid_of(r) -> str:
    return r.headers["Location"].rstrip("/").rsplit("/", 1)[-1]


async def test_the_store_is_the_configured_one(tus: TusClient, tus_app, backend):
    assert (
        type(tus_app.manager.store).__name__ == {"file": "FileStore", "s3": "S3Store"}[backend.kind]
    )
    r = await tus.request("OPTIONS", headers={"Tus-Resumable": None})
    assert set(r.headers["Tus-Extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "concatenation",
        "checksum",
        "expiration",
    }
    assert r.headers["Tus-Checksum-Algorithm"] == "sha1,md5,sha256,sha512,crc32"


async def test_upload_in_pieces_lands(tus: TusClient, backend):
    uid = await tus.create_id(len(BIG), {"filename": "big.bin", "path": "in"})
    r = await tus.patch(uid, 0, BIG[: 4 * MiB])  # under a part: kept as the tail
    assert r.code == 204 and r.headers["Upload-Offset"] == str(4 * MiB)
    r = await tus.head(uid)
    assert r.code == 200 and r.headers["Upload-Offset"] == str(4 * MiB)
    assert r.headers["Upload-Length"] == str(len(BIG)) and "Upload-Expires" in r.headers
    assert backend.landed("in/big.bin") is None
    r = await tus.patch(uid, 4 * MiB, BIG[4 * MiB :])  # a part, then the last one
    assert r.code == 204 and r.headers["Upload-Offset"] == str(len(BIG))
    assert r.headers["Jupyter-Tus-Path"] == "in/big.bin"
    assert backend.landed("in/big.bin") == BIG
    r = await tus.head(uid)
    assert r.code == 200 and r.headers["Upload-Offset"] == str(len(BIG))
    assert backend.staged() == [f"{uid}.info"]  # only the record of a finished upload


async def test_creation_with_upload_offsets_and_lengths(tus: TusClient, backend):
    r = await tus.create(10, {"filename": "c.txt"}, body=b"01234")
    assert r.code == 201 and r.headers["Upload-Offset"] == "5"
    uid = uid_of(r)
    r = await tus.patch(uid, 3, b"34567")
    assert r.code == 409
    r = await tus.patch(uid, 5, b"56789-too-long")
    assert r.code == 413
    assert (await tus.head(uid)).headers["Upload-Offset"] == "5"
    r = await tus.patch(uid, 5, b"56789")
    assert r.code == 204 and backend.landed("c.txt") == b"0123456789"
    r = await tus.patch(uid, 10, b"x")
    assert r.code == 403  # a finished upload takes no more data


async def test_deferred_length(tus: TusClient, backend):
    uid = await tus.create_id(None, {"filename": "d.txt"})
    assert (await tus.head(uid)).headers["Upload-Defer-Length"] == "1"
    assert (await tus.patch(uid, 0, b"abc")).code == 204
    r = await tus.patch(uid, 3, b"def", headers={"Upload-Length": "6"})
    assert r.code == 204 and r.headers["Upload-Offset"] == "6"
    assert backend.landed("d.txt") == b"abcdef"


async def test_termination(tus: TusClient, backend):
    uid = await tus.create_id(len(BIG), {"filename": "t.bin"})
    assert (await tus.patch(uid, 0, BIG[: 5 * MiB + 10])).code == 204  # a part and a tail
    assert backend.staged()
    r = await tus.request("DELETE", uid)
    assert r.code == 204
    assert (await tus.head(uid)).code == 404
    assert (await tus.patch(uid, 5 * MiB + 10, b"x")).code == 404
    assert backend.staged() == []
    assert backend.landed("t.bin") is None


async def test_concatenation(tus: TusClient, backend, jp_base_url):
    parts = [b"first part, ", b"second part"]
    urls = []
    for data in parts:
        r = await tus.create(len(data), headers={"Upload-Concat": "partial"}, body=data)
        assert r.code == 201 and r.headers["Upload-Offset"] == str(len(data))
        urls.append(r.headers["Location"])
    r = await tus.create(
        None, {"filename": "whole.txt"}, headers={"Upload-Concat": "final;" + " ".join(urls)}
    )
    assert r.code == 201, r.body
    assert backend.landed("whole.txt") == b"".join(parts)
    r = await tus.head(uid_of(r))
    assert r.headers["Upload-Offset"] == str(len(b"".join(parts)))
    assert r.headers["Upload-Concat"].startswith("final;")


@pytest.mark.parametrize(
    "algo,digest",
    [
        ("sha1", hashlib.sha1),
        ("md5", hashlib.md5),
        ("sha256", hashlib.sha256),
    ],
)
async def test_checksums(tus: TusClient, backend, algo, digest):
    uid = await tus.create_id(8, {"filename": f"{algo}.txt"})
    wrong = {"Upload-Checksum": f"{algo} {b64(digest(b'nope').digest())}"}
    r = await tus.patch(uid, 0, b"abcd", headers=wrong)
    assert r.code == 460
    assert (await tus.head(uid)).headers["Upload-Offset"] == "0"
    right = {"Upload-Checksum": f"{algo} {b64(digest(b'abcd').digest())}"}
    assert (await tus.patch(uid, 0, b"abcd", headers=right)).code == 204
    right = {"Upload-Checksum": f"{algo} {b64(digest(b'efgh').digest())}"}
    assert (await tus.patch(uid, 4, b"efgh", headers=right)).code == 204
    assert backend.landed(f"{algo}.txt") == b"abcdefgh"


async def test_get_streams_the_upload(tus: TusClient, backend):
    uid = await tus.create_id(len(BIG), {"filename": "g.bin", "filetype": "text/plain"})
    assert (await tus.patch(uid, 0, BIG[:100])).code == 204
    assert (await tus.request("GET", uid)).code == 400  # not complete
    assert (await tus.patch(uid, 100, BIG[100:])).code == 204
    r = await tus.request("GET", uid)
    assert r.code == 200 and r.body == BIG
    assert r.headers["Content-Type"] == "text/plain"


async def test_names(tus: TusClient, backend):
    backend.put("taken.txt", b"old")
    r = await tus.create(3, {"filename": "taken.txt"})
    assert r.code == 409
    uid = await tus.create_id(3, {"filename": "taken.txt", "overwrite": "1"})
    assert (await tus.patch(uid, 0, b"new")).code == 204
    assert backend.landed("taken.txt") == b"new"
    # a name taken while the upload ran: a unique one, said in Jupyter-Tus-Path
    uid = await tus.create_id(3, {"filename": "later.txt"})
    backend.put("later.txt", b"theirs")
    r = await tus.patch(uid, 0, b"our")
    assert r.code == 204 and r.headers["Jupyter-Tus-Path"] == "later%20%281%29.txt"
    assert backend.landed("later.txt") == b"theirs"
    assert backend.landed("later (1).txt") == b"our"
    for metadata in ({"filename": "../up.txt"}, {"filename": "a", "path": "../x"}):
        assert (await tus.create(1, metadata)).code == 403


async def test_expired_uploads_are_removed(tus: TusClient, tus_app, backend, monkeypatch):
    uid = await tus.create_id(10, {"filename": "e.txt"})
    assert (await tus.patch(uid, 0, b"abc")).code == 204
    later = time.time() + tus_app.expiration + 60
    monkeypatch.setattr(time, "time", lambda: later)
    assert (await tus.head(uid)).code == 410
    removed = tus_app.manager.remove_expired()
    monkeypatch.undo()
    assert [info.id for info in removed] == [uid]
    assert (await tus.head(uid)).code == 404
    assert backend.staged() == []


@pytest.fixture
def loop_calls(tus_app, backend) -> list[str]:
    """The S3 requests S3Store makes on the event loop's thread (there must be none:
    each may wait seconds on the network, and every other request would wait too)."""
    import threading

    store = tus_app.manager.store
    loop_thread = threading.get_ident()
    calls: list[str] = []
    real = store._call

    def call(operation, **kwargs):
        if threading.get_ident() == loop_thread:
            calls.append(operation)
        return real(operation, **kwargs)

    store._call = call
    for name in ("_head", "_get_bytes"):  # helpers that may bypass _call
        inner = getattr(store, name)

        def wrapped(*args, _inner=inner, _name=name, **kwargs):
            if threading.get_ident() == loop_thread:
                calls.append(_name)
            return _inner(*args, **kwargs)

        setattr(store, name, wrapped)
    return calls


@S3_ONLY
async def test_no_s3_request_on_the_event_loop(tus: TusClient, loop_calls):
    uid = await tus.create_id(len(BIG), {"filename": "loop.bin"})
    assert (await tus.patch(uid, 0, BIG[: 5 * MiB + 1])).code == 204
    assert (await tus.head(uid)).code == 200
    assert (await tus.patch(uid, 5 * MiB + 1, BIG[5 * MiB + 1 :])).code == 204
    assert (await tus.request("GET", uid)).body == BIG
    other = await tus.create_id(10, {"filename": "gone.bin"})
    assert (await tus.patch(other, 0, b"abc")).code == 204
    assert (await tus.request("DELETE", other)).code == 204
    assert (await tus.request("GET")).code == 200  # the listing
    assert loop_calls == [], "\n".join(loop_calls)


KERNEL = """
import hashlib, sys
import jupyter_tus
import jupyter_tus.helpers
big = sys.argv[1]
print(jupyter_tus.load("k.txt"))                       # by name: the upload, not ./in/k.txt
print(jupyter_tus.load("in/k.txt"))                    # by its path
print(jupyter_tus.load(big)[-3:].decode())             # by id
with jupyter_tus.get_reader(big) as f:                 # streamed, 1 MiB at a time
    h = hashlib.sha256()
    while block := f.read(1 << 20):
        h.update(block)
print(h.hexdigest())
print(type(jupyter_tus.helpers.default_store()).__name__)
"""


async def test_a_kernel_finds_the_store_through_the_server(tus: TusClient, backend, tmp_path):
    """A process the server starts (a kernel) inherits what names the store
    ($JUPYTER_TUS_STORE for S3Store, $JUPYTER_TUS_DIR for the file store) and reads
    the uploads from it: from the bucket for S3Store, never a local file that has the
    same relative path."""
    import asyncio
    import os
    import sys

    uid = await tus.create_id(16, {"filename": "k.txt", "path": "in"})
    assert (await tus.patch(uid, 0, b"from the store\n\n")).code == 204
    big = await tus.create_id(len(BIG), {"filename": "big.bin"})
    assert (await tus.patch(big, 0, BIG)).code == 204
    cwd = tmp_path / "kernel"
    (cwd / "in").mkdir(parents=True)
    (cwd / "in" / "k.txt").write_text("a local file, not the upload")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        KERNEL,
        big,
        cwd=cwd,
        env={**os.environ},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    lines = [line for line in out.decode().splitlines() if line]
    assert lines == [
        "from the store",
        "from the store",
        "end",
        hashlib.sha256(BIG).hexdigest(),
        {"file": "FileStore", "s3": "S3Store"}[backend.kind],
    ]


async def test_a_stale_patch_lets_go_for_a_newcomer(
    tus: TusClient, tus_app, backend, jp_http_port, jp_base_url, jp_auth_header
):
    """The takeover (tusd's requestUnlock, the manager's ReleaseRequests): a HEAD while
    a PATCH holds the upload on a quiet connection asks it to let go; it keeps what
    arrived (S3Store: as its tail), and the client resumes from there."""
    from .test_connections import RawPatch, wait_for

    uid = await tus.create_id(4096, {"filename": "stale.bin"})
    stale = RawPatch(jp_http_port, f"{jp_base_url}api/tus/uploads/{uid}", jp_auth_header, 0, 4096)
    await stale.open()
    await stale.send(b"s" * 1000)
    await wait_for(lambda: tus_app.manager._under_way.get(uid, (0, 0))[1] >= 1000)
    r = await tus.head(uid)
    assert r.code == 200 and r.headers["Upload-Offset"] == "1000"
    stale.close()
    assert (await tus.patch(uid, 1000, b"t" * 3096)).code == 204
    assert backend.landed("stale.bin") == b"s" * 1000 + b"t" * 3096


@pytest.mark.parametrize("change", ["delete", "edit", "edit-same-size", "replace"])
async def test_a_landed_file_that_changed_answers_gone(tus: TusClient, tus_app, backend, change):
    """test_lifetime's rule on both stores: once the landed file (object) changed, the
    upload answers 410 on HEAD and GET, without its path; a new upload brings it back."""
    data = b"the original bytes"
    uid = await tus.create_id(len(data), {"filename": "landed.txt"})
    assert (await tus.patch(uid, 0, data)).code == 204
    assert (await tus.head(uid)).code == 200
    if change == "delete":
        backend.delete("landed.txt")
    elif change == "edit":
        backend.put("landed.txt", data + b" and more")
    elif change == "edit-same-size":
        backend.put("landed.txt", b"THE" + data[3:])
    else:  # same name, same bytes, another file
        backend.delete("landed.txt")
        backend.put("landed.txt", data)
    head = await tus.head(uid)
    assert head.code == 410 and "Jupyter-Tus-Path" not in head.headers
    get = await tus.request("GET", uid)
    assert get.code == 410 and b"upload it again" in get.body
    # and a kernel's get_reader (the store read directly) refuses it too, never the
    # bytes of the file now there
    with pytest.raises(UploadGone):
        await asyncio.to_thread(tus_app.manager.store.get_reader, uid)
    if change == "delete":
        again = await tus.create_id(len(data), {"filename": "landed.txt"})
        assert (await tus.patch(again, 0, data)).code == 204
        assert backend.landed("landed.txt") == data


def _refused_part(kind: str) -> Exception:
    """What S3 answers to the refused part: a 5xx (StorageUnavailable, as ``_call``
    makes it), or a 4xx of S3's own (400 RequestTimeout: it waited too long for the
    part's body, after botocore's retries), which is the object store failing too."""
    if kind == "5xx":
        from jupyter_tus.store import StorageUnavailable

        return StorageUnavailable("the object store refused upload_part (500)")
    from botocore.exceptions import ClientError

    error = {"Code": "RequestTimeout", "Message": "Your socket connection timed out"}
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, "UploadPart")


@S3_ONLY
@pytest.mark.parametrize("kind", ["5xx", "4xx"])
async def test_a_part_s3_refuses_fails_the_patch_and_the_offset_stays(
    tus: TusClient, tus_app, backend, monkeypatch, kind
):
    """S3Store sends a PATCH's parts in the background while the body goes on: S3
    refusing one (here the second, found out in a later write or the commit) fails the
    PATCH with a 503 and a plain message, never a 500, whether S3 answered a 5xx or a
    4xx of its own; the offset counts only the part before it, and the client resumes
    from there to the right file."""
    store = tus_app.manager.store
    part = store.part_size
    real_call = store._call
    refused = []

    def refusing_call(operation, **kwargs):
        if operation == "upload_part" and kwargs["PartNumber"] == 2 and not refused:
            refused.append(2)  # once; S3 is fine again after
            raise _refused_part(kind)
        return real_call(operation, **kwargs)

    monkeypatch.setattr(store, "_call", refusing_call)
    data = BIG * 3
    uid = await tus.create_id(len(data), {"filename": "refused.bin"})
    r = await tus.patch(uid, 0, data[: 2 * part + 2 * MiB])
    assert r.code == 503 and refused == [2]
    if kind == "4xx":
        assert "RequestTimeout" in r.body.decode()
    r = await tus.head(uid)
    assert r.code == 200 and r.headers["Upload-Offset"] == str(part)
    r = await tus.patch(uid, part, data[part:])
    assert r.code == 204 and backend.landed("refused.bin") == data


@S3_ONLY
async def test_any_other_4xx_from_s3_is_a_503_not_a_500(
    tus: TusClient, tus_app, backend, monkeypatch
):
    """An S3 answer no caller interprets (a 400 RequestTimeout when S3 stops waiting
    for the tail's body) is the object store failing: the PATCH is a 503 with S3's
    words, the offset stays where it was, and the client goes on."""
    from botocore.exceptions import ClientError

    client = tus_app.manager.store.client
    real_put = client.put_object
    refused = []

    def refusing_put(**kwargs):
        if kwargs["Key"].endswith(".part") and not refused:
            refused.append(kwargs["Key"])
            error = {"Code": "RequestTimeout", "Message": "Your socket connection timed out"}
            raise ClientError(
                {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, "PutObject"
            )
        return real_put(**kwargs)

    monkeypatch.setattr(client, "put_object", refusing_put)
    data = BIG
    uid = await tus.create_id(len(data), {"filename": "tail.bin"})
    r = await tus.patch(uid, 0, data[: 2 * MiB])  # under a part: kept as the tail
    assert r.code == 503 and refused, r.code
    assert "RequestTimeout" in r.body.decode() and "Traceback" not in r.body.decode()
    r = await tus.head(uid)
    assert r.code == 200 and r.headers["Upload-Offset"] == "0"
    r = await tus.patch(uid, 0, data)
    assert r.code == 204 and backend.landed("tail.bin") == data


@S3_ONLY
async def test_s3_failing_to_start_the_parts_keeps_the_bytes_acknowledged_before(
    tus: TusClient, tus_app, backend, monkeypatch
):
    """The first part of an upload starts its multipart upload: S3 refusing that
    (503) fails the PATCH, and the offset stays where the PATCH began (the tail a PATCH
    before it stored is still counted and kept), never goes back."""
    from jupyter_tus.store import StorageUnavailable

    store = tus_app.manager.store
    real_call = store._call
    refused = []

    def refusing_call(operation, **kwargs):
        if operation == "create_multipart_upload" and not refused:
            refused.append(operation)
            raise StorageUnavailable("the object store refused create_multipart_upload (500)")
        return real_call(operation, **kwargs)

    data = BIG * 2
    uid = await tus.create_id(len(data), {"filename": "started.bin"})
    r = await tus.patch(uid, 0, data[: 4 * MiB])  # under a part: the tail
    assert r.code == 204 and r.headers["Upload-Offset"] == str(4 * MiB)
    monkeypatch.setattr(store, "_call", refusing_call)
    r = await tus.patch(uid, 4 * MiB, data[4 * MiB : 8 * MiB])
    assert r.code == 503 and refused
    r = await tus.head(uid)
    assert r.code == 200 and r.headers["Upload-Offset"] == str(4 * MiB)
    r = await tus.patch(uid, 4 * MiB, data[4 * MiB :])
    assert r.code == 204 and backend.landed("started.bin") == data
