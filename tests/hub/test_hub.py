"""Behind a real JupyterHub with configurable-http-proxy: uploads through
``/user/<name>/api/tus/uploads`` with a hub API token and with the browser's
cookie + XSRF, and every refusal arriving through the proxy with its own status
(not the proxy's 503), bodies of 1-8 MiB, several times each."""

from __future__ import annotations

import base64
import collections
import hashlib
import os
import urllib.parse

import pytest
import requests

from jupyter_tus.filestore import ENTRY_PATTERN

from .conftest import MAX_SIZE, PASSWORD, USER, Hub, poll

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
OFFSET_TYPE = {"Content-Type": "application/offset+octet-stream"}
TIMEOUT = 60


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b64sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class Client:
    """Raw tus requests through the proxy on one keep-alive session."""

    def __init__(self, hub: Hub, session: requests.Session, headers: dict[str, str]) -> None:
        self.hub = hub
        self.session = session
        self.headers = headers

    def request(self, method: str, url: str, headers=None, **kw) -> requests.Response:
        merged = {**TUS, **self.headers, **(headers or {})}
        merged = {k: v for k, v in merged.items() if v is not None}
        return self.session.request(method, url, headers=merged, timeout=TIMEOUT, **kw)

    def create(self, size: int, filename: str, headers=None, data: bytes = b"") -> str:
        r = self.request(
            "POST",
            self.hub.endpoint,
            headers={
                "Upload-Length": str(size),
                "Upload-Metadata": metadata(filename=filename),
                **(OFFSET_TYPE if data else {}),
                **(headers or {}),
            },
            data=data,
        )
        assert r.status_code == 201, (r.status_code, r.text)
        location = r.headers["Location"]
        # A path-only Location under the user's prefix: right behind the proxy.
        assert location.startswith(f"/user/{USER}/api/tus/uploads/"), location
        return urllib.parse.urljoin(self.hub.url, location)

    def patch(self, url: str, offset: int, data: bytes, headers=None) -> requests.Response:
        return self.request(
            "PATCH",
            url,
            headers={**OFFSET_TYPE, "Upload-Offset": str(offset), **(headers or {})},
            data=data,
        )

    def offset(self, url: str) -> int:
        r = self.request("HEAD", url)
        assert r.status_code == 200, (r.status_code, r.headers)
        assert r.headers["Cache-Control"] == "no-store"
        return int(r.headers["Upload-Offset"])

    def upload(self, data: bytes, filename: str, chunk: int) -> str:
        """Create, PATCH in chunks (HEAD before each), and return the upload's URL."""
        url = self.create(len(data), filename)
        offset = 0
        while offset < len(data):
            assert self.offset(url) == offset
            r = self.patch(url, offset, data[offset : offset + chunk])
            assert r.status_code == 204, (r.status_code, r.text)
            offset = int(r.headers["Upload-Offset"])
        assert self.offset(url) == len(data)
        return url


@pytest.fixture
def token_client(hub: Hub) -> Client:
    return Client(hub, requests.Session(), {"Authorization": f"token {hub.user_token}"})


def browser_login(hub: Hub) -> requests.Session:
    """Log in as a browser does: the hub's login form, then alice's JupyterLab page
    (OAuth redirects) which sets the single-user server's ``_xsrf`` cookie."""
    s = requests.Session()
    r = s.get(hub.url + "hub/login", timeout=TIMEOUT)
    assert r.status_code == 200, r.status_code
    hub_xsrf = s.cookies.get("_xsrf", path="/hub/")
    r = s.post(
        hub.url + "hub/login",
        data={"username": USER, "password": PASSWORD, "_xsrf": hub_xsrf},
        timeout=TIMEOUT,
    )
    assert r.status_code == 200, (r.status_code, r.url)
    r = s.get(hub.user_url + "lab", timeout=TIMEOUT)
    assert r.status_code == 200 and r.url.startswith(hub.user_url + "lab"), (
        r.status_code,
        r.url,
    )
    assert s.cookies.get("_xsrf", path=f"/user/{USER}/"), s.cookies
    return s


def test_token_upload_through_the_proxy(hub: Hub, token_client: Client) -> None:
    data = os.urandom(10 * MiB + 12345)
    url = token_client.upload(data, "token.bin", chunk=3 * MiB)
    landed = hub.home / "token.bin"
    assert landed.exists()
    assert sha256(landed.read_bytes()) == sha256(data)
    # The finished upload downloads through the proxy too.
    r = token_client.request("GET", url)
    assert r.status_code == 200
    assert sha256(r.content) == sha256(data)


def staged(hub: Hub) -> set[str]:
    """The uploads alice's staging directory holds (data and .info; lock files come
    and go with requests)."""
    staging = hub.home / ".tus"
    if not staging.exists():
        return set()
    return {
        p.name for p in staging.iterdir() if ENTRY_PATTERN.match(p.name) and p.suffix != ".lock"
    }


