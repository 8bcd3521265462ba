"""A stateful model of the whole endpoint (hypothesis ``RuleBasedStateMachine``) driving
one real ``jupyter server`` process through interleaved creations (awkward
destinations: nested, new, through a file, long, unicode, taken, hidden, symlinked in
and out of root_dir; deferred length, creation-with-upload, empty files), PATCHes (with
and without Content-Length, short, exact, too long, wrong offset, checksummed right and
wrong), terminations, concatenations, changes made on disk between requests (a folder
replaced by a file or by a symlink out of root_dir or into a hidden folder, a name taken,
a landed file deleted, renamed or edited) and restarts (SIGTERM or SIGKILL).

After every step: never a 500 or a traceback; the endpoint loads; every known upload's
HEAD, GET and landed file agree with the model (offset <= staged bytes and <= length;
a complete upload with a filename has landed, where Jupyter-Tus-Path says, with the
model's bytes, or answers 404/410 once the model changed that file); nothing appears
outside root_dir or where the model did not expect a file; no file is ever clobbered.

``test_scenario`` runs fixed sequences through the same model and checks, so that the
corners the rules were written for are reached in every run.

``TUS_SEED`` replays a run; ``TUS_MODEL_EXAMPLES`` and ``TUS_MODEL_STEPS`` make it longer
(`make torture`, recognised by its ``TUS_TORTURE_KILLS``, runs 60 examples of 40 steps);
``TUS_MODEL_SHRINK`` bounds the seconds spent shrinking a failure (0: none). A failure
prints the steps with a note of what each did and what the server answered.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import hashlib
import http.client
import json
import os
import posixpath
import random
import re
import shutil
import zlib
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, Phase, note, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from .helpers import OFFSET_TYPE, TUS, Client, env_int, record_figures, seed_from_env, server

TORTURE = bool(os.environ.get("TUS_TORTURE_KILLS"))  # set by `make torture`
EXAMPLES = env_int("TUS_MODEL_EXAMPLES", 60 if TORTURE else 8)
STEPS = env_int("TUS_MODEL_STEPS", 40 if TORTURE else 25)
# Each example costs seconds (a real server; restarts), so shrinking a failure takes
# minutes: bounded here (hypothesis would go on for 300 s).
SHRINK = env_int("TUS_MODEL_SHRINK", 150)
SEED = seed_from_env()
MAX_UPLOADS = 14
MAX_RESTARTS = max(1, STEPS // 25)
PATH_HEADER = "Jupyter-Tus-Path"
ALGORITHMS = ("sha1", "md5", "sha256", "sha512", "crc32")
GONE = (404, 410)
RULES: collections.Counter[str] = collections.Counter()
COUNT = dict.fromkeys(
    [
        "examples",
        "steps",
        "requests",
        "restarts",
        "landed",
        "landed beside",
        "overwrote",
        "blocked",
        "changed on disk",
    ],
    0,
)

# Destinations, relative to the example's own folder ``ex<N>`` (see Model.__init__).
FOLDERS = [
    "",
    "d1",
    "d1/d2",
    "new1",
    "new2/deep",
    "ünï/文件夹",
    "notes.txt/sub",  # an existing file on the path
    "lnk_in",  # a symlink to ex<N>/real
    "lnk_in/deep",
    "lnk_out",  # a symlink to the "outside" directory, a sibling of root_dir
    "lnk_out/x",
    "lnk_hid",  # a symlink to ex<N>/.hid
    ".hid",
    "d1/.x",
]
LONG_TAKEN = "T" * 247 + ".txt"  # 251 bytes, present in ex<N> and ex<N>/d1
NAMES = {
    "plain": lambda k: f"f{k}.bin",
    "same": lambda k: "same.txt",  # two uploads to one new name: the second lands beside
    "unicode": lambda k: f"ünï-名{k}.txt",
    "long250": lambda k: f"{k:03d}" + "L" * 243 + ".txt",  # 250 bytes
    "long255": lambda k: f"{k:03d}" + "M" * 248 + ".txt",  # 255 bytes
    "long_same": lambda k: "S" * 249 + ".txt",  # 253 bytes: "name (1).txt" would be 257
    "long_taken": lambda k: LONG_TAKEN,
    "too_long": lambda k: "X" * 300 + ".txt",
    "hidden": lambda k: f".x{k}",
    "taken": lambda k: "taken.txt",  # present in ex<N>, ex<N>/d1 and ex<N>/real
    "none": lambda k: "",
}
PATCH_KINDS = [
    "short",
    "exact",
    "too_long",
    "wrong_offset",
    "checksum",
    "bad_checksum",
    "chunked_short",
    "chunked_exact",
    "chunked_too_long",
    "empty",
]
CREATE_MODES = [
    "plain",
    "deferred",
    "with_upload",
    "with_upload_chunked",
    "with_upload_too_long",
    "with_upload_too_long_chunked",
    "deferred_with_upload",
]
SIZES = st.sampled_from([1, 0, 2, 10, 100, 1000, 3000])
# Destinations that work come up about twice as often as those refused.
USABLE = ["", "d1", "d1/d2", "new1", "new2/deep", "ünï/文件夹", "lnk_in", "lnk_in/deep"]
FOLDER_CHOICES = st.sampled_from(USABLE + FOLDERS)
NAME_CHOICES = st.sampled_from(
    [*NAMES, "plain", "same", "same", "long_same", "taken", "unicode", "long255"]
)
PICK = st.integers(0, 20)  # which of the uploads a rule applies to


def digest(algorithm: str, data: bytes) -> str:
    if algorithm == "crc32":
        raw = zlib.crc32(data).to_bytes(4, "big")
    else:
        raw = hashlib.new(algorithm, data).digest()
    return f"{algorithm} {base64.b64encode(raw).decode()}"


def pieces(data: bytes):
    """A body without Content-Length: requests sends a generator chunked."""
    third = max(1, len(data) // 3)
    for i in range(0, len(data), third):
        yield data[i : i + third]


def brief(value) -> str:
    """Long runs of one character shortened, for readable notes: <X*300>."""
    return re.sub(r"(.)\1{9,}", lambda m: f"<{m.group(1)}*{len(m.group(0))}>", str(value))


def hidden(parts) -> bool:
    return any(p.startswith(".") for p in parts)


class Answer:
    """What the checks read of an answer, as requests' Response names it."""

    def __init__(self, status: int, headers, content: bytes) -> None:
        self.status_code, self.headers, self.content = status, headers, content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)


