"""The request path made cheap (issue 13, part 7), and what it must still promise.

- A creation whose body is the whole (small) upload is received first, then created,
  written, completed and landed in one worker-thread hop: nothing exists before its
  last byte, a wrong checksum leaves the upload waiting for the body, as before.
- After a PATCH that leaves the upload unfinished, its lock and open data file are kept
  for the same client's next PATCH (``UploadManager.park``): that PATCH writes on the
  same file; one at the wrong offset is refused; anyone else asking for the upload
  (HEAD, DELETE, another process) gets it.
- Bodies with a Content-Length are read into a reused buffer, or spliced from the
  socket into the file (``bodies``); the bytes land intact either way, and a pipe left
  holding bytes after a full disk is never used again.
- The store's file I/O never runs on the event loop: every record read, lock taken,
  file opened, created or landed is in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import os
import threading
from unittest import mock

import pytest

from jupyter_tus import bodies, filestore
from jupyter_tus.filestore import FileStore

from .conftest import OFFSET_TYPE, encode_metadata
from .servers import wait_until

PATH_HEADER = "Jupyter-Tus-Path"


def payload(n: int, seed: int = 1) -> bytes:
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


class RawRequest:
    """One HTTP/1.1 request written by hand on its own connection, so that a test can
    stop between its headers and its body, or in the middle of the body."""

    def __init__(self, port: int, method: str, path: str, headers: dict[str, str]) -> None:
        self.port, self.method, self.path, self.headers = port, method, path, headers

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = f"{self.method} {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        self.writer.write(head.encode() + b"\r\n")
        await self.writer.drain()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def status(self) -> int:
        line = await asyncio.wait_for(self.reader.readline(), 30)
        return int(line.split()[1])

    async def response(self) -> tuple[int, dict[str, str]]:
        status = await self.status()
        headers = {}
        while (line := await asyncio.wait_for(self.reader.readline(), 30)) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
def raw(jp_http_port, jp_base_url, jp_auth_header):
    def make(method: str, upload_id: str | None, headers: dict[str, str]) -> RawRequest:
        path = f"{jp_base_url}api/tus/uploads" + (f"/{upload_id}" if upload_id else "")
        return RawRequest(
            jp_http_port, method, path, {**jp_auth_header, "Tus-Resumable": "1.0.0", **headers}
        )

    return make


def manager(tus_app):
    return tus_app.manager


# ----------------------------------------------------------- a small file in one request


async def test_a_small_creation_with_its_whole_body_lands_and_says_where(tus, jp_root_dir):
    data = payload(10_000)
    r = await tus.create(len(data), {"filename": "small.bin", "path": "in/here"}, body=data)
    assert r.code == 201, r.body
    assert r.headers["Upload-Offset"] == str(len(data))
    assert r.headers[PATH_HEADER] == "in/here/small.bin"
    assert "Upload-Expires" not in r.headers
    assert (jp_root_dir / "in" / "here" / "small.bin").read_bytes() == data
    uid = r.headers["Location"].rsplit("/", 1)[-1]
    head = await tus.head(uid)
    assert head.code == 200 and head.headers["Upload-Offset"] == str(len(data))
    assert head.headers[PATH_HEADER] == "in/here/small.bin"


async def test_a_small_creation_exists_only_once_its_last_byte_arrived(
    raw, tus, jp_root_dir, staging
):
    data = payload(20_000)
    headers = {
        **OFFSET_TYPE,
        "Upload-Length": str(len(data)),
        "Upload-Metadata": encode_metadata({"filename": "late.bin"}),
        "Content-Length": str(len(data)),
        "Expect": "100-continue",  # answered once prepare() is done with the headers
    }
    req = raw("POST", None, headers)
    await req.open()
    assert await req.status() == 100
    await req.send(data[:5000])
    # the headers were taken in, part of the body too: still no upload anywhere
    assert (await tus.request("GET")).body == b'{"uploads": []}'
    assert not (jp_root_dir / "late.bin").exists()
    await req.send(data[5000:])
    await req.reader.readline()  # the empty line after the 100 Continue
    status, answer = await req.response()
    req.close()
    assert status == 201 and answer["upload-offset"] == str(len(data))
    assert (jp_root_dir / "late.bin").read_bytes() == data

    # a body cut short: nothing is created, then or later
    cut = raw(
        "POST", None, {**headers, "Upload-Metadata": encode_metadata({"filename": "cut.bin"})}
    )
    await cut.open()
    assert await cut.status() == 100
    await cut.send(data[:7000])
    cut.close()
    assert (await tus.create(0, {"filename": "after.bin"})).code == 201  # the server went on
    uploads = (await tus.request("GET")).body
    assert b"cut.bin" not in uploads and not (jp_root_dir / "cut.bin").exists()


async def test_a_whole_body_with_the_wrong_checksum_leaves_the_upload_waiting_for_it(tus):
    data = payload(3000)
    wrong = "sha256 " + base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    right = "sha256 " + base64.b64encode(hashlib.sha256(data).digest()).decode()
    r = await tus.create(
        len(data), {"filename": "sum.bin"}, headers={"Upload-Checksum": wrong}, body=data
    )
    assert r.code == 460, r.body
    uid = r.headers["Location"].rsplit("/", 1)[-1]
    head = await tus.head(uid)
    assert head.code == 200 and head.headers["Upload-Offset"] == "0"
    assert head.headers["Upload-Length"] == str(len(data))
    again = await tus.patch(uid, 0, data, headers={"Upload-Checksum": right})
    assert again.code == 204 and again.headers[PATH_HEADER] == "sum.bin"


# ----------------------------------------------------------- a PATCH keeps its file for the next


async def test_the_next_patch_writes_on_the_file_the_last_one_kept(tus, tus_app, jp_root_dir):
    data = payload(300_000)
    uid = await tus.create_id(len(data), {"filename": "kept.bin"})
    assert (await tus.patch(uid, 0, data[:100_000])).code == 204
    first = manager(tus_app)._parked[uid]
    assert (await tus.patch(uid, 100_000, data[100_000:200_000])).code == 204
    second = manager(tus_app)._parked[uid]
    assert second.kept.file is first.kept.file  # not opened again
    assert second.info.offset == 200_000
    r = await tus.patch(uid, 200_000, data[200_000:])
    assert r.code == 204 and r.headers[PATH_HEADER] == "kept.bin"
    assert uid not in manager(tus_app)._parked  # complete: nothing kept
    assert (jp_root_dir / "kept.bin").read_bytes() == data


async def test_a_patch_at_the_wrong_offset_after_a_kept_one_is_refused(tus, tus_app):
    data = payload(3000)
    uid = await tus.create_id(len(data), {"filename": "off.bin"})
    assert (await tus.patch(uid, 0, data[:1000])).code == 204
    assert uid in manager(tus_app)._parked
    r = await tus.patch(uid, 500, data[500:1500])
    assert r.code == 409, r.body
    assert (await tus.head(uid)).headers["Upload-Offset"] == "1000"
    r = await tus.patch(uid, 1000, data[1000:])
    assert r.code == 204 and r.headers["Upload-Offset"] == "3000"


async def test_a_checksummed_patch_after_a_kept_one_is_verified(tus, tus_app):
    data = payload(2000)
    uid = await tus.create_id(len(data), {"filename": "ck.bin"})
    assert (await tus.patch(uid, 0, data[:1000])).code == 204
    wrong = "sha256 " + base64.b64encode(hashlib.sha256(b"x").digest()).decode()
    r = await tus.patch(uid, 1000, data[1000:], headers={"Upload-Checksum": wrong})
    assert r.code == 460
    assert (await tus.head(uid)).headers["Upload-Offset"] == "1000"


async def test_a_kept_upload_is_given_up_to_anyone_who_asks(tus, tus_app, staging):
    data = payload(4000)
    uid = await tus.create_id(len(data), {"filename": "ask.bin"})
    assert (await tus.patch(uid, 0, data[:1000])).code == 204
    # another process (a kernel's store) waits for the lock, and gets it by itself
    other = FileStore(staging).lock(uid)
    assert not other.acquire(blocking=False)
    await asyncio.get_running_loop().run_in_executor(
        None, lambda: wait_until(lambda: other.acquire(blocking=False), what="the kept lock")
    )
    other.release()
    # a HEAD, then a DELETE, of this server take it over
    assert (await tus.patch(uid, 1000, data[1000:2000])).code == 204
    head = await tus.head(uid)
    assert head.code == 200 and head.headers["Upload-Offset"] == "2000"
    assert (await tus.patch(uid, 2000, data[2000:3000])).code == 204
    assert (await tus.request("DELETE", uid)).code == 204
    assert uid not in manager(tus_app)._parked
    assert not [p for p in os.listdir(staging) if p.startswith(uid)]


# ----------------------------------------------------------- bodies


@pytest.mark.parametrize(
    "tus_config", [{"durability": "never"}, {"durability": "always"}, {"durability": "complete"}]
)
async def test_bodies_land_intact_read_into_a_buffer_or_spliced(raw, tus, tus_config, jp_root_dir):
    data = payload(3 * 1024 * 1024 + 17)
    uid = await tus.create_id(len(data), {"filename": "body.bin"})
    cut = 2 * 1024 * 1024 + 5
    with mock.patch.object(os, "splice", wraps=os.splice) as splice:
        for start, end in ((0, cut), (cut, len(data))):
            req = raw(
                "PATCH",
                uid,
                {**OFFSET_TYPE, "Upload-Offset": str(start), "Content-Length": str(end - start)},
            )
            await req.open()
            for i in range(start, end, 256 * 1024):  # as a client sends: in pieces
                await req.send(data[i : min(end, i + 256 * 1024)])
            status, _ = await req.response()
            req.close()
            assert status == 204
    assert (jp_root_dir / "body.bin").read_bytes() == data
    spliced = sum(c.args[2] for c in splice.call_args_list if c.args[1] != c.args[0])
    if tus_config["durability"] != "complete" and bodies.SPLICE:
        assert spliced, "the bodies of a lone upload went through Python"
    else:  # with 'complete', a worker thread writes every piece
        assert not splice.called


@pytest.mark.parametrize("tus_config", [{"durability": "never"}])
async def test_a_pipe_left_with_bytes_by_a_full_disk_is_not_used_again(
    raw, tus, tus_config, jp_root_dir
):
    if not bodies.SPLICE:
        pytest.skip("no splice here")
    data = payload(2 * 1024 * 1024)
    uid = await tus.create_id(len(data), {"filename": "full.bin"})
    real = os.splice
    failed = []

    def splice(src, dst, count, *args, **kwargs):
        if (
            not failed
            and not os.path.isfile(f"/proc/self/fd/{src}")
            and os.path.isfile(f"/proc/self/fd/{dst}")
        ):  # the first pipe -> file: the disk is full
            failed.append(count)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, count, *args, **kwargs)

    with mock.patch.object(os, "splice", splice):
        req = raw(
            "PATCH", uid, {**OFFSET_TYPE, "Upload-Offset": "0", "Content-Length": str(len(data))}
        )
        await req.open()
        await req.send(data)
        status, _ = await req.response()
        req.close()
    assert failed and status == 507
    offset = int((await tus.head(uid)).headers["Upload-Offset"])
    # the bytes the pipe held when the write failed must never reach the file later
    r = await tus.patch(uid, offset, data[offset:])
    assert r.code == 204, r.body
    assert (jp_root_dir / "full.bin").read_bytes() == data


# ----------------------------------------------------------- off the event loop


class _WatchedOs:
    """``os`` for the store's modules, recording which of its file operations run on
    the event loop's thread. Closing a file, fstat of an open one and writing a body's
    piece inline are allowed there (see docs/architecture.md); opening, creating,
    reading records, stat by name, syncing, renaming, linking and removing are not."""

    WATCHED = (
        "open",
        "stat",
        "lstat",
        "fsync",
        "fdatasync",
        "replace",
        "rename",
        "link",
        "unlink",
        "mkdir",
        "statvfs",
        "readlink",
        "access",
        "scandir",
        "listdir",
    )

    def __init__(self, real, loop_thread: int, calls: list[str]) -> None:
        self._real, self._loop, self._calls = real, loop_thread, calls
        self.path = _WatchedPath(real.path, loop_thread, calls)

    def __getattr__(self, name):
        value = getattr(self._real, name)
        if name not in self.WATCHED:
            return value

        def wrapped(*args, **kwargs):
            if threading.get_ident() == self._loop:
                self._calls.append(f"os.{name}{args[:1]}")
            return value(*args, **kwargs)

        return wrapped


class _WatchedPath:
    def __init__(self, real, loop_thread: int, calls: list[str]) -> None:
        self._real, self._loop, self._calls = real, loop_thread, calls

    def __getattr__(self, name):
        value = getattr(self._real, name)
        if name not in ("exists", "lexists", "isdir", "isfile", "islink", "realpath"):
            return value

        def wrapped(*args, **kwargs):
            if threading.get_ident() == self._loop:
                self._calls.append(f"os.path.{name}{args[:1]}")
            return value(*args, **kwargs)

        return wrapped


@pytest.fixture
def loop_io(tus_app, monkeypatch) -> list[str]:
    """The file operations of the store (and of the workspace it lands into) made on
    the event loop's thread: there must be none, so that a slow disk or a network
    filesystem never holds every other request up."""
    from jupyter_tus import workspace

    calls: list[str] = []
    loop_thread = threading.get_ident()
    for module in (filestore, workspace):
        monkeypatch.setattr(module, "os", _WatchedOs(os, loop_thread, calls))
    real_open = open

    def watched_open(*args, **kwargs):
        if threading.get_ident() == loop_thread:
            calls.append(f"open{args[:1]}")
        return real_open(*args, **kwargs)

    monkeypatch.setattr(filestore, "open", watched_open, raising=False)
    return calls


async def test_no_file_io_of_the_store_on_the_event_loop(tus, loop_io, jp_root_dir):
    data = payload(50_000)
    r = await tus.create(len(data), {"filename": "whole.bin"}, body=data)  # in one go
    assert r.code == 201
    uid = await tus.create_id(len(data), {"filename": "parts.bin"})
    for start in range(0, len(data), 10_000):  # the first PATCH, then kept ones
        assert (await tus.patch(uid, start, data[start : start + 10_000])).code == 204
    r = await tus.create(len(data), {"filename": "begun.bin"}, body=data[:1000])
    other = r.headers["Location"].rsplit("/", 1)[-1]
    assert (await tus.head(other)).code == 200
    assert (await tus.request("GET", uid)).body == data
    assert (await tus.request("DELETE", other)).code == 204
    assert (await tus.create(0, {"filename": "empty.bin"})).code == 201
    parts = []
    for piece in (data[:20_000], data[20_000:]):  # a parallel upload: partials, then final
        part = await tus.create_id(len(piece), headers={"Upload-Concat": "partial"})
        assert (await tus.patch(part, 0, piece)).code == 204
        parts.append(tus.base_url + "api/tus/uploads/" + part)
    final = {"Upload-Concat": "final;" + " ".join(parts)}
    r = await tus.create(None, {"filename": "joined.bin"}, headers=final)
    assert r.code == 201 and r.headers[PATH_HEADER] == "joined.bin"
    assert (await tus.request("GET")).code == 200  # the listing
    assert (jp_root_dir / "parts.bin").read_bytes() == data
    assert (jp_root_dir / "joined.bin").read_bytes() == data
    assert loop_io == [], loop_io
