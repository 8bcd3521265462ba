"""Limits a client can read before sending (``max_chunk_size``, ``max_size``), and the
refusal of bodies over ``max_chunk_size``: announced ones before a byte is stored,
chunked ones at the point they go past it (the bytes before it kept)."""

from __future__ import annotations

import asyncio
import re

import pytest
from jupyter_server.utils import url_path_join

from .conftest import OFFSET_TYPE
from .test_connections import RawPatch
from .test_lifetime import send_chunked

LIMIT = 1000
LIMITS = {"max_chunk_size": LIMIT, "max_size": 50_000}
# RFC 8941 dictionary of integers: key=value members separated by ", ".
SF_INT_DICT = re.compile(r"^[a-z*][a-z0-9_.*-]*=-?\d{1,15}(, [a-z*][a-z0-9_.*-]*=-?\d{1,15})*$")


def sf_dict(value: str) -> dict[str, int]:
    assert SF_INT_DICT.match(value), value
    return {k: int(v) for k, v in (m.split("=") for m in value.split(", "))}


def assert_limits_advertised(r, chunk: int = LIMIT, size: int = 50_000) -> None:
    assert sf_dict(r.headers["Upload-Limit"]) == {"max-size": size, "max-append-size": chunk}
    assert r.headers["Jupyter-Tus-Max-Chunk-Size"] == str(chunk)


def listing(staging) -> list[str]:
    return sorted(p.name for p in staging.iterdir()) if staging.exists() else []


@pytest.mark.parametrize("tus_config", [LIMITS])
async def test_options_head_and_creation_advertise_the_limits(tus, tus_config):
    r = await tus.request("OPTIONS")
    assert r.code == 204
    assert_limits_advertised(r)
    assert r.headers["Tus-Max-Size"] == "50000"
    r = await tus.create(3000, {"filename": "a.bin"})
    assert r.code == 201
    assert_limits_advertised(r)
    uid = r.headers["Location"].rsplit("/", 1)[-1]
    r = await tus.head(uid)
    assert r.code == 200
    assert_limits_advertised(r)
    # The upload's own OPTIONS, and a refusal, tell them too.
    assert_limits_advertised(await tus.request("OPTIONS", uid))
    r = await tus.patch(uid, 7, b"x")
    assert r.code == 409
    assert_limits_advertised(r)


async def test_no_limit_is_advertised_when_none_is_set(tus):
    r = await tus.request("OPTIONS")
    assert r.code == 204
    for name in ("Upload-Limit", "Jupyter-Tus-Max-Chunk-Size", "Tus-Max-Size"):
        assert name not in r.headers
    r = await tus.create(10)
    assert r.code == 201 and "Upload-Limit" not in r.headers


@pytest.mark.parametrize("tus_config", [{"max_size": 4000}])
async def test_upload_limit_says_max_size_alone(tus, tus_config):
    r = await tus.request("OPTIONS")
    assert sf_dict(r.headers["Upload-Limit"]) == {"max-size": 4000}
    assert "Jupyter-Tus-Max-Chunk-Size" not in r.headers