class QuickClient:
    """HEAD/GET/OPTIONS/DELETE on one kept-alive http.client connection: a quarter of
    the time of a requests call, which matters for the checks after every step."""

    def __init__(self, proc) -> None:
        self.proc = proc
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, uid: str | None) -> Answer:
        path = self.proc.base_url + "api/tus/uploads" + (f"/{uid}" if uid else "")
        headers = {**TUS, **self.proc.auth}
        for reused in (True, False):
            fresh = self.conn is None
            if fresh:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.proc.port, timeout=30)
            try:
                self.conn.request(method, path, headers=headers)
                response = self.conn.getresponse()
                content = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = None
                if fresh or not reused:  # only a kept-alive connection may have gone stale
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            return Answer(response.status, response.headers, content)
        raise AssertionError("unreachable")


@dataclasses.dataclass
class Upload:
    uid: str
    data: bytes  # every byte it will have
    size: int | None  # declared length (None while deferred)
    offset: int
    filename: str
    dest: str | None  # where it should land, relative to root_dir (real folders)
    overwrite: bool
    kind: str  # plain | partial | final
    num: int = 0  # in order of creation, for the notes
    state: str = "open"  # open | complete (no destination) | landed | blocked | gone
    landed: str | None = None
    tampered: bool = False  # the model changed or removed the landed file
    checked: bool = False  # gone, and found gone since (until the next restart)

    def __str__(self) -> str:
        size = "deferred" if self.size is None else self.size
        where = brief(self.dest or self.filename or "(store)")
        return (
            f"upload #{self.num} ({self.kind}, {where!r}, {self.offset}/{size} of"
            f" {len(self.data)}, {self.state}{', tampered' if self.tampered else ''})"
        )


class Env:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.root.mkdir()
        self.log_path = base / "server.log"
        self.proc = server(self.root, log_path=self.log_path)
        self.log_seen = 0
        self.examples = 0

    def new_log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_seen)
                text = f.read()
        except FileNotFoundError:
            return ""
        self.log_seen += len(text)
        return text.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env(Path(os.path.realpath(tmp_path_factory.mktemp("model"))))
    e.proc.start()
    yield e
    e.proc.stop()


