"""The IETF draft "Resumable Uploads for HTTP" on the tus endpoint (jupyter_tus/ietf.py),
driven by this suite's own draft client (tests/rufh.py: raw HTTP/1.1, framed by h11)
against an in-process jupyter server on a real port, under pytest-jupyter's non-root
base_url, with a token: creation with and without the whole body, appends, resuming
after a dropped append or creation (104), offset and length mismatches as RFC 9457
problems, limits, destinations, auth, version selection."""

from __future__ import annotations

import asyncio
import os

import pytest

from jupyter_tus import ietf

from .conftest import encode_metadata, wait_events
from .rufh import RufhClient
from .test_connections import wait_for

PROBLEMS = "https://iana.org/assignments/http-problem-types#"
LIMITS = {"max_chunk_size": 1000, "max_size": 50_000}
ORIGIN = "http://page.example:8123"


@pytest.fixture
def server_app_config() -> dict:
    """Override (parametrize) to set ServerApp traits."""
    return {}


@pytest.fixture
def jp_server_config(backend, tus_config, server_app_config):
    return backend.server_config(tus_config, server_app_config)


@pytest.fixture
def listening(jp_fetch, jp_http_port) -> int:
    """The in-process server's port, once it listens (jp_fetch starts its HTTP server)."""
    return jp_http_port


@pytest.fixture
def rufh(listening, jp_base_url, jp_auth_header) -> RufhClient:
    return RufhClient(listening, jp_base_url, jp_auth_header)


@pytest.fixture(params=[8, 6])
def draft(request, listening, jp_base_url, jp_auth_header) -> RufhClient:
    """The client at each interop version the server speaks."""
    return RufhClient(listening, jp_base_url, jp_auth_header, version=request.param)


