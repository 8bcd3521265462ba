"""Cross-origin use: the tus routes follow jupyter-server's own CORS settings.

A browser asks first (a preflight: OPTIONS with ``Origin`` and
``Access-Control-Request-Method``, never credentials), then reads an answer only if it
carries a matching ``Access-Control-Allow-Origin``, and reads only the headers listed in
``Access-Control-Expose-Headers``. The lists below are the tus ones, written out here
(not imported) so that a header dropped from the code fails these tests.
"""

from __future__ import annotations

import pytest
from jupyter_server.utils import url_path_join

from .conftest import OFFSET_TYPE

ALLOWED = "http://page.example:8123"
REFUSED = "http://elsewhere.example:8123"

SETTINGS = {
    "allow_origin": {"allow_origin": ALLOWED},
    "allow_origin_pat": {"allow_origin_pat": r"http://page\.example(:\d+)?"},
    # A login required everywhere: preflights still carry no credentials.
    "allow_origin, no unauthenticated access": {
        "allow_origin": ALLOWED,
        "allow_unauthenticated_access": False,
    },
    # The older way, headers on every answer; its own Allow-Headers add to the tus ones.
    "tornado_settings headers": {
        "tornado_settings": {
            "headers": {
                "Access-Control-Allow-Origin": ALLOWED,
                "Access-Control-Allow-Headers": "X-Request-Id",
            }
        }
    },
    "none": {},
}
ALLOWING = [s for s in SETTINGS if s != "none"]

TUS_REQUEST_HEADERS = [
    "Tus-Resumable",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Offset",
    "Upload-Concat",
    "Upload-Checksum",
    "X-HTTP-Method-Override",
    "Content-Type",
    "Authorization",
    "X-XSRFToken",
    "X-Requested-With",
]
TUS_METHODS = ["POST", "GET", "HEAD", "PATCH", "DELETE", "OPTIONS"]
TUS_RESPONSE_HEADERS = [
    "Location",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Concat",
    "Upload-Expires",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Jupyter-Tus-Path",
]


@pytest.fixture
def cors_setting(request) -> str:
    return request.param


@pytest.fixture
def jp_server_config(cors_setting):
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_tus": True}, **SETTINGS[cors_setting]},
        "TusApp": {},
    }


@pytest.fixture
def anonymous(http_server_client, jp_base_url):
    """Requests as a browser sends a preflight: no Authorization header at all."""

    async def fetch(method: str, *path: str, headers: dict) -> object:
        url = url_path_join(jp_base_url, "api/tus/uploads", *path)
        return await http_server_client.fetch(
            url,
            method=method,
            headers=headers,
            raise_error=False,
            allow_nonstandard_methods=True,
        )

    return fetch


def preflight(origin: str, method: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type,tus-resumable,upload-offset",
    }


def names(value: str | None) -> set[str]:
    return {n.strip().lower() for n in (value or "").split(",") if n.strip()}


def assert_exposed(response, origin: str = ALLOWED) -> None:
    assert response.headers.get("Access-Control-Allow-Origin") == origin, response.headers
    exposed = names(response.headers.get("Access-Control-Expose-Headers"))
    assert {h.lower() for h in TUS_RESPONSE_HEADERS} <= exposed, exposed


def listing(staging) -> list[str]:
    return sorted(p.name for p in staging.iterdir())


@pytest.mark.parametrize("cors_setting", ALLOWING, indirect=True)
@pytest.mark.parametrize(("route", "method"), [("creation", "POST"), ("upload", "PATCH")])
async def test_preflight_from_allowed_origin(
    cors_setting, route, method, tus, anonymous, staging, jp_fetch
):
    uid = await tus.create_id(10)
    before = listing(staging)
    path = () if route == "creation" else (uid,)
    r = await anonymous("OPTIONS", *path, headers=preflight(ALLOWED, method))
    assert r.code == 204, r.body
    assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert names(r.headers["Access-Control-Allow-Methods"]) == {m.lower() for m in TUS_METHODS}
    allowed = names(r.headers["Access-Control-Allow-Headers"])
    assert {h.lower() for h in TUS_REQUEST_HEADERS} <= allowed, allowed
    if cors_setting == "tornado_settings headers":
        assert "x-request-id" in allowed
    assert int(r.headers["Access-Control-Max-Age"]) >= 60
    assert listing(staging) == before
    # jupyter-server's own API lets the same origin in.
    own = await jp_fetch(
        "api", "contents", method="OPTIONS", headers=preflight(ALLOWED, "GET"), raise_error=False
    )
    assert own.headers["Access-Control-Allow-Origin"] == ALLOWED


