"""Regression tests for the core bugs the reliability tests found."""

from __future__ import annotations

import io
import os

import pytest

from jupyter_tus import filestore as fs
from jupyter_tus.store import FileInfo, UploadNotFound


async def test_deferred_length_declared_after_the_last_byte_completes(tus, jp_root_dir):
    # Found by the crash torture: a kill swallowed the answer of the last PATCH of a
    # deferred-length upload; the client's retry (empty body, Upload-Length) got 403.
    uid = await tus.create_id(None, {"filename": "late.bin"})
    r = await tus.patch(uid, 0, b"abcdef")
    assert r.code == 204 and r.headers["Upload-Offset"] == "6"
    r = await tus.patch(uid, 6, b"", headers={"Upload-Length": "6"})
    assert r.code == 204, r.body
    assert r.headers["Upload-Offset"] == "6"
    assert (jp_root_dir / "late.bin").read_bytes() == b"abcdef"
    r = await tus.head(uid)
    assert r.headers["Upload-Length"] == "6"


async def test_declaring_a_length_at_a_wrong_offset_is_409(tus):
    uid = await tus.create_id(None, {"filename": "late2.bin"})
    assert (await tus.patch(uid, 0, b"abc")).code == 204
    r = await tus.patch(uid, 2, b"", headers={"Upload-Length": "3"})
    assert r.code == 409


def test_concatenation_survives_a_failing_copy_file_range(tmp_path, monkeypatch):
    # Found by fault injection: copy_file_range failing after copying part of a file
    # fell back to a block copy from the start without rewinding the destination,
    # so the landed file held some bytes twice.
    store = fs.FileStore(tmp_path / ".tus")
    parts, data = [], os.urandom(200_000)
    for a, b in ((0, 70_000), (70_000, 200_000)):
        pid = store.new_upload(FileInfo(size=b - a, is_partial=True))
        with store.lock(pid):
            store.write_chunk(pid, 0, io.BytesIO(data[a:b]))
        parts.append(pid)
    final = store.new_upload(
        FileInfo(size=len(data), is_final=True, partial_uploads=parts, path=str(tmp_path / "f"))
    )
    real = os.copy_file_range
    calls = []

    class OS:
        def __getattr__(self, name):
            return getattr(os, name)

        def copy_file_range(self, src, dst, count):
            calls.append(count)
            if len(calls) == 2:  # after the first partial was copied in full
                raise OSError(18, "EXDEV")
            return real(src, dst, count)

    monkeypatch.setattr(fs, "os", OS())
    with store.lock(final):
        store.concat_uploads(final, parts)
    assert (tmp_path / "f").read_bytes() == data


async def test_overlong_names_are_refused_not_500(tus):
    # Found by the fuzz tests: a 300-byte folder name made resolve() raise
    # ENAMETOOLONG from a stat, answered as 500 with a traceback.
    r = await tus.create(3, {"filename": "ok.txt", "path": "x" * 300})
    assert r.code == 403, r.body
    r = await tus.create(3, {"filename": "y" * 256})
    assert r.code == 403, r.body
    r = await tus.create(3, {"filename": "ok.txt", "path": "/".join(["z" * 200] * 25)})
    assert r.code == 403, r.body


def test_method_override_on_a_head_request_is_ignored(server_process):
    # Found by the fuzz tests: a HEAD request overridden to PATCH was answered with
    # an error body the HEAD could not carry (a traceback in the server log).
    import requests

    r = requests.head(
        server_process.endpoint + "/" + "A" * 32,
        headers={
            **server_process.auth,
            "Tus-Resumable": "1.0.0",
            "X-HTTP-Method-Override": "PATCH",
            "Content-Type": "text/plain",
        },
        timeout=10,
    )
    assert r.status_code == 404
    assert "Traceback" not in server_process.log()


def test_method_override_to_head_is_ignored(server_process):
    import requests

    r = requests.patch(
        server_process.endpoint + "/%B7%F7",
        headers={**server_process.auth, "Tus-Resumable": "1.0.0", "X-HTTP-Method-Override": "HEAD"},
        timeout=10,
    )
    assert r.status_code in (400, 404, 415)
    assert "Traceback" not in server_process.log()


def test_a_termination_cut_short_leaves_no_upload_behind(tmp_path, monkeypatch):
    # Found by the crash torture: a kill between the two unlinks of a DELETE left the
    # record without its data; HEAD answered 200 and every PATCH then failed with 500.
    # The bytes go first now (the store never leaves bytes it cannot name): what is
    # left is a record without data, which a PATCH answers with 404 and recovery drops.
    store = fs.FileStore(tmp_path / ".tus")
    uid = store.new_upload(FileInfo(size=10, path=str(tmp_path / "doomed.bin")))
    real_unlink, removed = fs.Path.unlink, []

    def unlink_once(self, missing_ok=False):
        if removed:
            raise KeyboardInterrupt("killed between two unlinks")
        removed.append(self.name)
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(fs.Path, "unlink", unlink_once)
    with store.lock(uid), pytest.raises(KeyboardInterrupt):
        store.terminate(uid)
    monkeypatch.undo()
    assert removed == [uid]
    with store.lock(uid), pytest.raises(UploadNotFound, match="gone"):
        store.write_chunk(uid, 0, io.BytesIO(b"x"))
    report = fs.FileStore(tmp_path / ".tus").recover()
    assert report == [f"removed {uid}, whose data file was gone"]
    assert sorted(p.name for p in (tmp_path / ".tus").iterdir()) == [".jupyter-tus-store"]


async def test_an_upload_whose_bytes_are_gone_answers_404_then_is_recovered(tus, staging):
    uid = await tus.create_id(10, {"filename": "gone.bin"})
    (staging / uid).unlink()
    r = await tus.patch(uid, 0, b"0123456789")
    assert r.code == 404, r.body
    assert b"gone" in r.body
    assert fs.FileStore(staging).recover() == [f"removed {uid}, whose data file was gone"]
    assert (await tus.head(uid)).code == 404
