"""``GET {base_url}api/tus/uploads``: the server's own list of uploads, the one the
front ends show (not part of tus: tus clients never GET the creation URL); over each
store (tests/backends.py)."""

from __future__ import annotations

import json

from tests.backends import backend_server_config  # noqa: F401 (jp_server_config)

from .conftest import TUS


async def listing(tus, **params) -> list[dict]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    r = await tus.fetch(
        "api", "tus", "uploads", method="GET", headers=dict(TUS), params=params or None
    )
    assert r.code == 200 and r.headers["Content-Type"] == "application/json", query
    assert r.headers["Cache-Control"] == "no-store"
    return json.loads(r.body)["uploads"]


async def test_the_list_says_where_each_upload_stands(tus, jp_root_dir, jp_base_url, backend):
    half = await tus.create_id(10, {"filename": "half.csv", "path": "data"})
    assert (await tus.patch(half, 0, b"01234")).code == 204
    done = await tus.create_id(3, {"filename": "done.txt"})
    assert (await tus.patch(done, 0, b"abc")).code == 204
    gone = await tus.create_id(3, {"filename": "gone.txt"})
    assert (await tus.patch(gone, 0, b"xyz")).code == 204
    backend.delete("gone.txt")
    partial = await tus.create_id(2, headers={"Upload-Concat": "partial"})
    by_id = {u["id"]: u for u in await listing(tus)}
    assert partial not in by_id  # a piece of a parallel upload, not a file
    assert by_id[half] | {"created": None, "last_activity": None, "expires": None} == {
        "id": half,
        "url": f"{jp_base_url}api/tus/uploads/{half}",
        "filename": "half.csv",
        "destination": "data/half.csv",
        "size": 10,
        "offset": 5,
        "state": "uploading",
        "created": None,
        "last_activity": None,
        "expires": None,
        "landed_path": None,
        "message": None,
    }
    assert by_id[half]["created"].endswith("Z") and by_id[half]["expires"] > by_id[half]["created"]
    assert (by_id[done]["state"], by_id[done]["landed_path"]) == ("done", "done.txt")
    assert by_id[gone]["state"] == "gone" and by_id[gone]["landed_path"] is None
    assert "moved, deleted or changed" in by_id[gone]["message"]
    assert list(by_id) == [gone, done, half]  # newest first
    assert str(jp_root_dir) not in json.dumps(by_id)


async def test_finished_uploads_leave_the_list_after_a_while(tus):
    done = await tus.create_id(1, {"filename": "old.txt"})
    assert (await tus.patch(done, 0, b"x")).code == 204
    waiting = await tus.create_id(4, {"filename": "waiting.txt"})
    ids = [u["id"] for u in await listing(tus, finished_within=0)]
    assert ids == [waiting]
    assert {u["id"] for u in await listing(tus)} == {done, waiting}


async def test_the_list_can_hold_only_the_latest_finished_uploads(tus):
    finished = []
    for name in ("a.txt", "b.txt", "c.txt"):
        uid = await tus.create_id(1, {"filename": name})
        assert (await tus.patch(uid, 0, b"x")).code == 204
        finished.append(uid)
    waiting = await tus.create_id(4, {"filename": "waiting.txt"})
    # Every unfinished upload, and of the finished ones the latest (a panel showing a
    # few does not make the server describe a day of uploads).
    assert [u["id"] for u in await listing(tus, finished_limit=2)] == [
        waiting,
        finished[2],
        finished[1],
    ]
    assert [u["id"] for u in await listing(tus, finished_limit=0)] == [waiting]
    assert len(await listing(tus)) == 4
    r = await tus.fetch(
        "api",
        "tus",
        "uploads",
        method="GET",
        headers=dict(TUS),
        params={"finished_limit": "-1"},
        raise_error=False,
    )
    assert r.code == 400 and b"finished_limit" in r.body


async def test_a_refused_landing_is_listed_with_why(tus, backend):
    uid = await tus.create_id(2, {"filename": "x.bin", "path": "dest"})
    backend.put("dest", b"a file now")
    assert (await tus.patch(uid, 0, b"ab")).code == 403
    [upload] = await listing(tus)
    assert upload["state"] == "refused" and "is a file, not a folder" in upload["message"]


async def test_the_list_needs_read_permission(tus, jp_serverapp):
    r = await tus.fetch(
        "api",
        "tus",
        "uploads",
        method="GET",
        headers={**TUS, "Authorization": "token wrong"},
        raise_error=False,
    )
    assert r.code == 403