def upload_id(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


def received(tus_app, uid: str) -> int:
    """The bytes the server took of the upload so far, its write under way or not
    (S3Store holds a part's worth in memory before S3 has it)."""
    return tus_app.manager._under_way.get(uid, (0, 0))[1]


# ------------------------------------------------------------------- creation


async def test_creation_with_the_whole_body_lands(draft, backend, jp_base_url, events, tus):
    data = os.urandom(5000)
    r = await draft.create(
        data,
        complete=True,
        filename="naïve data.csv",
        content_type="text/csv; charset=utf-8",
        query={"path": "in/sub"},
    )
    assert r.status == 201, r.body
    assert r.location.startswith(f"{jp_base_url}api/tus/uploads/")  # path-only
    assert r.complete is True and r.offset == 5000 and r.headers["upload-length"] == "5000"
    assert r.headers["upload-draft-interop-version"] == str(draft.version)
    assert "tus-resumable" not in r.headers
    assert r.headers["jupyter-tus-path"] == "in/sub/na%C3%AFve%20data.csv"
    assert backend.landed("in/sub/naïve data.csv") == data
    await wait_events(events, 1)
    assert events[0]["action"] == "completed" and events[0]["path"] == "in/sub/naïve data.csv"
    # The type came from Content-Type: tus's GET serves it.
    got = await tus.request("GET", upload_id(r.location))
    assert got.code == 200 and got.headers["Content-Type"] == "text/csv" and got.body == data
    head = await draft.head(r.location)
    assert head.status == 204 and head.complete is True and head.offset == 5000
    assert head.headers["cache-control"] == "no-store"


async def test_careful_creation_then_appends(draft, backend):
    data = os.urandom(10_000)
    r = await draft.create(complete=False, filename="parts.bin", length=len(data))
    assert r.status == 201, r.body
    assert r.complete is False and r.offset == 0
    assert "upload-limit" in r.headers
    url = r.location
    r = await draft.append(url, 0, data[:4000], complete=False)
    assert r.status == 204, r.body
    assert r.complete is False and r.offset == 4000
    assert backend.landed("parts.bin") is None
    head = await draft.head(url)
    assert (head.offset, head.complete, head.headers["upload-length"]) == (4000, False, "10000")
    r = await draft.append(url, 4000, data[4000:], complete=True)
    assert r.status == 204, r.body
    assert r.complete is True and r.offset == 10_000
    assert r.headers["jupyter-tus-path"] == "parts.bin"
    assert backend.landed("parts.bin") == data
    assert backend.staged() == [f"{upload_id(url)}.info"]  # moved, not copied


async def test_unknown_length_is_learnt_from_the_last_append(rufh, backend):
    data = os.urandom(3000)
    r = await rufh.create(data[:1000], complete=False, filename="grow.bin")
    assert r.status == 201 and r.offset == 1000 and r.complete is False, r.body
    head = await rufh.head(r.location)
    assert "upload-length" not in head.headers  # none recorded yet
    # Upload-Complete: ?1 with Content-Length: the length is offset + body.
    r = await rufh.append(r.location, 1000, data[1000:], complete=True)
    assert r.status == 204 and r.complete is True, r.body
    assert r.headers["upload-length"] == "3000"
    assert backend.landed("grow.bin") == data


async def test_a_chunked_last_append_ends_the_file_where_its_body_ends(rufh, backend):
    r = await rufh.create(complete=False, filename="stream.log")
    assert r.status == 201, r.body
    r = await rufh.append(r.location, 0, [b"first ", b"second ", b"third"], complete=True)
    assert r.status == 204 and r.complete is True, r.body
    assert r.offset == 18 and r.headers["upload-length"] == "18"
    assert backend.landed("stream.log") == b"first second third"


async def test_a_chunked_creation_with_the_whole_body(rufh, backend):
    r = await rufh.create([b"a" * 700, b"b" * 300], complete=True, filename="c.bin")
    assert r.status == 201 and r.complete is True and r.offset == 1000, r.body
    assert backend.landed("c.bin") == b"a" * 700 + b"b" * 300


async def test_an_empty_file(rufh, backend):
    r = await rufh.create(complete=True, filename="empty.txt")
    assert r.status == 201 and r.complete is True and r.offset == 0, r.body
    assert backend.landed("empty.txt") == b""


async def test_tus_js_client_style_creation_with_upload_metadata(rufh, backend):
    """tus-js-client (protocol 'ietf-draft-05') names the file in Upload-Metadata and
    sends its body as application/partial-upload, which is no file type."""
    metadata = encode_metadata({"filename": "js.bin", "path": "from-js"})
    r = await rufh.create(
        b"12345",
        complete=False,
        length=10,
        content_type="application/partial-upload",
        headers={"Upload-Metadata": metadata},
    )
    assert r.status == 201 and r.offset == 5, r.body
    r = await rufh.append(r.location, 5, b"67890", complete=True)
    assert r.status == 204 and r.complete is True, r.body
    assert backend.landed("from-js/js.bin") == b"1234567890"


async def test_the_last_byte_completes_an_upload_of_known_length(rufh, backend):
    """Upload-Complete: ?0 on a body that reaches the recorded length: the file lands
    (the answer says ?1), and an empty ?1 append is answered as the final answer again."""
    url = (await rufh.create(complete=False, filename="known.bin", length=6)).location
    r = await rufh.append(url, 0, b"abcdef", complete=False)
    assert r.status == 204 and r.complete is True, r.body
    assert backend.landed("known.bin") == b"abcdef"
    r = await rufh.append(url, 6, b"", complete=True)
    assert r.status == 204 and r.complete is True and r.offset == 6


# ------------------------------------------------------------------- resuming


async def test_resume_after_a_dropped_append(draft, backend, tus_app):
    data = os.urandom(600_000)
    r = await draft.create(complete=False, filename="dropped.bin", length=len(data))
    url = r.location
    exchange = await draft.open(
        "PATCH",
        url,
        {
            "Content-Type": "application/partial-upload",
            "Upload-Offset": "0",
            "Upload-Complete": "?1",
            "Content-Length": str(len(data)),
        },
    )
    await exchange.send(data[:250_000])
    uid = upload_id(url)
    await wait_for(lambda: received(tus_app, uid) == 250_000)
    exchange.drop()
    # The lock is let go once the server sees the drop; the offset keeps every byte.
    head = await draft.head(url)
    assert head.status == 204 and head.offset == 250_000 and head.complete is False
    assert backend.landed("dropped.bin") is None
    r = await draft.resume(url, data)
    assert r.status == 204 and r.complete is True, r.body
    assert backend.landed("dropped.bin") == data


@pytest.mark.parametrize("tus_config", [{"send_104": True}])
async def test_a_dropped_creation_resumes_from_its_104(rufh, tus_config, backend, tus_app):
    """Optimistic creation: the 104 (Upload Resumption Supported) carries the upload's
    URL before a byte of the body is sent; the connection drops half-way; HEAD and one
    append finish the file."""
    data = os.urandom(400_000)
    exchange = await rufh.open(
        "POST",
        rufh.creation_target(),
        {
            "Upload-Complete": "?1",
            "Content-Length": str(len(data)),
            "Content-Disposition": rufh.disposition("optimistic.bin"),
        },
    )
    status, headers = await exchange.next_interim()
    assert status == 104
    assert headers["upload-draft-interop-version"] == "8"
    assert headers["upload-limit"] == "min-size=0"
    url = headers["location"]
    await exchange.send(data[:150_000])
    await wait_for(lambda: received(tus_app, upload_id(url)) == 150_000)
    exchange.drop()
    head = await rufh.head(url)
    assert head.offset == 150_000 and head.headers["upload-length"] == str(len(data))
    r = await rufh.append(url, 150_000, data[150_000:], complete=True)
    assert r.status == 204 and r.complete is True, r.body
    assert backend.landed("optimistic.bin") == data


@pytest.mark.parametrize("tus_config", [{"send_104": True}])
async def test_104_then_the_final_answer_with_the_same_location(draft, tus_config):
    r = await draft.create(b"x" * 100, complete=True, filename="both.bin")
    assert r.status == 201, r.body
    assert [status for status, _ in r.interim] == [104]
    interim = r.interim[0][1]
    assert interim["location"] == r.location
    assert interim["upload-draft-interop-version"] == str(draft.version)


async def test_no_104_unless_configured(rufh):
    r = await rufh.create(b"x" * 100, complete=True, filename="quiet.bin")
    assert r.status == 201 and r.interim == []


@pytest.mark.parametrize("tus_config", [{"send_104": True}])
async def test_no_104_to_a_tus_client(rufh, tus_config):
    tus_headers = {"Upload-Draft-Interop-Version": None, "Tus-Resumable": "1.0.0"}
    r = await rufh.request("POST", None, {**tus_headers, "Upload-Length": "3"})
    assert r.status == 201 and r.interim == [], (r.status, r.body)
    assert r.headers["tus-resumable"] == "1.0.0"


# ------------------------------------------------------------------- refusals


async def test_offset_mismatch_is_a_problem_with_the_right_offset(draft, backend):
    r = await draft.create(b"0123", complete=False, filename="m.bin", length=10)
    url = r.location
    r = await draft.append(url, 7, b"789", complete=True)
    assert r.status == 409
    assert r.headers["upload-offset"] == "4" and r.complete is False
    assert r.problem() == {
        "type": PROBLEMS + "mismatching-upload-offset",
        "title": "Mismatching Upload Offset",
        "status": 409,
        "detail": "the upload is at offset 4, the request starts at 7",
        "expected-offset": 4,
        "provided-offset": 7,
    }
    assert backend.kept(upload_id(url)) == 4  # nothing written
    assert (await draft.head(url)).offset == 4


async def test_inconsistent_lengths_at_creation_create_nothing(draft, backend):
    before = backend.staged()
    r = await draft.create(b"x" * 50, complete=True, filename="l.bin", length=60)
    assert r.status == 400
    problem = r.problem()
    expected = PROBLEMS + "inconsistent-upload-length" if draft.version == 8 else "about:blank"
    assert problem["type"] == expected
    assert "60" in problem["detail"] and "50" in problem["detail"]
    assert backend.staged() == before
    r = await draft.create(b"x" * 50, complete=False, filename="l.bin", length=40)
    assert r.status == 400 and r.problem()["status"] == 400


async def test_inconsistent_lengths_on_append(draft, backend):
    r = await draft.create(b"abc", complete=False, filename="n.bin", length=10)
    url = r.location
    # A complete append that ends elsewhere than the recorded length.
    r = await draft.append(url, 3, b"defg", complete=True)
    assert r.status == 400 and r.complete is False and r.headers["upload-offset"] == "3"
    assert "10" in r.problem()["detail"]
    # Another Upload-Length than the recorded one.
    r = await draft.append(url, 3, b"d", complete=False, headers={"Upload-Length": "11"})
    assert r.status == 400
    # A body past the length.
    r = await draft.append(url, 3, b"d" * 8, complete=False)
    assert r.status == 400 and "past" in r.problem()["detail"]
    assert (await draft.head(url)).offset == 3
    r = await draft.append(url, 3, b"defghij", complete=True)
    assert r.status == 204 and r.complete is True
    assert backend.landed("n.bin") == b"abcdefghij"


async def test_a_chunked_complete_append_short_of_the_length_keeps_its_bytes(rufh):
    r = await rufh.create(complete=False, filename="short.bin", length=10)
    url = r.location
    r = await rufh.append(url, 0, [b"abc", b"de"], complete=True)
    assert r.status == 400 and r.headers["upload-offset"] == "5"
    assert "5 of the upload's 10 bytes" in r.problem()["detail"]
    r = await rufh.resume(url, b"abcdefghij")
    assert r.status == 204 and r.complete is True


async def test_a_chunked_body_past_the_length_keeps_what_fits(rufh, backend):
    url = (await rufh.create(complete=False, filename="over.bin", length=10)).location
    r = await rufh.append(url, 0, [b"abcdef", b"ghijklmn"], complete=False)
    assert r.status == 413 and r.headers["upload-offset"] == "10", r.body
    assert r.problem()["type"] == "about:blank"
    assert backend.landed("over.bin") == b"abcdefghij"
    head = await rufh.head(url)
    assert head.complete is True and head.offset == 10


@pytest.mark.parametrize("tus_config", [LIMITS])
async def test_over_the_limits(draft, tus_config, backend):
    options = await draft.request("OPTIONS")
    assert options.status == 204
    assert options.headers["upload-limit"] == "max-size=50000, max-append-size=1000"
    assert options.headers["accept-patch"] == "application/partial-upload"
    # An upload over max-size: refused before it exists.
    r = await draft.create(complete=False, filename="big.bin", length=60_000)
    assert r.status == 413 and "location" not in r.headers
    assert "50000" in r.problem()["detail"]
    assert r.headers["upload-limit"].startswith("max-size=50000")
    # A body over max-append-size: refused before a byte is stored.
    r = await draft.create(b"x" * 500, complete=False, filename="big.bin", length=5000)
    assert r.status == 201, r.body
    assert "max-append-size=1000" in r.headers["upload-limit"]
    url = r.location
    r = await draft.append(url, 500, b"y" * 1001, complete=False)
    assert r.status == 413 and r.problem()["status"] == 413
    assert "max-append-size=1000" in r.headers["upload-limit"]
    assert backend.kept(upload_id(url)) == 500


async def test_limits_without_configured_limits(draft):
    options = await draft.request("OPTIONS")
    assert options.headers["upload-limit"] == "min-size=0"
    r = await draft.create(complete=False, filename="age.bin", length=10)
    key = "max-age" if draft.version == 8 else "expires"
    limits = dict(m.split("=") for m in r.headers["upload-limit"].split(", "))
    assert set(limits) == {key} and 0 < int(limits[key]) <= 7 * 24 * 3600


async def test_append_to_a_finished_upload(draft):
    r = await draft.create(b"done", complete=True, filename="fin.bin")
    url = r.location
    r = await draft.append(url, 4, b"more", complete=True)
    assert r.status == 400
    expected = PROBLEMS + "completed-upload" if draft.version == 6 else "about:blank"
    assert r.problem()["type"] == expected
    # The final answer again, for a client that lost it.
    r = await draft.append(url, 4, b"", complete=True)
    assert r.status == 204 and r.complete is True and r.offset == 4


async def test_wrong_or_missing_fields(draft):
    r = await draft.create(complete=False, filename="f.bin", length=4)
    url = r.location
    r = await draft.request(
        "PATCH", url, {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    )
    assert r.status == 415 and "application/partial-upload" in r.problem()["detail"]
    r = await draft.request(
        "PATCH", url, {"Content-Type": "application/partial-upload", "Upload-Complete": "?0"}, b"a"
    )
    assert r.status == 400 and "Upload-Offset" in r.problem()["detail"]
    r = await draft.request("POST", draft.endpoint, {"Upload-Length": "3"}, b"")
    assert r.status == 400 and "Upload-Complete" in r.problem()["detail"]
    # Not a structured-field Integer: ignored, hence missing.
    r = await draft.request(
        "PATCH",
        url,
        {
            "Content-Type": "application/partial-upload",
            "Upload-Offset": "0x0",
            "Upload-Complete": "?0",
        },
        b"a",
    )
    assert r.status == 400
    r = await draft.request(
        "PATCH", url, {"Content-Type": "application/partial-upload", "Upload-Offset": "0"}, b"a"
    )
    if draft.version == 8:  # version 8 requires Upload-Complete on an append
        assert r.status == 400 and "Upload-Complete" in r.problem()["detail"]
    else:  # version 6 takes its absence as ?0
        assert r.status == 204 and r.offset == 1


async def test_version_6_refuses_offset_fields_on_head_and_delete(
    listening, jp_base_url, jp_auth_header
):
    client = RufhClient(listening, jp_base_url, jp_auth_header, version=6)
    r = await client.create(complete=False, filename="six.bin", length=4)
    url = r.location
    r = await client.head(url, {"Upload-Offset": "0"})
    assert r.status == 400
    r = await client.request("DELETE", url, {"Upload-Complete": "?0"})
    assert r.status == 400 and "Upload-Complete" in r.problem()["detail"]
    assert (await client.head(url)).status == 204


async def test_cancellation(draft, backend):
    r = await draft.create(b"abc", complete=False, filename="gone.bin", length=10)
    url = r.location
    r = await draft.cancel(url)
    assert r.status == 204
    assert not any(upload_id(url) in name for name in backend.staged())
    assert (await draft.head(url)).status == 404
    r = await draft.request("GET", url)  # the draft's other offset retrieval, with a body
    assert r.status == 404 and r.problem()["type"] == "about:blank"


async def test_an_interop_version_not_spoken(listening, jp_base_url, jp_auth_header, backend):
    client = RufhClient(listening, jp_base_url, jp_auth_header, version=7)
    r = await client.create(b"x", complete=True, filename="seven.bin")
    assert r.status == 412
    assert b"interop versions 8 and 6" in r.body
    assert backend.staged() == []


# ------------------------------------------------------------------- Jupyter's rules


async def test_authentication_is_jupyter_servers(listening, jp_base_url, backend, rufh):
    anonymous = RufhClient(listening, jp_base_url, {})
    r = await anonymous.create(b"x" * 10, complete=True, filename="anon.bin")
    assert r.status == 403 and r.problem()["status"] == 403
    assert backend.staged() == []
    r = await rufh.create(b"x", complete=False, filename="mine.bin", length=2)
    for method in ("HEAD", "DELETE"):
        assert (await anonymous.request(method, r.location)).status == 403
    r = await anonymous.append(r.location, 1, b"y", complete=True)
    assert r.status == 403


async def test_destination_rules(rufh, backend):
    backend.put("taken.txt", b"old")
    r = await rufh.create(b"new", complete=True, filename="taken.txt")
    assert r.status == 409 and "already exists" in r.problem()["detail"]
    r = await rufh.create(b"new", complete=True, filename="taken.txt", query={"overwrite": "1"})
    assert r.status == 201 and backend.landed("taken.txt") == b"new"
    r = await rufh.create(b"h", complete=True, filename=".hidden")
    assert r.status == 403 and "hidden" in r.problem()["detail"]
    r = await rufh.create(b"h", complete=True, filename="x.txt", query={"path": "../out"})
    assert r.status == 403
    r = await rufh.create(b"h", complete=True, filename="a/b.txt")
    assert r.status == 403 and "not a path" in r.problem()["detail"]


async def test_a_tus_upload_is_finished_by_the_draft(tus, rufh, backend):
    uid = await tus.create_id(6, {"filename": "mixed.bin"})
    r = await tus.patch(uid, 0, b"abc")
    assert r.code == 204
    url = rufh.endpoint + "/" + uid
    head = await rufh.head(url)
    assert head.status == 204 and head.offset == 3
    r = await rufh.append(url, 3, b"def", complete=True)
    assert r.status == 204 and r.complete is True
    assert backend.landed("mixed.bin") == b"abcdef"


def names(value: str | None) -> set[str]:
    return {n.strip().lower() for n in (value or "").split(",") if n.strip()}


@pytest.mark.parametrize("server_app_config", [{"allow_origin": ORIGIN}])
async def test_a_page_of_an_allowed_origin_may_send_and_read_the_drafts_fields(
    rufh, server_app_config, listening, jp_base_url
):
    anonymous = RufhClient(listening, jp_base_url, {})
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "upload-draft-interop-version,upload-complete",
    }
    r = await anonymous.request("OPTIONS", None, preflight)
    assert r.status == 204 and r.headers["access-control-allow-origin"] == ORIGIN
    allowed = names(r.headers["access-control-allow-headers"])
    assert {"upload-draft-interop-version", "upload-complete", "content-disposition"} <= allowed
    for answer in (
        await rufh.create(b"abc", complete=False, filename="page.bin", headers={"Origin": ORIGIN}),
        await rufh.request("PATCH", rufh.endpoint + "/nothing", {"Origin": ORIGIN}),  # refused
    ):
        exposed = names(answer.headers["access-control-expose-headers"])
        fields = {"upload-draft-interop-version", "upload-complete", "upload-offset"}
        fields |= {"upload-length", "upload-limit", "location"}
        assert fields <= exposed, exposed


# ------------------------------------------------------------------- codecs


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("inline; filename=\"file name.jpg\"; filename*=UTF-8''file%20name.jpg", "file name.jpg"),
        ("inline; filename=\"fallback.txt\"; filename*=UTF-8''r%C3%A9al.txt", "réal.txt"),
        ("attachment; filename*=iso-8859-1'en'%A3%20rates.txt", "£ rates.txt"),
        ('inline; filename="a\\"b.txt"', 'a"b.txt'),
        ('inline; filename="caf\xc3\xa9.txt"', "café.txt"),  # raw UTF-8, read as latin-1
        ("inline", None),
        (None, None),
    ],
)
def test_disposition_filename(value, name):
    assert ietf.disposition_filename(value) == name