def test_cookie_and_xsrf_upload_as_a_browser(hub: Hub) -> None:
    session = browser_login(hub)
    xsrf = session.cookies.get("_xsrf", path=f"/user/{USER}/")
    # What a browser's fetch() adds to a same-origin request.
    browser = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}
    client = Client(hub, session, {**browser, "X-XSRFToken": xsrf})
    data = os.urandom(6 * MiB + 7)
    url = client.upload(data, "cookie.bin", chunk=2 * MiB)
    assert sha256((hub.home / "cookie.bin").read_bytes()) == sha256(data)

    # The same session without (or with a wrong) X-XSRFToken: 403, nothing created,
    # nothing written, whatever the body size.
    half = client.create(4 * MiB, "half.bin")
    r = client.patch(half, 0, data[: 2 * MiB])
    assert r.status_code == 204, (r.status_code, r.text)
    before = staged(hub)
    statuses: collections.Counter[tuple[str, int]] = collections.Counter()
    for size in (1 * MiB, 3 * MiB, 8 * MiB):
        body = os.urandom(size)
        for xsrf_header in ({}, {"X-XSRFToken": "not-the-token"}):
            bare = Client(hub, session, {**browser, **xsrf_header})
            r = bare.request(
                "POST",
                hub.endpoint,
                headers={
                    "Upload-Length": str(size),
                    "Upload-Metadata": metadata(filename="nope.bin"),
                    **OFFSET_TYPE,
                },
                data=body,
            )
            statuses[("POST", r.status_code)] += 1
            assert r.status_code == 403, (r.status_code, r.text)
            assert r.headers.get("Tus-Resumable") == "1.0.0", r.headers
            r = bare.patch(half, 2 * MiB, body[: 2 * MiB])
            statuses[("PATCH", r.status_code)] += 1
            assert r.status_code == 403, (r.status_code, r.text)
            assert r.headers.get("Tus-Resumable") == "1.0.0", r.headers
            r = bare.request("HEAD", half)  # a browser's HEAD needs the token too
            assert r.status_code == 403, r.status_code
    assert staged(hub) == before
    assert not (hub.home / "nope.bin").exists()
    assert client.offset(half) == 2 * MiB
    assert statuses == {("POST", 403): 6, ("PATCH", 403): 6}
    # ...and with the header again the upload finishes.
    r = client.patch(half, 2 * MiB, data[2 * MiB : 4 * MiB])
    assert r.status_code == 204, (r.status_code, r.text)
    assert sha256((hub.home / "half.bin").read_bytes()) == sha256(data[: 4 * MiB])
    # A download link opened in the browser (a navigation: cookie, no XSRF header).
    r = session.get(url, headers={"Sec-Fetch-Mode": "navigate"}, timeout=TIMEOUT)
    assert r.status_code == 200, r.status_code
    assert sha256(r.content) == sha256(data)
    assert "cookie.bin" in r.headers["Content-Disposition"]


# Body sizes and repetitions of every refusal: the proxy turned an answer to an
# unread body into a 503 in 30-90 % of such tries before the server drained.
REFUSAL_SIZES = (1 * MiB, 3 * MiB, 8 * MiB)
REPEATS = 3