@pytest.mark.parametrize("tus_config", [{"max_chunk_size": LIMIT}])
async def test_a_patch_over_the_limit_is_refused_and_nothing_stored(tus, tus_config):
    uid = await tus.create_id(3000, {"filename": "big.bin"})
    r = await tus.patch(uid, 0, b"y" * (LIMIT + 1))
    assert r.code == 413, r.body
    assert b"1001 bytes" in r.body and b"1000 bytes" in r.body
    assert r.headers["Jupyter-Tus-Max-Chunk-Size"] == str(LIMIT)
    assert (await tus.head(uid)).headers["Upload-Offset"] == "0"
    # At the limit it is taken, and the upload goes on in pieces.
    for offset in (0, 1000, 2000):
        r = await tus.patch(uid, offset, bytes([65 + offset // 1000]) * LIMIT)
        assert r.code == 204, r.body
    assert (await tus.request("GET", uid)).body == b"A" * 1000 + b"B" * 1000 + b"C" * 1000


@pytest.mark.parametrize("tus_config", [{"max_chunk_size": LIMIT, "drain_limit": 100}])
async def test_an_announced_body_over_the_limit_is_answered_before_it_is_sent(
    tus, tus_config, jp_http_port, jp_base_url, jp_auth_header
):
    uid = await tus.create_id(5000)
    path = url_path_join(jp_base_url, "api/tus/uploads", uid)
    patch = RawPatch(jp_http_port, path, jp_auth_header, 0, 5000)
    await patch.open()  # the headers only: not a byte of the body
    head = await asyncio.wait_for(patch.reader.readuntil(b"\r\n\r\n"), 30)
    assert head.startswith(b"HTTP/1.1 413"), head
    patch.close()
    assert (await tus.head(uid)).headers["Upload-Offset"] == "0"


@pytest.mark.parametrize("tus_config", [{"max_chunk_size": LIMIT}])
async def test_a_creation_with_a_body_over_the_limit_creates_nothing(
    tus, tus_config, staging, jp_root_dir
):
    before = listing(staging)
    r = await tus.create(3000, {"filename": "c.bin"}, body=b"z" * (LIMIT + 1))
    assert r.code == 413, r.body
    assert "Location" not in r.headers
    assert listing(staging) == before
    assert not (jp_root_dir / "c.bin").exists()
    r = await tus.create(3000, {"filename": "c.bin"}, body=b"z" * LIMIT)
    assert r.code == 201 and r.headers["Upload-Offset"] == str(LIMIT)


@pytest.mark.parametrize("tus_config", [{"max_chunk_size": LIMIT}])
async def test_a_chunked_patch_past_the_limit_keeps_what_came_before_it(tus, tus_config):
    uid = await tus.create_id(3000, {"filename": "d.bin"})
    headers = {**OFFSET_TYPE, "Upload-Offset": "0"}
    r = await send_chunked(tus, "PATCH", uid, headers, [b"a" * 600, b"b" * 600, b"c" * 600])
    assert r.code == 413, r.body
    assert b"largest body" in r.body
    assert r.headers["Upload-Offset"] == str(LIMIT)
    head = await tus.head(uid)
    assert head.headers["Upload-Offset"] == str(LIMIT)
    # The client resumes from there.
    rest = b"b" * 200 + b"c" * 600 + b"d" * 1200
    assert (await tus.patch(uid, LIMIT, rest[:LIMIT])).code == 204
    assert (await tus.patch(uid, 2 * LIMIT, rest[LIMIT:])).code == 204
    body = (await tus.request("GET", uid)).body
    assert body == b"a" * 600 + b"b" * 400 + rest


@pytest.mark.parametrize("tus_config", [{"max_chunk_size": LIMIT}])
async def test_a_chunked_body_within_the_limit_is_taken(tus, tus_config, jp_root_dir):
    uid = await tus.create_id(LIMIT, {"filename": "e.bin"})
    headers = {**OFFSET_TYPE, "Upload-Offset": "0"}
    r = await send_chunked(tus, "PATCH", uid, headers, [b"e" * 400, b"e" * 600])
    assert r.code == 204, r.body
    assert (jp_root_dir / "e.bin").read_bytes() == b"e" * LIMIT


@pytest.mark.parametrize("tus_config", [{"max_chunk_size": LIMIT}])
async def test_a_chunked_creation_past_the_limit_says_where_and_how_far(tus, tus_config):
    headers = {
        "Upload-Defer-Length": "1",
        "Upload-Metadata": "filename " + "Zi5iaW4=",  # f.bin
        **OFFSET_TYPE,
    }
    r = await send_chunked(tus, "POST", None, headers, [b"f" * 700, b"g" * 700])
    assert r.code == 413, r.body
    assert r.headers["Upload-Offset"] == str(LIMIT)
    uid = r.headers["Location"].rsplit("/", 1)[-1]
    head = await tus.head(uid)
    assert head.code == 200 and head.headers["Upload-Offset"] == str(LIMIT)


ORIGIN = "http://page.example:8123"


@pytest.fixture
def jp_server_config(tus_config):
    """The module's servers let a page of ORIGIN in (no effect without an Origin)."""
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_tus": True}, "allow_origin": ORIGIN},
        "TusApp": tus_config,
    }


@pytest.mark.parametrize("tus_config", [{"max_chunk_size": LIMIT}])
async def test_a_page_of_an_allowed_origin_may_read_the_limits(
    tus, tus_config, http_server_client, jp_base_url
):
    r = await tus.request("OPTIONS", headers={"Origin": ORIGIN})
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    exposed = {n.strip().lower() for n in r.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"upload-limit", "jupyter-tus-max-chunk-size"} <= exposed
    assert r.headers["Jupyter-Tus-Max-Chunk-Size"] == str(LIMIT)
    # The preflight needs no credentials and says the same.
    url = url_path_join(jp_base_url, "api/tus/uploads")
    r = await http_server_client.fetch(
        url,
        method="OPTIONS",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "PATCH"},
        raise_error=False,
    )
    assert r.code == 204 and r.headers["Jupyter-Tus-Max-Chunk-Size"] == str(LIMIT)