@pytest.mark.parametrize(
    ("cors_setting", "origin"),
    [
        ("allow_origin", REFUSED),
        ("allow_origin_pat", REFUSED),
        ("tornado_settings headers", REFUSED),
        ("none", ALLOWED),
    ],
    indirect=["cors_setting"],
)
@pytest.mark.parametrize("route", ["creation", "upload"])
async def test_preflight_from_other_origin_is_refused(
    cors_setting, origin, route, tus, anonymous, staging
):
    uid = await tus.create_id(10)
    before = listing(staging)
    path = () if route == "creation" else (uid,)
    r = await anonymous("OPTIONS", *path, headers=preflight(origin, "PATCH"))
    assert r.code == 403
    assert r.headers.get("Access-Control-Allow-Origin") != origin
    assert "Access-Control-Allow-Methods" not in r.headers
    assert "Access-Control-Expose-Headers" not in r.headers
    # (tornado_settings' own Allow-Headers are on every answer, but no tus header.)
    assert "tus-resumable" not in names(r.headers.get("Access-Control-Allow-Headers"))
    assert listing(staging) == before


@pytest.mark.parametrize("cors_setting", ["allow_origin", "allow_origin_pat"], indirect=True)
async def test_tus_discovery_options_stays_authenticated(cors_setting, tus, anonymous):
    """An OPTIONS without Access-Control-Request-Method is tus's own: credentials needed."""
    r = await anonymous("OPTIONS", headers={"Origin": ALLOWED, "Tus-Resumable": "1.0.0"})
    assert r.code == 403
    assert "Tus-Extension" not in r.headers
    assert "Access-Control-Allow-Methods" not in r.headers
    assert_exposed(r)  # an error answer, readable by the page
    r = await tus.request("OPTIONS", headers={"Origin": ALLOWED})
    assert r.code == 204
    assert "termination" in r.headers["Tus-Extension"]
    assert_exposed(r)


@pytest.mark.parametrize("cors_setting", ALLOWING, indirect=True)
async def test_answers_expose_tus_headers(cors_setting, tus, anonymous):
    origin = {"Origin": ALLOWED}
    r = await tus.create(10, {"filename": "cors.txt"}, headers=origin)
    assert r.code == 201
    assert_exposed(r)
    uid = r.headers["Location"].rsplit("/", 1)[-1]
    r = await tus.patch(uid, 0, b"01234", headers=origin)
    assert r.code == 204
    assert_exposed(r)
    r = await tus.head(uid, headers=origin)
    assert r.code == 200 and r.headers["Upload-Offset"] == "5"
    assert_exposed(r)
    # Errors: a refusal in prepare (offset), in the verb (unknown id), the version
    # check, and the authentication.
    r = await tus.patch(uid, 3, b"xx", headers=origin)
    assert r.code == 409
    assert_exposed(r)
    r = await tus.head("no-such-upload", headers=origin)
    assert r.code == 404
    assert_exposed(r)
    r = await tus.request("POST", headers={**origin, "Tus-Resumable": "0.2.2"})
    assert r.code == 412
    assert_exposed(r)
    r = await anonymous("POST", headers={**origin, **OFFSET_TYPE, "Upload-Length": "1"})
    assert r.code in (403, 404)  # 404: jupyter-server's check_origin, under tornado_settings
    assert_exposed(r)
    r = await tus.patch(uid, 5, b"56789", headers=origin)
    assert r.code == 204 and "Jupyter-Tus-Path" in r.headers
    assert_exposed(r)


@pytest.mark.parametrize(
    ("cors_setting", "origin"),
    [("allow_origin", REFUSED), ("allow_origin_pat", REFUSED)],
    indirect=["cors_setting"],
)
async def test_answers_to_other_origins_expose_nothing(cors_setting, origin, tus):
    r = await tus.create(10, headers={"Origin": origin})
    assert r.code == 201  # token requests pass from anywhere, as in jupyter-server
    assert r.headers.get("Access-Control-Allow-Origin") != origin
    assert "Access-Control-Expose-Headers" not in r.headers
    r = await tus.head("no-such-upload", headers={"Origin": origin})
    assert r.code == 404
    assert r.headers.get("Access-Control-Allow-Origin") != origin
    assert "Access-Control-Expose-Headers" not in r.headers