def test_every_refusal_arrives_with_its_own_status(hub: Hub, token_client: Client) -> None:
    client = token_client
    anonymous = Client(hub, requests.Session(), {})
    wrong_token = Client(hub, requests.Session(), {"Authorization": "token not-a-token"})
    target_size = 16 * MiB
    target = client.create(target_size, "target.bin")
    head = os.urandom(1 * MiB)
    assert client.patch(target, 0, head).status_code == 204
    small = client.create(512 * 1024, "small.bin")
    unknown = hub.endpoint + "/" + "x" * 32

    def create_with_body(c: Client, body: bytes, size: int, headers=None) -> requests.Response:
        return c.request(
            "POST",
            hub.endpoint,
            headers={
                "Upload-Length": str(size),
                "Upload-Metadata": metadata(filename="refused.bin"),
                **OFFSET_TYPE,
                **(headers or {}),
            },
            data=body,
        )

    # name -> (expected status, the request, the upload whose offset must not move)
    cases = {
        "no auth, POST": (403, lambda b: create_with_body(anonymous, b, len(b)), None),
        "no auth, PATCH": (403, lambda b: anonymous.patch(target, len(head), b), target),
        "wrong token, PATCH": (403, lambda b: wrong_token.patch(target, len(head), b), target),
        "offset mismatch": (409, lambda b: client.patch(target, 0, b), target),
        "version, PATCH": (
            412,
            lambda b: client.patch(target, len(head), b, {"Tus-Resumable": "0.2.0"}),
            target,
        ),
        "version, POST": (
            412,
            lambda b: create_with_body(client, b, len(b), {"Tus-Resumable": "0.2.0"}),
            None,
        ),
        "over Tus-Max-Size": (413, lambda b: create_with_body(client, b, MAX_SIZE + 1), None),
        "past Upload-Length": (413, lambda b: client.patch(small, 0, b), small),
        "content type": (
            415,
            lambda b: client.patch(
                target, len(head), b, {"Content-Type": "application/octet-stream"}
            ),
            target,
        ),
        "offset mismatch, chunked body": (
            409,
            lambda b: client.patch(target, 0, iter([b[: len(b) // 2], b[len(b) // 2 :]])),
            target,
        ),
        # Refusals without a body, each followed at once by a valid request (the HEAD
        # of the offset check) that must not meet a connection the server dropped.
        "no auth, HEAD": (403, lambda b: anonymous.request("HEAD", target), target),
        "no auth, GET": (403, lambda b: anonymous.request("GET", target), target),
        "unknown upload, HEAD": (404, lambda b: client.request("HEAD", unknown), target),
        "unknown upload, DELETE": (404, lambda b: client.request("DELETE", unknown), target),
        "checksum": (
            460,
            lambda b: client.patch(
                target, len(head), b, {"Upload-Checksum": f"sha256 {b64sha256(b + b'x')}"}
            ),
            target,
        ),
    }
    offsets = {target: len(head), small: 0}
    before = staged(hub)
    seen: collections.Counter[tuple[str, int]] = collections.Counter()
    wrong = []
    for size in REFUSAL_SIZES:
        body = os.urandom(size)
        for _ in range(REPEATS):
            for name, (expected, send, upload) in cases.items():
                r = send(body)
                seen[(name, r.status_code)] += 1
                # Tus-Resumable: the answer is the server's, not the proxy's or the hub's.
                if r.status_code != expected or r.headers.get("Tus-Resumable") != "1.0.0":
                    wrong.append((name, size, r.status_code, r.text[:200]))
                if expected == 412 and r.headers.get("Tus-Version") != "1.0.0":
                    wrong.append((name, size, "Tus-Version", r.headers.get("Tus-Version")))
                if upload is not None:
                    h = client.request("HEAD", upload)
                    if h.status_code != 200 or int(h.headers["Upload-Offset"]) != offsets[upload]:
                        wrong.append((name, size, "HEAD after it", h.status_code, h.headers))
    print("\nrefusals through the proxy (case, status): count")
    for key, count in sorted(seen.items()):
        print(f"  {key}: {count}")
    assert not wrong, f"{len(wrong)} wrong answers: {wrong[:20]}\n{hub.log()}"
    assert sum(seen.values()) == len(cases) * len(REFUSAL_SIZES) * REPEATS
    # Nothing was created or written by any refusal, and the uploads still finish.
    assert staged(hub) == before
    assert not (hub.home / "refused.bin").exists()
    rest = os.urandom(target_size - len(head))
    r = client.patch(target, len(head), rest, {"Upload-Checksum": f"sha256 {b64sha256(rest)}"})
    assert r.status_code == 204, (r.status_code, r.text)
    assert sha256((hub.home / "target.bin").read_bytes()) == sha256(head + rest)


def test_upload_outlives_a_stopped_server(hub: Hub, token_client: Client) -> None:
    """While alice's server is stopped (or culled) the hub answers in its place: HTML
    and no Tus-Resumable, which a client must take for "server gone, retry later",
    never for a tus refusal. Started again, the server resumes the upload."""
    client = token_client
    data = os.urandom(5 * MiB)
    url = client.create(len(data), "outlives.bin")
    assert client.patch(url, 0, data[: 2 * MiB]).status_code == 204
    r = hub.api("DELETE", f"users/{USER}/server")
    assert r.status_code in (202, 204), (r.status_code, r.text)
    poll("alice's server stopped", lambda: not hub.user_model()["servers"], 60, hub.log)

    answers = {}
    for method, body in (("HEAD", None), ("PATCH", data[2 * MiB :]), ("POST", None)):
        target = hub.endpoint if method == "POST" else url
        extra = {"Upload-Length": "1"} if method == "POST" else {}
        r = client.request(
            method,
            target,
            headers={**OFFSET_TYPE, "Upload-Offset": str(2 * MiB), **extra},
            data=body,
            allow_redirects=False,
        )
        answers[method] = r.status_code
        assert "Tus-Resumable" not in r.headers, (method, r.status_code, r.headers)
        assert r.status_code >= 300, (method, r.status_code)
    print("\nthe hub's answers for a stopped server:", answers)

    r = hub.api("POST", f"users/{USER}/server")
    assert r.status_code in (201, 202), (r.status_code, r.text)
    poll("alice's server ready again", hub.server_ready, 90, hub.log)
    assert client.offset(url) == 2 * MiB
    r = client.patch(url, 2 * MiB, data[2 * MiB :])
    assert r.status_code == 204, (r.status_code, r.text)
    assert sha256((hub.home / "outlives.bin").read_bytes()) == sha256(data)