class Model(RuleBasedStateMachine):
    env: Env  # set by the test
    in_hypothesis = True  # False when a scenario below drives it

    uploads = Bundle("uploads")

    def __init__(self) -> None:
        super().__init__()
        env = self.env
        COUNT["examples"] += 1
        env.examples += 1
        self.n = env.examples
        self.root = env.root
        self.ex = f"ex{self.n}"
        self.outside = env.base / f"outside-{self.n}"
        self.outside.mkdir()
        if env.proc.proc is None or env.proc.proc.poll() is not None:
            env.proc.start()  # an earlier example left it dead
        self.notes: list[str] = []
        self.client = self.new_client()
        self.counter = 0
        self.restarts = 0
        self.max_restarts = 0  # drawn by ``plan``
        self.uploads_by_id: dict[str, Upload] = {}
        # every regular file under ex<N> that must be there, with its bytes
        self.files: dict[str, bytes] = {}
        self.owner: dict[str, str] = {}  # landed file -> upload id
        ex = self.root / self.ex
        for folder in ("d1/d2", "real", ".hid"):
            (ex / folder).mkdir(parents=True)
        for rel, data in (
            ("notes.txt", b"my notes"),
            ("taken.txt", b"taken at the top"),
            (LONG_TAKEN, b"a long name"),
            ("d1/taken.txt", b"taken in d1"),
            (f"d1/{LONG_TAKEN}", b"a long name in d1"),
            ("real/taken.txt", b"taken in real"),
        ):
            self.write_file(f"{self.ex}/{rel}", data)
        (ex / "lnk_in").symlink_to("real")
        (ex / "lnk_hid").symlink_to(".hid")
        (ex / "lnk_out").symlink_to(self.outside)
        self.base_listing = sorted(p.name for p in env.base.iterdir())

    # ------------------------------------------------------------------ plumbing

    def note(self, text: str) -> None:
        """What a step did, for the report of a failure."""
        self.notes.append(text)
        if self.in_hypothesis:
            note(text)

    def step(self, name: str) -> None:
        COUNT["steps"] += 1
        RULES[name] += 1

    def new_client(self) -> Client:
        client = Client(self.env.proc, timeout=30)
        client.session.trust_env = False  # no proxy look-ups: 20% of a request's time
        self.quick = QuickClient(self.env.proc)
        return client

    def request(self, method: str, uid: str | None = None, headers=None, **kw):
        if method in ("HEAD", "GET", "OPTIONS", "DELETE") and not headers and not kw:
            r = self.quick.request(method, uid)  # the invariants' many small requests
        else:
            r = self.client.request(method, uid, headers=headers, **kw)
        self.check_answer(r, f"{method} {uid or ''}")
        return r

    def check_answer(self, r, request: str) -> None:
        COUNT["requests"] += 1
        text = r.text
        what = f"{request} -> {r.status_code}: {text[:300]}"
        if r.status_code >= 500 and r.status_code not in (503, 507):
            what += "\nserver log:\n" + self.env.new_log()[-4000:]
        assert r.status_code != 500 and r.status_code < 600, f"[no 500] {what}"
        assert "Traceback" not in text, f"[no traceback] {what}"
        assert r.headers.get("Tus-Resumable") == "1.0.0", f"[Tus-Resumable on every answer] {what}"
        if 400 <= r.status_code < 500 and not request.startswith("HEAD"):
            try:
                message = r.json().get("message")
            except ValueError:
                message = None
            assert message, f"[error bodies are JSON with a message] {what}"

    def send_patch(self, uid: str, offset: int, body, headers=None):
        h = {**OFFSET_TYPE, "Upload-Offset": str(offset), **(headers or {})}
        return self.request("PATCH", uid, headers=h, data=body)

    def bytes_for(self, size: int) -> bytes:
        return random.Random(self.n * 100_003 + self.counter).randbytes(size)

    def abs(self, rel: str) -> Path:
        return self.root / rel

    def write_file(self, rel: str, data: bytes) -> None:
        self.abs(rel).write_bytes(data)
        self.files[rel] = data

    def staging_info_count(self) -> int:
        return len(list((self.root / ".tus").glob("*.info")))

    def forget(self, rel: str) -> None:
        """``rel`` (a file, or a folder and all below it) was removed or replaced by the
        model: its files are no longer expected, and uploads that landed there were
        changed by the model."""
        for key in [k for k in self.files if k == rel or k.startswith(rel + "/")]:
            del self.files[key]
            uid = self.owner.pop(key, None)
            if uid is not None:
                self.uploads_by_id[uid].tampered = True
                COUNT["changed on disk"] += 1

    def unusable(self, rel: str) -> str | None:
        """Why the folder ``rel`` (relative to root_dir, symlinks followed) cannot take
        a file now; None when it can (missing folders are created)."""
        cur = self.root
        for part in [p for p in rel.split("/") if p]:
            cur = cur / part
            if os.path.islink(cur):
                real = Path(os.path.realpath(cur))
                if real != self.root and self.root not in real.parents:
                    return "a symlink leads out of root_dir"
                if hidden(real.relative_to(self.root).parts):
                    return "a symlink leads into a hidden folder"
                cur = real
            if not os.path.lexists(cur):
                return None
            if not cur.is_dir():
                return "a file is on the path"
        return None

    def expect_destination(self, folder: str, filename: str, overwrite: bool):
        """(status, destination) of a creation to ``folder``/``filename``, from the disk."""
        if not filename:
            return 201, None
        parts = [p for p in folder.split("/") if p]
        if hidden([*parts, filename]) or len(filename.encode()) > 255:
            return 403, None
        if self.unusable(folder):
            return 403, None
        real_parent = Path(os.path.realpath(self.root.joinpath(*parts)))
        target = real_parent / filename
        if target.is_dir() or (os.path.lexists(target) and not overwrite):
            return 409, None
        return 201, target.relative_to(self.root).as_posix()

    def expect_completion(self, up: Upload) -> tuple[str, bool]:
        """What completing ``up`` now must do: store | blocked | land, and whether its
        name is taken (then it lands beside it, unless overwrite)."""
        if up.dest is None:
            return "store", False
        if self.unusable(posixpath.dirname(up.dest)):
            return "blocked", False
        if up.overwrite and self.abs(up.dest).is_dir():
            return "blocked", False  # overwrite never replaces a folder
        return "land", os.path.lexists(self.abs(up.dest))

    def expect_landing(self, dest: str | None) -> tuple[str, bool]:
        """expect_completion for an upload finished by its creation (overwrite)."""
        return ("store", False) if dest is None else ("land", os.path.lexists(self.abs(dest)))

    def completed(self, up: Upload, expect: tuple[str, bool], landed_header: str | None):
        kind, taken = expect
        up.size = up.offset = len(up.data)
        if kind == "store":
            assert landed_header is None, f"[landing] {up.uid} has no filename: {landed_header}"
            up.state = "complete"
            return
        if kind == "blocked":
            up.state = "blocked"
            COUNT["blocked"] += 1
            return
        assert landed_header, f"[landing] completion of {up.uid} carries no {PATH_HEADER}"
        rel = unquote(landed_header)
        if taken:
            COUNT["overwrote" if up.overwrite else "landed beside"] += 1
        if taken and not up.overwrite:
            assert rel != up.dest, f"[no clobbering] {up.uid} landed on the taken {rel}"
            assert posixpath.dirname(rel) == posixpath.dirname(up.dest), (
                f"[landing] a taken name lands beside it: {rel} for {up.dest}"
            )
            name = posixpath.basename(rel)
            assert len(name.encode()) <= 255, f"[unique names <= 255 bytes] {len(name.encode())}"
            assert not name.startswith("."), f"[landing] unique name is hidden: {name}"
            assert rel not in self.files, f"[no clobbering] {up.uid} landed on {rel}"
        else:
            assert rel == up.dest, f"[landing] {up.uid} landed at {rel}, expected {up.dest}"
            if taken:
                self.forget(rel)  # overwritten as asked
        self.files[rel] = up.data
        self.owner[rel] = up.uid
        up.landed = rel
        up.state = "landed"
        COUNT["landed"] += 1

    def head_completion(self, up: Upload, expect: tuple[str, bool], what: str) -> None:
        """After an answer that need not say much (413): HEAD says how it ended."""
        r = self.request("HEAD", up.uid)
        if expect[0] == "blocked":
            assert r.status_code == 403, f"[blocked landing: HEAD 403] {what}: {r.status_code}"
            self.completed(up, expect, None)
            return
        assert r.status_code == 200, f"[{what}] HEAD {r.status_code}"
        offset = int(r.headers["Upload-Offset"])
        assert offset == len(up.data), (
            f"[a body past Upload-Length keeps the bytes that fit and completes] {what}:"
            f" offset {offset} of {len(up.data)}"
        )
        self.completed(up, expect, r.headers.get(PATH_HEADER))

    def add(self, up: Upload, what: str, r) -> None:
        up.num = len(self.uploads_by_id)
        self.uploads_by_id[up.uid] = up
        self.note(f"{what} -> {r.status_code}: upload #{up.num}")

    def eligible(self, which: str) -> list[Upload]:
        ups = list(self.uploads_by_id.values())
        if which == "open":
            return [u for u in ups if u.state == "open"]
        if which == "finished":
            return [u for u in ups if u.state != "open"]
        if which == "partial":
            return [u for u in ups if u.kind == "partial" and u.state == "complete"]
        if which == "nameable":  # open, and its name is still free
            return [
                u
                for u in ups
                if u.state == "open"
                and u.dest is not None
                and not self.unusable(posixpath.dirname(u.dest))
                and not os.path.lexists(self.abs(u.dest))
            ]
        if which == "breakable":  # a folder of its own below ex<N> on its way
            return [
                u
                for u in ups
                if u.state in ("open", "landed")
                and u.dest is not None
                and u.dest.count("/") >= 2
                and not self.unusable(posixpath.dirname(u.dest))
            ]
        if which == "landed":  # landed, and its file untouched so far
            return [u for u in ups if u.landed and self.owner.get(u.landed) == u.uid]
        raise ValueError(which)

    def pick(self, which: str, index: int) -> Upload:
        ups = self.eligible(which)
        return ups[index % len(ups)]

    # ------------------------------------------------------------------ creation

    @precondition(lambda self: len(self.uploads_by_id) < MAX_UPLOADS)
    @rule(
        target=uploads,
        folder=FOLDER_CHOICES,
        name=NAME_CHOICES,
        overwrite=st.booleans(),
        size=SIZES,
        mode=st.sampled_from(CREATE_MODES),
        frac=st.integers(0, 100),
    )
    def create(self, folder, name, overwrite, size, mode, frac):
        self.step("create")
        self.counter += 1
        filename = NAMES[name](self.counter)
        path = posixpath.join(self.ex, folder).rstrip("/")
        metadata = {"path": path, **({"filename": filename} if filename else {})}
        if overwrite:
            metadata["overwrite"] = "1"
        status, dest = self.expect_destination(path, filename, overwrite)
        data = self.bytes_for(size)
        deferred = mode.startswith("deferred")
        n = size * frac // 100
        body = None
        if mode in ("with_upload", "deferred_with_upload"):
            body = data[:n]
        elif mode == "with_upload_chunked":
            body = pieces(data[:n])
        elif mode == "with_upload_too_long":
            body = data + b"!" * (1 + frac)
        elif mode == "with_upload_too_long_chunked":
            body = pieces(data + b"!" * (1 + frac))
        before = self.staging_info_count()
        expect = self.expect_landing(dest)
        what = f"POST {mode} of {size} bytes to {brief(metadata)}"
        r = self.client.create(None if deferred else size, metadata, data=body)
        self.check_answer(r, what)
        if status != 201:
            self.note(f"{what} -> {r.status_code}")
            assert r.status_code == status, f"[creation status] {what}: {r.status_code} {r.text}"
            assert "Location" not in r.headers, f"[refused creation creates nothing] {what}"
            assert self.staging_info_count() == before, f"[refused creation leaves nothing] {what}"
            return multiple()
        too_long = mode.startswith("with_upload_too_long")
        if mode == "with_upload_too_long":  # refused before the body: created or not
            assert r.status_code == 413, f"[a body past Upload-Length: 413] {what}: {r.status_code}"
            if "Location" not in r.headers:
                self.note(f"{what} -> {r.status_code}")
                assert self.staging_info_count() == before, f"[refused creation] {what}"
                return multiple()
        if too_long:
            assert "Location" in r.headers, (
                f"[a body past Upload-Length keeps the bytes that fit] {what}: {r.status_code}"
            )
        else:
            assert r.status_code == 201, f"[creation status] {what}: {r.status_code} {r.text}"
        uid = Client.uid(r)
        up = Upload(
            uid,
            data,
            None if deferred else size,
            0,
            filename,
            dest,
            overwrite,
            "plain",
        )
        self.add(up, what, r)
        if too_long:
            h = self.request("HEAD", uid)
            if not (h.status_code == 200 and h.headers.get("Upload-Offset") == "0" and size):
                self.head_completion(up, expect, what)  # not left at 0: it kept what fitted
            return uid
        sent = 0 if body is None else n
        if body is not None and (n or mode == "with_upload_chunked"):
            assert r.headers.get("Upload-Offset") == str(sent), f"[Upload-Offset] {what}"
        up.offset = sent
        if not deferred and sent == size:
            assert r.headers.get(PATH_HEADER) or dest is None, (
                f"[a creation that finishes an upload says where it landed] {what}"
            )
            self.completed(up, expect, r.headers.get(PATH_HEADER))
        else:
            assert PATH_HEADER not in r.headers, f"[unfinished upload has no landed path] {what}"
        return uid

    @precondition(lambda self: len(self.uploads_by_id) < MAX_UPLOADS)
    @rule(target=uploads, size=SIZES, whole=st.booleans())
    def create_partial(self, size, whole):
        self.step("create_partial")
        self.counter += 1
        data = self.bytes_for(size)
        r = self.client.create(
            size, None, headers={"Upload-Concat": "partial"}, data=data if whole else None
        )
        self.check_answer(r, "POST partial")
        assert r.status_code == 201, f"[creation status] partial: {r.status_code} {r.text}"
        up = Upload(Client.uid(r), data, size, 0, "", None, False, "partial")
        self.add(up, f"POST partial of {size}{' with its bytes' if whole else ''}", r)
        if whole or size == 0:
            self.completed(up, ("store", False), r.headers.get(PATH_HEADER))
        return up.uid

    @precondition(lambda self: len(self.uploads_by_id) < MAX_UPLOADS and self.eligible("partial"))
    @rule(
        target=uploads,
        picks=st.lists(PICK, min_size=1, max_size=3),
        any_upload=st.booleans(),
        folder=FOLDER_CHOICES,
        name=NAME_CHOICES,
        overwrite=st.booleans(),
    )
    def concatenate(self, picks, any_upload, folder, name, overwrite):
        """A final upload of finished partials (or, with ``any_upload``, of any)."""
        self.step("concatenate")
        ups = list(self.uploads_by_id.values()) if any_upload else self.eligible("partial")
        parts = [ups[i % len(ups)].uid for i in picks]
        self.counter += 1
        filename = NAMES[name](self.counter)
        path = posixpath.join(self.ex, folder).rstrip("/")
        metadata = {"path": path, **({"filename": filename} if filename else {})}
        if overwrite:
            metadata["overwrite"] = "1"
        status, dest = self.expect_destination(path, filename, overwrite)
        allowed = {status} if status != 201 else set()
        for uid in parts:
            p = self.uploads_by_id[uid]
            if p.state == "gone":
                allowed |= set(GONE)
            elif p.kind != "partial":
                allowed.add(403)
            elif p.state != "complete":
                allowed.add(400)
        urls = " ".join(f"/api/tus/uploads/{uid}" for uid in parts)
        before = self.staging_info_count()
        expect = self.expect_landing(dest)
        nums = ", ".join(f"#{self.uploads_by_id[uid].num}" for uid in parts)
        what = f"POST final of {nums} to {brief(metadata)}"
        r = self.client.create(
            None, metadata, headers={"Upload-Concat": f"final;{urls}", "Upload-Defer-Length": None}
        )
        self.check_answer(r, what)
        if allowed:
            self.note(f"{what} -> {r.status_code}")
            assert r.status_code in allowed, f"[concatenation status] {what}: {r.status_code}"
            assert "Location" not in r.headers, f"[refused creation creates nothing] {what}"
            assert self.staging_info_count() == before, f"[refused creation leaves nothing] {what}"
            return multiple()
        assert r.status_code == 201, f"[concatenation status] {what}: {r.status_code} {r.text}"
        data = b"".join(self.uploads_by_id[uid].data for uid in parts)
        up = Upload(Client.uid(r), data, len(data), 0, filename, dest, overwrite, "final")
        self.add(up, what, r)
        for uid in parts:
            self.uploads_by_id[uid].state = "gone"
        self.completed(up, expect, r.headers.get(PATH_HEADER))
        return up.uid

    # ------------------------------------------------------------------ PATCH

    @precondition(lambda self: self.eligible("open"))
    @rule(
        pick=PICK,
        kind=st.sampled_from(PATCH_KINDS),
        frac=st.integers(0, 100),
        declare=st.booleans(),
        algorithm=st.sampled_from(ALGORITHMS),
    )
    def patch(self, pick, kind, frac, declare, algorithm):
        self.step("patch")
        up = self.pick("open", pick)
        u = up.uid
        total = len(up.data)
        off = up.offset
        headers = {}
        # (a body past a length nobody declared is not too long: declare it then)
        if up.size is None and (declare or kind in ("too_long", "chunked_too_long")):
            headers["Upload-Length"] = str(total)
        size = total if (up.size is not None or "Upload-Length" in headers) else None
        remaining = total - off
        short_n = frac * remaining // 101
        if kind in ("short", "chunked_short") or (kind == "checksum" and frac < 50):
            body = up.data[off : off + short_n]
        elif kind in ("exact", "chunked_exact", "checksum"):
            body = up.data[off:]
        elif kind in ("too_long", "chunked_too_long"):
            body = up.data[off:] + b"!" * (1 + frac)
        elif kind == "bad_checksum":
            body = up.data[off : off + max(1, short_n)]
            headers["Upload-Checksum"] = digest(algorithm, body + b"!")
        elif kind == "wrong_offset":
            body = up.data[off : off + 1]
        else:  # empty
            body = b""
        if kind == "checksum":
            headers["Upload-Checksum"] = digest(algorithm, body)
        offset = off
        if kind == "wrong_offset":
            offset = off - 1 if (frac % 2 and off) else off + 1 + frac % 3
        expect = self.expect_completion(up)
        chunked = kind.startswith("chunked")
        r = self.send_patch(u, offset, pieces(body) if chunked else body, headers)
        status = r.status_code
        what = f"PATCH {kind} at {offset}, {len(body)} bytes, {headers} on {up}"
        if expect[0] != "store":
            what += f" (expected: {expect[0]}{', name taken' if expect[1] else ''})"
        self.note(f"{what} -> {status}")
        if kind in ("wrong_offset", "bad_checksum"):
            expected = 409 if kind == "wrong_offset" else 460
            assert status == expected, f"[{kind}: {expected}] {what}: {status}"
            return  # and the checks after the step find everything as it was:
            # a refused PATCH declares no length either
        if kind == "too_long":
            assert status == 413, f"[a body past Upload-Length: 413] {what}: {status}"
            h = self.request("HEAD", u)
            new = int(h.headers.get("Upload-Offset", off)) if h.status_code == 200 else total
            if new != off:  # it may keep the bytes that fit: then it must have finished
                up.size = size
                self.head_completion(up, expect, what)
            return  # else refused before the body: nothing changed
        if size is not None:
            up.size = size
        if kind == "chunked_too_long":
            self.head_completion(up, expect, what)
            return
        new = off + len(body)
        if size is not None and new == size:
            if expect[0] == "blocked":
                assert status == 403, f"[a destination made unusable: 403] {what}: {status}"
            else:
                assert status == 204, f"[completing PATCH] {what}: {status} {r.text}"
                assert r.headers.get("Upload-Offset") == str(new), f"[Upload-Offset] {what}"
            up.offset = new
            self.completed(up, expect, r.headers.get(PATH_HEADER))
            return
        assert status == 204, f"[PATCH] {what}: {status} {r.text}"
        assert r.headers.get("Upload-Offset") == str(new), f"[Upload-Offset] {what}"
        assert PATH_HEADER not in r.headers, f"[unfinished upload has no landed path] {what}"
        up.offset = new

    @precondition(lambda self: self.eligible("finished"))
    @rule(pick=PICK)
    def patch_finished(self, pick):
        """A PATCH of an upload that takes no more bytes: finished, refused, gone."""
        self.step("patch_finished")
        up = self.pick("finished", pick)
        r = self.send_patch(up.uid, up.size or 0, b"x")
        self.note(f"PATCH 1 byte on {up} -> {r.status_code}")
        allowed = {"gone": set(GONE), "blocked": {403}}.get(up.state, {403})
        if up.tampered:
            allowed = {403, *GONE}
        assert r.status_code in allowed, (
            f"[PATCH of a {up.state} upload: {sorted(allowed)}] {up}: {r.status_code}"
        )

    # ------------------------------------------------------------------ DELETE

    @rule(u=uploads)
    def terminate(self, u):
        self.step("terminate")
        up = self.uploads_by_id[u]
        r = self.request("DELETE", u)
        self.note(f"DELETE {up} -> {r.status_code}")
        if up.state == "gone":
            allowed = set(GONE)
        elif up.tampered:
            allowed = {204, *GONE}
        else:
            allowed = {204}
        assert r.status_code in allowed, f"[DELETE of a {up.state} upload] {up}: {r.status_code}"
        if up.landed is not None:
            self.owner.pop(up.landed, None)  # the landed file is the user's now and stays
        up.state = "gone"

    # ------------------------------------------------------------------ the disk

    @precondition(lambda self: self.eligible("nameable"))
    @rule(pick=PICK, folder=st.booleans())
    def take_the_name(self, pick, folder):
        """Someone saves a file (or makes a folder) where an unfinished upload will land:
        it lands beside it, or replaces the file with overwrite (a folder: 403)."""
        self.step("take_the_name")
        up = self.pick("nameable", pick)
        self.note(f"disk: a {'folder' if folder else 'file'} is made where {up} will land")
        self.abs(posixpath.dirname(up.dest)).mkdir(parents=True, exist_ok=True)
        if folder:
            self.abs(up.dest).mkdir()
        else:
            self.write_file(up.dest, b"saved by the user meanwhile")

    @precondition(lambda self: self.eligible("breakable"))
    @rule(
        pick=PICK,
        how=st.sampled_from(["file", "symlink_out", "symlink_hidden"]),
        depth=st.integers(0, 3),
    )
    def break_the_folder(self, pick, how, depth):
        """A folder on an upload's way is replaced by a file, or by a symlink out of
        root_dir or into a hidden folder."""
        self.step("break_the_folder")
        up = self.pick("breakable", pick)
        parts = posixpath.dirname(up.dest).split("/")  # ex<N>/...
        rel = "/".join(parts[: 2 + depth % (len(parts) - 1)])
        self.note(f"disk: the folder {rel!r} on the way of {up} is replaced by: {how}")
        p = self.abs(rel)
        if os.path.islink(p) or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p)
        self.forget(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        if how == "file":
            self.write_file(rel, b"a file where a folder was")
        elif how == "symlink_out":
            p.symlink_to(self.outside)
        else:
            p.symlink_to(self.root / self.ex / ".hid")

    @precondition(lambda self: self.eligible("landed"))
    @rule(pick=PICK, how=st.sampled_from(["delete", "rename", "edit", "rewrite"]))
    def change_landed_file(self, pick, how):
        self.step("change_landed_file")
        up = self.pick("landed", pick)
        rel = up.landed
        self.note(f"disk: the landed file {rel!r} of {up} is changed: {how}")
        p = self.abs(rel)
        if how == "delete":
            p.unlink()
            self.forget(rel)
        elif how == "rename":
            self.counter += 1
            new = posixpath.join(posixpath.dirname(rel), f"moved-{self.counter}.bin")
            p.rename(self.abs(new))
            data = self.files[rel]
            self.forget(rel)
            self.files[new] = data
        else:  # edit: longer; rewrite: the same size, other bytes
            old = self.files[rel]
            data = old + b" edited" if how == "edit" else bytes(b ^ 0xFF for b in old)
            if data == old:  # an empty file rewritten
                data = b"x"
            p.write_bytes(data)
            self.forget(rel)
            self.files[rel] = data

    # ------------------------------------------------------------------ restarts

    @initialize(restarts=st.integers(0, MAX_RESTARTS))
    def plan(self, restarts):
        """How many restarts this example may have (restarts are slow: ~3 s each, and
        0 lets the shrinker drop them all at once)."""
        self.max_restarts = restarts

    @precondition(lambda self: self.restarts < self.max_restarts and self.uploads_by_id)
    @rule(kill=st.booleans())
    def restart(self, kill):
        self.step("restart")
        COUNT["restarts"] += 1
        self.restarts += 1
        self.note(f"restart after {'SIGKILL' if kill else 'SIGTERM'}")
        proc = self.env.proc
        if kill:
            proc.kill()
        else:
            proc.stop()
        proc.start()
        self.client = self.new_client()
        for up in self.uploads_by_id.values():
            up.checked = False  # a restart must not bring anything back

    # Rules are drawn uniformly among those enabled: these come up more often.
    create_more = create
    patch_more = patch_again = patch
    break_more = break_the_folder
    take_more = take_the_name

    # ------------------------------------------------------------------ invariants

    @invariant()
    def endpoint_loads(self):
        r = self.request("OPTIONS")
        assert r.status_code == 204 and r.headers.get("Tus-Resumable") == "1.0.0", (
            f"[the endpoint loads] OPTIONS {r.status_code}"
        )

    @invariant()
    def uploads_agree(self):
        for up in self.uploads_by_id.values():
            if not up.checked:
                self.check_upload(up)

    def check_upload(self, up: Upload) -> None:
        r = self.request("HEAD", up.uid)
        status = r.status_code
        landed = r.headers.get(PATH_HEADER)
        landed = unquote(landed) if landed is not None else None
        shown = ("Upload-Offset", "Upload-Length", "Upload-Defer-Length", PATH_HEADER)
        said = {k: r.headers[k] for k in shown if r.headers.get(k) is not None}
        what = f"HEAD {status} {brief(said)} for {up}"
        if landed is not None:
            assert not landed.startswith("/") and ".." not in landed.split("/"), what
            assert os.path.isfile(self.abs(landed)), f"[{PATH_HEADER} exists] {what}"
        if status == 200:
            offset = int(r.headers["Upload-Offset"])
            length = r.headers.get("Upload-Length")
            staged = self.root / ".tus" / up.uid
            if staged.exists():
                assert offset <= staged.stat().st_size, f"[offset <= staged bytes] {what}"
            if length is not None:
                assert offset <= int(length), f"[offset <= length] {what}"
                if offset == int(length) and up.filename:
                    assert landed is not None, f"[complete means landed] {what}"
                    if not up.tampered:
                        assert self.abs(landed).read_bytes() == up.data, (
                            f"[landed bytes are the bytes sent] {what}"
                        )
        get = self.request("GET", up.uid)
        gwhat = f"GET {get.status_code} for {up}"
        if get.status_code == 200:
            assert len(get.content) == int(get.headers["Content-Length"]), (
                f"[GET sends Content-Length bytes] {gwhat}"
            )
        # the model's view
        staging = self.root / ".tus"
        if up.state == "gone":
            assert not (staging / up.uid).exists(), f"[a gone upload leaves no data] {up}"
            assert not (staging / f"{up.uid}.info").exists(), f"[... and no record] {up}"
        if up.state == "landed":
            assert not (staging / up.uid).exists(), f"[a landed upload leaves no data] {up}"
        if up.state == "gone" or up.tampered:
            up.checked = up.state == "gone"
            assert status in GONE, f"[gone or changed on disk: HEAD 404/410] {what}"
            assert get.status_code in GONE, f"[gone or changed on disk: GET 404/410] {gwhat}"
            return
        if up.state == "blocked":
            assert status == 403, f"[unusable destination: HEAD 403] {what}"
            assert get.status_code == 200 and get.content == up.data, (
                f"[unusable destination: GET serves the bytes] {gwhat}"
            )
            return
        assert status == 200, f"[HEAD] {what}"
        assert int(r.headers["Upload-Offset"]) == up.offset, f"[HEAD offset] {what}"
        if up.size is None:
            assert r.headers.get("Upload-Defer-Length") == "1", (
                f"[the length stays deferred until a PATCH that is not refused declares it] {what}"
            )
        else:
            assert r.headers.get("Upload-Length") == str(up.size), f"[Upload-Length] {what}"
        if up.state == "open":
            assert landed is None, f"[unfinished upload has no landed path] {what}"
            assert get.status_code == 400, f"[GET of an unfinished upload: 400] {gwhat}"
            return
        assert get.status_code == 200 and get.content == up.data, f"[GET bytes] {gwhat}"
        if up.state == "landed":
            assert landed == up.landed, f"[{PATH_HEADER} stays where it landed] {what}"
        else:
            assert landed is None, f"[no filename, no landed path] {what}"

    @invariant()
    def disk_is_as_expected(self):
        assert not any(self.outside.iterdir()), (
            f"[nothing outside root_dir] {list(self.outside.iterdir())}"
        )
        listing = sorted(p.name for p in self.env.base.iterdir())
        assert listing == self.base_listing, f"[nothing outside root_dir] {listing}"
        ex = self.root / self.ex
        found = set()
        for dirpath, _dirs, names in os.walk(ex):
            for name in names:
                if not os.path.islink(Path(dirpath, name)):  # a symlink the model made
                    found.add(Path(dirpath, name).relative_to(self.root).as_posix())
        assert found == set(self.files), (
            f"[no unexpected file, none missing] extra {sorted(found - set(self.files))},"
            f" missing {sorted(set(self.files) - found)}"
        )
        for rel, data in self.files.items():
            assert self.abs(rel).read_bytes() == data, f"[no file clobbered] {rel}"

    @invariant()
    def no_traceback_in_the_log(self):
        log = self.env.new_log()
        assert "Traceback" not in log, f"[no traceback in the server log] {log[-3000:]}"


Model = seed(SEED)(Model)


@contextlib.contextmanager
def shrink_budget(seconds: int):
    """hypothesis shrinks for up to 300 s; no setting bounds it, so its engine's
    constant is set for the duration of this test (left alone if it is gone)."""
    from hypothesis.internal.conjecture import engine

    before = getattr(engine, "MAX_SHRINKING_SECONDS", None)
    if before is not None and seconds > 0:
        engine.MAX_SHRINKING_SECONDS = seconds
    try:
        yield
    finally:
        if before is not None:
            engine.MAX_SHRINKING_SECONDS = before


@pytest.mark.timeout(0 if TORTURE else 900)
def test_model(env, capsys):
    Model.env = env
    with capsys.disabled():
        print(
            f"\n[model] seed={SEED} examples={EXAMPLES} steps={STEPS}"
            f" (replay: TUS_SEED={SEED} TUS_MODEL_EXAMPLES={EXAMPLES} TUS_MODEL_STEPS={STEPS})"
        )
    try:
        with shrink_budget(SHRINK):
            run_state_machine_as_test(
                Model,
                settings=settings(
                    max_examples=EXAMPLES,
                    stateful_step_count=STEPS,
                    deadline=None,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                    phases=list(Phase) if SHRINK > 0 else [Phase.explicit, Phase.generate],
                ),
            )
    finally:
        record_figures("model", dict(COUNT, rules=dict(RULES), seed=SEED))
        with capsys.disabled():
            print(f"\n[model] {COUNT} seed={SEED}\n[model] steps: {dict(RULES)}")


# ---------------------------------------------------------------------- scenarios
# The sequences the rules above must get right, run as written (the state machine
# finds them too, but not in every run): each step, then every check.


def step(rule_name: str, **kwargs):
    return rule_name, kwargs


def create(**kwargs):
    defaults = dict(folder="", name="plain", overwrite=False, size=10, mode="plain", frac=0)
    return step("create", **{**defaults, **kwargs})


def patch(kind="exact", pick=0, frac=0, declare=False, algorithm="sha256"):
    return step("patch", pick=pick, kind=kind, frac=frac, declare=declare, algorithm=algorithm)


def swap(how, depth=0, pick=0):
    return step("break_the_folder", pick=pick, how=how, depth=depth)


def change(how, pick=0):
    return step("change_landed_file", pick=pick, how=how)


def restart(kill):
    return step("restart", kill=kill)


FIRST = ("upload", 0)  # the upload the first creation made
SCENARIOS = {
    "long name taken meanwhile lands beside within 255 bytes": [
        create(name="long_same"),
        step("take_the_name", pick=0, folder=False),
        patch(),
    ],
    "255-byte name taken meanwhile": [
        create(name="long255", folder="d1"),
        step("take_the_name", pick=0, folder=False),
        patch(),
    ],
    "name taken meanwhile, overwrite replaces it": [
        create(name="same", folder="new1", overwrite=True),
        step("take_the_name", pick=0, folder=False),
        patch(kind="chunked_exact"),
    ],
    "name taken by a folder meanwhile: lands beside it": [
        create(name="unicode", folder="ünï/文件夹"),
        step("take_the_name", pick=0, folder=True),
        patch(),
    ],
    "name taken by a folder meanwhile, overwrite: 403": [
        create(overwrite=True),
        step("take_the_name", pick=0, folder=True),
        patch(),
        restart(kill=True),
    ],
    "folder swapped for a symlink out, then SIGKILL": [
        create(folder="new2/deep"),
        swap("symlink_out"),
        patch(),
        restart(kill=True),
    ],
    "folder swapped for a symlink out, chunked body past the length, then SIGTERM": [
        create(folder="new2/deep", size=100),
        swap("symlink_out", depth=1),
        patch(kind="chunked_too_long"),
        restart(kill=False),
    ],
    "folder swapped for a symlink into a hidden folder": [
        create(folder="d1/d2"),
        swap("symlink_hidden", depth=1),
        patch(kind="checksum", frac=80),
    ],
    "folder behind an inside symlink swapped for a file, then DELETE": [
        create(folder="lnk_in/deep"),
        swap("file"),
        patch(),
        step("terminate", u=FIRST),
    ],
    "inside symlink's target swapped for a hidden one: creations through it refused": [
        create(folder="lnk_in"),
        swap("symlink_hidden"),
        patch(),
        create(folder="lnk_in"),
    ],
    "landed file's folder swapped for a file": [
        create(folder="new2/deep"),
        patch(),
        swap("file"),
    ],
    "landed file deleted": [create(), patch(), change("delete")],
    "landed file renamed, then SIGTERM": [create(), patch(), change("rename"), restart(kill=False)],
    "landed file edited, then DELETE": [
        create(folder="d1"),
        patch(),
        change("edit"),
        step("terminate", u=FIRST),
    ],
    "landed file rewritten with as many bytes": [create(), patch(), change("rewrite")],
    "overwrite at creation of a landed file": [
        create(name="same"),
        patch(),
        create(name="same", overwrite=True, mode="with_upload", frac=100),
    ],
    "file on the path refused": [create(folder="notes.txt/sub")],
    "chunked body past the length completes and lands": [
        create(size=1000),
        patch(kind="chunked_too_long", frac=50),
    ],
    "body past the length with Content-Length: 413": [
        create(size=1000),
        patch(kind="too_long", frac=50),
    ],
    "creation-with-upload past the length": [create(mode="with_upload_too_long")],
    "creation-with-upload past the length of an empty file": [
        create(mode="with_upload_too_long", size=0)
    ],
    "chunked creation-with-upload past the length": [
        create(mode="with_upload_too_long_chunked", folder="ünï/文件夹")
    ],
    "chunked creation-with-upload of an empty file": [create(mode="with_upload_chunked", size=0)],
    "deferred length declared by an empty PATCH": [
        create(mode="deferred"),
        patch(),
        patch(kind="empty", declare=True),
    ],
    "deferred length, chunked body past it": [
        create(mode="deferred_with_upload", frac=50),
        patch(kind="chunked_too_long", frac=3),
    ],
    "a PATCH refused for its offset declares no length": [
        create(mode="deferred", size=100),
        patch(kind="short", frac=50),
        patch(kind="wrong_offset", declare=True, frac=1),
    ],
    "a PATCH refused for its offset declares no length, even the last one": [
        create(mode="deferred"),
        patch(),
        patch(kind="wrong_offset", declare=True, frac=1),
    ],
    "a PATCH refused for its checksum declares no length": [
        create(mode="deferred", size=100),
        patch(kind="bad_checksum", declare=True, frac=50),
    ],
    "a PATCH refused for its checksum declares no length, even the last one": [
        create(mode="deferred"),
        patch(),
        patch(kind="bad_checksum", declare=True),
    ],
    "a body past a length declared with it, with Content-Length: 413, nothing declared": [
        create(mode="deferred_with_upload", frac=50),
        patch(kind="too_long", frac=7),
    ],
    "a PATCH refused for its offset completes nothing (empty file)": [
        create(mode="deferred", size=0),
        patch(kind="wrong_offset", declare=True, frac=1),
    ],
    "concatenation of finished partials lands": [
        step("create_partial", size=10, whole=True),
        step("create_partial", size=3, whole=False),
        patch(),
        step(
            "concatenate",
            picks=[0, 1, 0],
            any_upload=False,
            folder="ünï/文件夹",
            name="unicode",
            overwrite=False,
        ),
    ],
    "concatenation of a non-partial refused": [
        step("create_partial", size=10, whole=True),
        create(),
        step(
            "concatenate",
            picks=[0, 1],
            any_upload=True,
            folder="",
            name="plain",
            overwrite=False,
        ),
    ],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(env, name):
    Model.env = env
    machine = Model()
    machine.in_hypothesis = False
    machine.max_restarts = 5
    made: list[str] = []
    checks = [machine.endpoint_loads, machine.uploads_agree, machine.disk_is_as_expected]
    checks.append(machine.no_traceback_in_the_log)
    try:
        for check in checks:
            check()
        for rule_name, kwargs in SCENARIOS[name]:
            kwargs = {k: made[v[1]] if v == FIRST else v for k, v in kwargs.items()}
            result = getattr(machine, rule_name)(**kwargs)
            if isinstance(result, str):
                made.append(result)
            for check in checks:
                check()
    except AssertionError as exc:
        steps = "\n".join(machine.notes)
        raise AssertionError(f"{exc}\n\nsteps:\n{steps}") from None
