"""jupyter-server's authorizer decides every tus request, per action: resource
``contents``, ``read`` for OPTIONS/HEAD/GET, ``write`` for POST/PATCH/DELETE (also when
``X-HTTP-Method-Override`` names the verb), on both routes.

One table of requests, run under three authorizers configured as jupyter-server
configures one (``ServerApp.authorizer_class``):

- ``allow_all`` allows everything: every request gets its normal status and its effect
  (the file lands, the upload goes). This shows the requests themselves are valid, so
  a 403 below is the authorizer's doing.
- ``read_only`` allows ``read`` on ``contents`` only: reads as with ``allow_all``,
  writes 403 and change nothing.
- ``deny_all`` refuses everything: 403 and nothing changes.

A method a route lacks (HEAD on the creation route, POST on an upload) is asked of the
authorizer like any other, and answered 405 whatever it says (tornado's default verb
method answers before the kept refusal is raised).

The uploads acted on are made in the store directly (``tus_app.manager.store``), not
over HTTP: the same set-up under every authorizer, asking the authorizer nothing.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from jupyter_server.auth import Authorizer
from tornado.web import RequestHandler

from jupyter_tus import FileInfo
from jupyter_tus.handlers import UploadHandler, UploadsHandler
from jupyter_tus.store import UploadNotFound

from .conftest import OFFSET_TYPE, encode_metadata


class RecordingAuthorizer(Authorizer):
    """Allows the actions in ``allowed`` on ``contents``; remembers what it was asked."""

    allowed: frozenset[str] = frozenset()

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.asked: list[tuple[str, str]] = []

    def is_authorized(self, handler, user, action, resource) -> bool:
        self.asked.append((action, resource))
        return resource == "contents" and action in self.allowed


class AllowAll(RecordingAuthorizer):
    allowed = frozenset({"read", "write"})


class ReadOnly(RecordingAuthorizer):
    allowed = frozenset({"read"})


class DenyAll(RecordingAuthorizer):
    allowed = frozenset()


AUTHORIZERS = {"allow_all": AllowAll, "read_only": ReadOnly, "deny_all": DenyAll}


@dataclass
class Uploads:
    root: Path
    staging: Path
    store: object
    partial: str  # 5 of 10 bytes, would land as partial.txt
    done: str  # complete, landed as done.txt

    def snapshot(self) -> dict:
        """Everything a write could change: the staging files and the root's files."""
        files = {
            str(p.relative_to(self.root)): p.stat().st_size
            for p in self.root.rglob("*")
            if p.is_file()
        }
        return {"files": files, "partial": self.store.get_info(self.partial).offset}


@pytest.fixture
def authorizer(request) -> str:
    return request.param


@pytest.fixture
def jp_server_config(authorizer):
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_tus": True},
            "authorizer_class": AUTHORIZERS[authorizer],
        },
        "TusApp": {},
    }


@pytest.fixture
def uploads(tus_app, jp_root_dir, staging) -> Uploads:
    store = tus_app.manager.store

    def make(name: str, size: int, data: bytes) -> str:
        info = FileInfo(size=size, metadata={"filename": name}, path=str(jp_root_dir / name))
        upload_id = store.new_upload(info)
        store.write_chunk(upload_id, 0, io.BytesIO(data))
        return upload_id

    made = Uploads(
        jp_root_dir,
        staging,
        store,
        partial=make("partial.txt", 10, b"01234"),
        done=make("done.txt", 3, b"abc"),
    )
    assert (jp_root_dir / "done.txt").read_bytes() == b"abc"
    assert not (jp_root_dir / "partial.txt").exists()
    return made


def landed(name: str, data: bytes):
    def check(u: Uploads, r) -> None:
        assert (u.root / name).read_bytes() == data

    return check


def terminated(u: Uploads, r) -> None:
    with pytest.raises(UploadNotFound):
        u.store.get_info(u.partial)


def nothing(u: Uploads, r) -> None:
    pass


