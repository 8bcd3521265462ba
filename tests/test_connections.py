"""What happens to the bytes when connections drop, stall or race."""

from __future__ import annotations

import asyncio
import time

import pytest

from .conftest import OFFSET_TYPE

CHUNK = 256 * 1024


class RawPatch:
    """A PATCH sent by hand over a socket, so a test can stop midway."""

    def __init__(self, port: int, path: str, auth: dict, offset: int, length: int) -> None:
        self.port, self.path, self.auth = port, path, auth
        self.offset, self.length = offset, length

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        headers = {
            **self.auth,
            **OFFSET_TYPE,
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": str(self.offset),
            "Content-Length": str(self.length),
            "Host": f"127.0.0.1:{self.port}",
        }
        head = f"PATCH {self.path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        self.writer.write(head.encode() + b"\r\n")
        await self.writer.drain()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response_status(self) -> int:
        line = await asyncio.wait_for(self.reader.readline(), 30)
        return int(line.split()[1])

    def close(self) -> None:
        self.writer.close()


async def wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
def raw_patch(jp_http_port, jp_base_url, jp_auth_header):
    def make(upload_id: str, offset: int, length: int) -> RawPatch:
        return RawPatch(
            jp_http_port,
            f"{jp_base_url}api/tus/uploads/{upload_id}",
            jp_auth_header,
            offset,
            length,
        )

    return make


async def test_dropped_connection_keeps_bytes(tus, raw_patch, staging, jp_root_dir):
    data = bytes(range(256)) * (4 * CHUNK // 256)
    uid = await tus.create_id(len(data), {"filename": "dropped.bin"})
    patch = raw_patch(uid, 0, len(data))
    await patch.open()
    await patch.send(data[: 2 * CHUNK])
    await wait_for(lambda: (staging / uid).stat().st_size == 2 * CHUNK)
    patch.close()
    r = await tus.head(uid)
    assert r.headers["Upload-Offset"] == str(2 * CHUNK)
    r = await tus.patch(uid, 2 * CHUNK, data[2 * CHUNK :])
    assert r.code == 204
    assert (jp_root_dir / "dropped.bin").read_bytes() == data


async def test_stalled_patch_is_taken_over(tus, raw_patch, staging, jp_root_dir):
    data = bytes(range(256)) * (4 * CHUNK // 256)
    uid = await tus.create_id(len(data), {"filename": "stalled.bin"})
    stale = raw_patch(uid, 0, len(data))
    await stale.open()
    await stale.send(data[:CHUNK])
    await wait_for(lambda: (staging / uid).stat().st_size == CHUNK)
    # The first client goes quiet without closing; a second client comes back. Its
    # HEAD is answered because the stale PATCH let go when asked: waiting would give a
    # 423 after lock_wait (20 s), well before idle_timeout (60 s) ends the stale PATCH.
    r = await tus.head(uid)
    assert r.code == 200
    assert r.headers["Upload-Offset"] == str(CHUNK)
    r = await tus.patch(uid, CHUNK, data[CHUNK:])
    assert r.code == 204
    assert (jp_root_dir / "stalled.bin").read_bytes() == data
    # The stale connection was closed by the server.
    assert await asyncio.wait_for(stale.reader.read(), 10) == b""


async def test_concurrent_patches_never_interleave(tus, raw_patch, staging):
    a = b"A" * (4 * CHUNK)
    b = b"B" * (4 * CHUNK)
    uid = await tus.create_id(len(a))
    first = raw_patch(uid, 0, len(a))
    await first.open()
    await first.send(a[: 2 * CHUNK])
    await wait_for(lambda: (staging / uid).stat().st_size == 2 * CHUNK)
    second = await tus.patch(uid, 0, b)
    # The newcomer took the lock from the first writer, then found the offset moved.
    assert second.code == 409
    stored = (staging / uid).read_bytes()
    assert stored == a[: len(stored)]
    r = await tus.head(uid)
    assert r.headers["Upload-Offset"] == str(len(stored))


@pytest.mark.parametrize("tus_config", [{"idle_timeout": 0.5}])
async def test_idle_patch_is_ended(tus, raw_patch, staging, tus_config):
    uid = await tus.create_id(4 * CHUNK)
    quiet = raw_patch(uid, 0, 4 * CHUNK)
    await quiet.open()
    await quiet.send(b"x" * CHUNK)
    # The server closes the connection once nothing arrived for idle_timeout.
    assert await asyncio.wait_for(quiet.reader.read(), 10) == b""
    r = await tus.head(uid)
    assert r.headers["Upload-Offset"] == str(CHUNK)


@pytest.mark.parametrize("tus_config", [{"drain_limit": 4 * 1024 * 1024}])
async def test_refusal_drains_body_then_answers(tus, raw_patch, tus_config):
    uid = await tus.create_id(10)
    body = 3 * 1024 * 1024
    patch = raw_patch(uid, 5, body)  # wrong offset and too long: refused before the body
    await patch.open()
    await patch.send(b"z" * body)
    assert await patch.response_status() in (409, 413)
    assert (await tus.head(uid)).headers["Upload-Offset"] == "0"


@pytest.mark.parametrize("tus_config", [{"drain_limit": 1024 * 1024}])
async def test_refusal_of_a_huge_body_is_answered_and_closed(tus, raw_patch, tus_config):
    uid = await tus.create_id(10)
    patch = raw_patch(uid, 5, 64 * 1024 * 1024)
    await patch.open()
    await patch.send(b"z" * 64 * 1024)
    assert await patch.response_status() == 409


@pytest.mark.parametrize("tus_config", [{"drain_limit": 1024 * 1024}])
async def test_early_answer_says_connection_close(tus, raw_patch, tus_config):
    uid = await tus.create_id(10)
    patch = raw_patch(uid, 5, 64 * 1024 * 1024)
    await patch.open()
    head = await asyncio.wait_for(patch.reader.readuntil(b"\r\n\r\n"), 30)
    assert head.startswith(b"HTTP/1.1 409")
    assert b"\r\nConnection: close\r\n" in head


async def test_a_failing_abort_still_lets_go_of_the_lock(
    tus, tus_app, raw_patch, staging, jp_root_dir, monkeypatch
):
    """Keeping what a dropped PATCH brought can fail (a record it cannot rewrite, an
    I/O error): the lock is released all the same, so the client resumes at once
    instead of finding its upload locked until the server restarts."""
    from jupyter_tus.filestore import FileChunkWriter

    real_abort, failed = FileChunkWriter.abort, []

    def failing_abort(self):
        info = real_abort(self)
        if not failed:
            failed.append(self.info.id)
            raise OSError(5, "Input/output error")
        return info

    monkeypatch.setattr(FileChunkWriter, "abort", failing_abort)
    monkeypatch.setattr(tus_app.manager, "lock_wait", 2.0)  # a leaked lock: 423 quickly
    data = bytes(range(256)) * (4 * CHUNK // 256)
    uid = await tus.create_id(len(data), {"filename": "abort.bin"})
    patch = raw_patch(uid, 0, len(data))
    await patch.open()
    await patch.send(data[: 2 * CHUNK])
    await wait_for(lambda: (staging / uid).stat().st_size == 2 * CHUNK)
    patch.close()
    await wait_for(lambda: failed)
    r = await tus.head(uid)
    assert r.code == 200 and r.headers["Upload-Offset"] == str(2 * CHUNK)
    r = await tus.patch(uid, 2 * CHUNK, data[2 * CHUNK :])
    assert r.code == 204
    assert (jp_root_dir / "abort.bin").read_bytes() == data
