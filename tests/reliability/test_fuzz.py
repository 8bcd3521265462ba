"""Bad input, fuzzed (hypothesis): every header the server parses, the id in the URL,
and the destination metadata (traversal, NUL, unicode, absolute paths, symlinks out
of root_dir). Never a 500, never a traceback, never a byte outside root_dir or the
staging directory, never a change to another upload.

``TUS_FUZZ_EXAMPLES`` sets the number of HTTP examples (parser-level tests run 10x)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from jupyter_tus import destinations, protocol
from jupyter_tus.store import DestinationRefused

from .helpers import Client, env_int, record_figures, seed_from_env, server

EXAMPLES = env_int("TUS_FUZZ_EXAMPLES", 400)
SEED = seed_from_env()
COUNT = {"http": 0, "parsers": 0, "destinations": 0}

junk = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    max_size=40,
)
numbers = st.one_of(
    st.integers(-5, 2**70).map(str),
    st.sampled_from(["", " 1", "1 ", "0x10", "1e3", "+5", "٣", "00000000000000000001"]),
    junk,
)
NAMES = [
    "ok.txt",
    "../up.txt",
    "a/b.txt",
    "a\\b.txt",
    "nul\x00.txt",
    ".hidden",
    "ü名.txt",
    "/abs.txt",
    "link_out",
    "existing.txt",
    "",
    ".",
    "..",
    "x" * 300,
    "sub",
    "con",
]
FOLDERS = [
    "",
    "../",
    "../../etc",
    "/etc",
    "/",
    "link_out",
    "link_out/x",
    "sub",
    "sub/../..",
    "C:\\x",
    "\\\\server\\share",
    "a\x00b",
    "ü/ñ",
    "./sub",
    "sub//deep",
    "~",
    "$HOME",
    "sub/link_out",
    ".tus",
    ".tus/x",
]
metadata_values = st.one_of(st.sampled_from(NAMES + FOLDERS), junk)


def b64(s: str) -> str:
    return base64.b64encode(s.encode("utf-8", "surrogatepass")).decode()


@st.composite
def metadata(draw):
    if draw(st.booleans()):
        return draw(junk)
    pairs = {}
    for key in draw(
        st.lists(
            st.sampled_from(["filename", "path", "filetype", "overwrite", "x"]),
            max_size=4,
            unique=True,
        )
    ):
        pairs[key] = draw(
            metadata_values
            if key != "overwrite"
            else st.sampled_from(["1", "0", "true", "yes", ""])
        )
    return ",".join(f"{k} {b64(v)}" if v else k for k, v in pairs.items())


# ------------------------------------------------------------------ parsers (pure)


@settings(max_examples=EXAMPLES * 10, deadline=None, database=None)
@seed(SEED)
@given(st.one_of(st.none(), junk, st.text(max_size=200)))
def test_header_parsers_only_raise_protocol_errors(value):
    COUNT["parsers"] += 1
    for parse in (protocol.parse_metadata, protocol.parse_concat, protocol.parse_checksum):
        with contextlib.suppress(protocol.ProtocolError):
            parse(value)
    with contextlib.suppress(protocol.ProtocolError):
        protocol.parse_non_negative("Upload-Offset", value)


@pytest.fixture(scope="module")
def jail(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    root, outside = base / "root", base / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "link_out").symlink_to(outside)
    (root / "sub" / "link_out").symlink_to(outside)
    (root / "existing.txt").write_text("keep")
    return base, root, outside


@settings(max_examples=EXAMPLES * 10, deadline=None, database=None)
@seed(SEED)
@given(filename=metadata_values, path=metadata_values, overwrite=st.booleans())
def test_destinations_stay_inside_root(jail, filename, path, overwrite):
    COUNT["destinations"] += 1
    base, root, _outside = jail
    meta = {"filename": filename, "path": path, "overwrite": "1" if overwrite else ""}
    try:
        dest = destinations.resolve(root, meta)
    except DestinationRefused as exc:
        assert str(base) not in str(exc)
        return
    if dest is None:
        assert not filename
        return
    real_parent = Path(os.path.realpath(dest.path.parent))
    assert real_parent == root or root in real_parent.parents, dest
    assert "\x00" not in str(dest.path)
    assert not any(p.startswith(".") for p in dest.path.relative_to(root).parts)


# ------------------------------------------------------------------ HTTP


class Fuzzed:
    def __init__(self, jail) -> None:
        self.base, self.root, self.outside = jail
        self.proc = server(self.root, log_path=self.base.parent / f"{self.base.name}.log")
        self.proc.start()
        self.client = Client(self.proc)
        # the upload nobody may touch, and one the fuzzer may
        self.reference = self.client.create_id(1000, {"filename": "ref.bin", "path": "sub"})
        assert self.client.patch(self.reference, 0, b"r" * 100).status_code == 204
        self.target = self.client.create_id(10_000, {"filename": "target.bin"})
        self.reference_state = self.state(self.reference)
        self.base_listing = sorted(p.name for p in self.base.iterdir())

    def state(self, uid: str) -> tuple[str, str]:
        staging = self.root / ".tus"
        return (
            hashlib.sha256((staging / uid).read_bytes()).hexdigest(),
            hashlib.sha256((staging / f"{uid}.info").read_bytes()).hexdigest(),
        )

    def send(self, method: str, path: str, headers: list[tuple[str, bytes]], body: bytes):
        lines = [f"{method} {path} HTTP/1.1".encode("utf-8", "surrogatepass")]
        lines.append(f"Host: 127.0.0.1:{self.proc.port}".encode())
        lines.append(f"Authorization: token {self.proc.token}".encode())
        lines.append(b"Connection: close")
        lines += [name.encode() + b": " + value for name, value in headers]
        raw = b"\r\n".join(lines) + b"\r\n\r\n" + body
        with socket.create_connection(("127.0.0.1", self.proc.port), timeout=10) as s:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                s.sendall(raw)
            chunks = []
            try:
                while chunk := s.recv(65536):
                    chunks.append(chunk)
            except ConnectionResetError:
                pass
        response = b"".join(chunks)
        head, _, body = response.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else None
        return status, head, body


@pytest.fixture(scope="module")
def fuzzed(jail):
    f = Fuzzed(jail)
    yield f
    f.proc.stop()
    log = f.proc.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert "Uncaught exception" not in log, log[-3000:]


def header_value(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@seed(SEED)
@given(data=st.data())
def test_fuzzed_requests_are_refused_cleanly(fuzzed, data):
    COUNT["http"] += 1
    f = fuzzed
    draw = data.draw
    method = draw(st.sampled_from(["POST", "PATCH", "HEAD", "GET", "DELETE", "OPTIONS"]))
    uid = draw(
        st.one_of(
            st.just(f.target),
            st.sampled_from(
                [
                    f"{f.reference}.info",
                    f"{f.reference}.lock",
                    "..",
                    "%2e%2e%2f%2e%2e",
                    "..%2F..%2Fetc%2Fpasswd",
                    f.reference[:-1],
                    f.reference + "x",
                    "A" * 300,
                    "%00",
                    "ü",
                    f"{f.target}%00",
                ]
            ),
            junk.map(lambda s: "".join(c if c.isalnum() else f"%{ord(c) & 0xFF:02X}" for c in s)),
        )
    )
    path = "/api/tus/uploads" + ("" if method in ("POST",) and draw(st.booleans()) else f"/{uid}")
    headers: list[tuple[str, bytes]] = []

    def maybe(name, strategy, p=0.5):
        if draw(st.floats(0, 1)) < p:
            headers.append((name, header_value(draw(strategy))))

    tus = draw(st.sampled_from(["1.0.0"] * 6 + ["0.2.2", "", "1.0.0 ", "1.0"]))
    headers.append(("Tus-Resumable", tus.encode()))
    maybe("Upload-Offset", numbers, 0.7)
    maybe("Upload-Length", numbers)
    maybe("Upload-Defer-Length", st.sampled_from(["1", "0", "2", "", "1 "]) | junk, 0.2)
    maybe("Upload-Metadata", metadata(), 0.6)
    ref_url = f"/api/tus/uploads/{f.reference}"
    maybe(
        "Upload-Concat",
        st.sampled_from(
            [
                "partial",
                "final;",
                f"final;{ref_url}",
                f"final;{ref_url} {ref_url}",
                "final;http://evil/api/tus/uploads/x",
                "final;/api/tus/uploads/../x",
                "Partial",
            ]
        )
        | junk,
        0.25,
    )
    maybe(
        "Upload-Checksum",
        st.sampled_from(
            [
                "sha1 2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
                "md5 junk",
                "crc32 AAAAAA==",
                "sha256",
                "whirlpool AAAA",
                "sha1  x",
            ]
        )
        | junk,
        0.3,
    )
    maybe(
        "Content-Type",
        st.sampled_from(["application/offset+octet-stream"] * 3 + ["text/plain"]) | junk,
        0.8,
    )
    maybe(
        "X-HTTP-Method-Override",
        st.sampled_from(["PATCH", "DELETE", "HEAD", "GET", "TRACE"]) | junk,
        0.1,
    )
    body = draw(st.binary(max_size=3000))
    length = draw(st.sampled_from(["exact", "exact", "exact", "none", "junk", "short"]))
    if length == "exact":
        headers.append(("Content-Length", str(len(body)).encode()))
    elif length == "junk":
        # never digits: a length the body does not have would just wait for it
        bad = draw(junk.filter(lambda v: not any(c.isdigit() for c in v)))
        headers.append(("Content-Length", header_value(bad)))
        body = b""
    elif length == "short":
        headers.append(("Content-Length", str(len(body) // 2).encode()))
    else:
        body = b""
    status, head, resp_body = f.send(method, path, headers, body)
    text = resp_body.decode("utf-8", "replace")
    assert status is not None, head
    assert status != 500 and status < 600, (status, text, headers)
    assert "Traceback" not in text, text
    assert str(f.base) not in text, text
    # nothing outside root_dir, no change to another upload
    assert not any(f.outside.iterdir()), list(f.outside.iterdir())
    assert sorted(p.name for p in f.base.iterdir()) == f.base_listing
    assert f.state(f.reference) == f.reference_state


def test_zz_fuzz_figures(capsys):
    record_figures("fuzz", dict(COUNT, seed=SEED))
    with capsys.disabled():
        print(f"\n[fuzz] inputs tried: {COUNT} seed={SEED}")