def head_offset(u: Uploads, r) -> None:
    assert r.headers["Upload-Offset"] == "5"


def body_abc(u: Uploads, r) -> None:
    assert r.body == b"abc"


def lists_partial(u: Uploads, r) -> None:
    assert u.partial in {upload["id"] for upload in json.loads(r.body)["uploads"]}


def tus_options(u: Uploads, r) -> None:
    assert "termination" in r.headers["Tus-Extension"]


PATCH_REST = {**OFFSET_TYPE, "Upload-Offset": "5"}
CREATE = {
    **OFFSET_TYPE,
    "Upload-Length": "4",
    "Upload-Metadata": encode_metadata({"filename": "posted.txt"}),
}


@dataclass
class Row:
    method: str
    target: str | None  # None: the creation route; else "partial" or "done"
    action: str
    status: int | None  # with an authorizer that allows it; None: the route lacks it
    effect: object  # checks the answer and what it changed, when allowed
    headers: dict | None = None
    body: bytes | None = None

    def route_has_method(self) -> bool:
        """Whether the route's handler has the method (after X-HTTP-Method-Override)."""
        handler = UploadsHandler if self.target is None else UploadHandler
        verb = (self.headers or {}).get("X-HTTP-Method-Override", self.method).lower()
        return getattr(handler, verb) is not getattr(RequestHandler, verb)


ROWS = {
    "OPTIONS creation": Row("OPTIONS", None, "read", 204, tus_options),
    "HEAD creation": Row("HEAD", None, "read", None, nothing),
    "GET creation": Row("GET", None, "read", 200, lists_partial),
    "POST creation": Row(
        "POST", None, "write", 201, landed("posted.txt", b"new!"), CREATE, b"new!"
    ),
    "PATCH creation": Row("PATCH", None, "write", None, nothing, PATCH_REST, b"56789"),
    "DELETE creation": Row("DELETE", None, "write", None, nothing),
    "OPTIONS upload": Row("OPTIONS", "partial", "read", 204, tus_options),
    "HEAD upload": Row("HEAD", "partial", "read", 200, head_offset),
    "GET upload": Row("GET", "done", "read", 200, body_abc),
    "POST upload": Row("POST", "partial", "write", None, nothing, PATCH_REST, b"56789"),
    "PATCH upload": Row(
        "PATCH", "partial", "write", 204, landed("partial.txt", b"0123456789"), PATCH_REST, b"56789"
    ),
    "DELETE upload": Row("DELETE", "partial", "write", 204, terminated),
    "POST as PATCH": Row(
        "POST",
        "partial",
        "write",
        204,
        landed("partial.txt", b"0123456789"),
        {**PATCH_REST, "X-HTTP-Method-Override": "PATCH"},
        b"56789",
    ),
    "GET as DELETE": Row(
        "GET", "partial", "write", 204, terminated, {"X-HTTP-Method-Override": "DELETE"}
    ),
}


@pytest.mark.parametrize("authorizer", list(AUTHORIZERS), indirect=True)
@pytest.mark.parametrize("row", list(ROWS))
async def test_authorizer_decides_each_action(authorizer, row, tus, uploads, jp_serverapp):
    spec = ROWS[row]
    asked = jp_serverapp.authorizer.asked
    allowed = spec.action in AUTHORIZERS[authorizer].allowed
    before = uploads.snapshot()
    target = None if spec.target is None else getattr(uploads, spec.target)
    asked.clear()

    r = await tus.request(spec.method, target, headers=spec.headers, body=spec.body)

    if not spec.route_has_method():
        assert r.code == 405, r.body
        assert uploads.snapshot() == before
    elif allowed:
        assert spec.status is not None, f"{row}: the route has this method now; say its status"
        assert r.code == spec.status, r.body
        spec.effect(uploads, r)
    else:
        assert r.code == 403, r.body
        assert uploads.snapshot() == before  # the upload still there, as it was
        assert "Tus-Extension" not in r.headers and "Location" not in r.headers
    assert set(asked) == {(spec.action, "contents")}, asked
