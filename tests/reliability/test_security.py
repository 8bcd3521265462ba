"""Security review, as tests: every handler and method without credentials, with a
wrong token, with a cookie but no XSRF token; ids of >=128 random bits from secrets;
GET refuses a partial upload; error messages never leak server paths."""

from __future__ import annotations

import base64
import hashlib
import io
import re

import pytest
import requests

from jupyter_tus import filestore as fs
from jupyter_tus.store import FileInfo

from .helpers import TUS, Client, encode_metadata, server

ROUTES = [("creation", "OPTIONS"), ("creation", "POST")] + [
    ("upload", m) for m in ("OPTIONS", "HEAD", "PATCH", "DELETE", "GET")
]
UNSAFE = {"POST", "PATCH", "DELETE"}


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    base = tmp_path_factory.mktemp("sec")
    root = base / "root"
    root.mkdir()
    proc = server(root)
    proc.start()
    c = Client(proc)
    uid = c.create_id(1000, {"filename": "victim.bin"})
    assert c.patch(uid, 0, b"v" * 10).status_code == 204
    # a browser's session: log in with the token, keep the cookies (and _xsrf)
    s = requests.Session()
    s.get(proc.url + "login", timeout=10)
    r = s.post(
        proc.url + "login",
        data={"password": proc.token, "_xsrf": s.cookies.get("_xsrf")},
        timeout=10,
        allow_redirects=False,
    )
    assert r.status_code in (302, 303), r.status_code
    yield proc, c, uid, s, base
    proc.stop()


def snapshot(root):
    staging = root / ".tus"
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in staging.iterdir()
        if not p.name.endswith(".lock")
    } | {"workspace": sorted(p.name for p in root.iterdir())}


def send(proc, uid, route, method, headers, session=None, params=None):
    url = proc.endpoint if route == "creation" else f"{proc.endpoint}/{uid}"
    h = {
        **TUS,
        "Upload-Length": "5",
        "Upload-Metadata": encode_metadata({"filename": "intruder.txt"}),
        "Upload-Offset": "10",
        "Content-Type": "application/offset+octet-stream",
        **headers,
    }
    body = b"hello" if method in ("POST", "PATCH") else None
    return (session or requests).request(
        method, url, headers=h, data=body, params=params, timeout=10, allow_redirects=False
    )


# (reads need no XSRF token: the cookie suffices for OPTIONS/HEAD/GET)
CASES = [
    (who, route, method)
    for who in ("nobody", "wrong-token", "wrong-query-token", "cookie-no-xsrf")
    for route, method in ROUTES
    if who != "cookie-no-xsrf" or method in UNSAFE
]


@pytest.mark.parametrize(("who", "route", "method"), CASES)
def test_refused_without_valid_credentials(secured, who, route, method):
    proc, _c, uid, session, base = secured
    before = snapshot(proc.root_dir)
    if who == "cookie-no-xsrf":
        r = send(proc, uid, route, method, {}, session=session)
    elif who == "nobody":
        r = send(proc, uid, route, method, {})
    elif who == "wrong-token":
        r = send(proc, uid, route, method, {"Authorization": "token " + "0" * 32})
    else:
        r = send(proc, uid, route, method, {}, params={"token": "0" * 32})
    assert r.status_code in (401, 403), (r.status_code, r.text[:200])
    assert "Traceback" not in r.text
    assert str(base) not in r.text
    assert snapshot(proc.root_dir) == before


def test_cookie_with_xsrf_is_allowed(secured):
    """The control: the same browser session with its X-XSRFToken header is let in."""
    proc, _c, uid, session, _base = secured
    r = send(
        proc,
        uid,
        "creation",
        "POST",
        {"X-XSRFToken": session.cookies.get("_xsrf")},
        session=session,
    )
    assert r.status_code == 201, r.text
    r = session.head(f"{proc.endpoint}/{uid}", headers=TUS, timeout=10)
    assert r.status_code == 200


def test_ids_have_at_least_128_bits_from_secrets(tmp_path, monkeypatch):
    store = fs.FileStore(tmp_path)
    calls = []
    real = fs.secrets.token_urlsafe

    def spy(n):
        calls.append(n)
        return real(n)

    monkeypatch.setattr(fs.secrets, "token_urlsafe", spy)
    ids = {store.new_upload(FileInfo(size=1)) for _ in range(300)}
    assert len(ids) == 300 and len(calls) == 300
    assert all(n >= 16 for n in calls)
    for uid in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", uid)
        raw = base64.urlsafe_b64decode(uid + "=" * (-len(uid) % 4))
        assert len(raw) * 8 >= 128


def test_get_refuses_a_partial_upload(secured):
    """Documented choice: GET on an unfinished upload answers 400 'not complete: X of Y
    bytes'; it never streams a partial file."""
    _proc, c, uid, _session, _base = secured
    r = c.request("GET", uid)
    assert r.status_code == 400
    assert "not complete: 10 of 1000 bytes" in r.json()["message"]
    assert not r.content.startswith(b"vvvv")


def test_error_messages_never_leak_paths(secured, tmp_path):
    proc, c, uid, _session, base = secured
    root = proc.root_dir
    outside = base / "outside-secret"
    outside.mkdir(exist_ok=True)
    link = root / "escape"
    if not link.exists():
        link.symlink_to(outside)
    (root / "taken.txt").write_text("x")
    cases = [
        c.create(5, {"filename": "a.txt", "path": "escape"}),
        c.create(5, {"filename": "a.txt", "path": "../.."}),
        c.create(5, {"filename": "a.txt", "path": "/etc"}),
        c.create(5, {"filename": "escape"}),
        c.create(5, {"filename": "taken.txt"}),
        c.create(5, {"filename": ".hidden"}),
        c.create(10**15, {"filename": "huge.bin"}),
        c.head("nope" * 8),
        c.patch(uid, 3, b"x"),
        c.request("GET", uid),
    ]
    for r in cases:
        assert 400 <= r.status_code < 500 or r.status_code == 507, (r.status_code, r.text)
        assert str(base) not in r.text and "outside-secret" not in r.text, r.text
        assert "Traceback" not in r.text
    assert not any(outside.iterdir())


def test_upload_into_a_symlinked_folder_pointing_out_is_refused(secured):
    proc, c, _uid, _session, base = secured
    outside = base / "outside2"
    outside.mkdir(exist_ok=True)
    (proc.root_dir / "sub2").mkdir(exist_ok=True)
    link = proc.root_dir / "sub2" / "out"
    if not link.exists():
        link.symlink_to(outside)
    r = c.create(5, {"filename": "x.txt", "path": "sub2/out"}, data=io.BytesIO(b"12345"))
    assert r.status_code == 403, r.text
    assert not any(outside.iterdir())
