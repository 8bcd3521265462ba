"""Authentication, authorization and XSRF are jupyter-server's own."""

from __future__ import annotations

import pytest
import requests

from .conftest import OFFSET_TYPE

METHODS = ["OPTIONS", "POST", "HEAD", "PATCH", "DELETE", "GET"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("authorization", ["", "token wrong-token"])
async def test_unauthenticated_requests_are_refused(tus, staging, method, authorization):
    uid = await tus.create_id(10)
    before = sorted(p.name for p in staging.iterdir())
    headers = {
        "Authorization": authorization,
        "Upload-Length": "10",
        "Upload-Offset": "0",
        **OFFSET_TYPE,
    }
    target = None if method in ("OPTIONS", "POST") else uid
    body = b"0123456789" if method in ("POST", "PATCH") else None
    r = await tus.request(method, target, headers=headers, body=body)
    assert r.code in (401, 403)
    assert sorted(p.name for p in staging.iterdir()) == before
    assert (await tus.head(uid)).headers["Upload-Offset"] == "0"


async def test_authorizer_is_asked(tus, jp_serverapp):
    from jupyter_server.auth import Authorizer

    class ReadOnly(Authorizer):
        def is_authorized(self, handler, user, action, resource):
            assert resource == "contents"
            return action == "read"

    jp_serverapp.web_app.settings["authorizer"] = ReadOnly(parent=jp_serverapp)
    r = await tus.create(10, {"filename": "no.txt"})
    assert r.code == 403
    assert (await tus.request("OPTIONS")).code == 204


def test_cookie_needs_xsrf(server_process):
    session = requests.Session()
    assert session.get(f"{server_process.url}?token={server_process.token}").status_code == 200
    assert "_xsrf" in session.cookies
    headers = {"Tus-Resumable": "1.0.0", "Upload-Length": "3"}
    r = session.post(server_process.endpoint, headers=headers)
    assert r.status_code == 403
    r = session.post(server_process.endpoint, headers={**headers, "X-XSRFToken": "2|forged|0|x"})
    assert r.status_code == 403
    assert [p.name for p in (server_process.root_dir / ".tus").iterdir()] == [".jupyter-tus-store"]
    r = session.post(
        server_process.endpoint, headers={**headers, "X-XSRFToken": session.cookies["_xsrf"]}
    )
    assert r.status_code == 201