def test_disposition_filename_that_does_not_decode():
    with pytest.raises(ietf.InvalidHeader):
        ietf.disposition_filename("inline; filename*=UTF-8''%FF%FE.txt")


@pytest.mark.parametrize(
    ("value", "integer", "boolean"),
    [
        ("?1", None, True),
        ("?0", None, False),
        ("42", 42, None),
        (" 42 ", 42, None),
        ("42;x=1", 42, None),
        ("-1", None, None),
        ("1000000000000000", None, None),  # 16 digits: not an Integer
        ("4.2", None, None),
        ("abc", None, None),
        ("", None, None),
        ("?2", None, None),
    ],
)
def test_structured_fields(value, integer, boolean):
    headers = {"X": value}
    assert ietf.sf_integer(headers, "X") == integer
    assert ietf.sf_boolean(headers, "X") == boolean


async def test_request_answers_in_parallel_stay_apart(rufh, backend):
    """Two draft uploads at once over separate connections land each its own bytes."""
    a, b = os.urandom(70_000), os.urandom(90_000)
    ra, rb = await asyncio.gather(
        rufh.upload(a, filename="a.bin", chunk=20_000),
        rufh.upload(b, filename="b.bin", chunk=30_000),
    )
    assert ra.status == rb.status == 204
    assert backend.landed("a.bin") == a
    assert backend.landed("b.bin") == b
