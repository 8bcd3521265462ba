"""Crash-resume torture: a real ``jupyter server`` process is SIGKILLed again and again
(at armed crash points inside the store, and from outside mid-PATCH or between
requests), restarted on the same root_dir, and its uploads resumed by a client that
checks every byte.

Replay a run with ``TUS_SEED=<seed>``; ``TUS_TORTURE_KILLS`` sets how many kills.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import random
import time
from pathlib import Path

import pytest
import requests

from .helpers import (
    Client,
    b64,
    env_int,
    file_sha256,
    record_figures,
    seed_from_env,
    server,
    sha256,
    staging_problems,
    wait_for,
    workspace_files,
)

# (crash point, largest n to draw): see server_faults.py
POINTS = {
    "write": 16,
    "replace_before": 6,
    "replace_after": 6,
    "fsync": 3,
    "link_before": 2,
    "link_after": 2,
    "copy": 2,
    "unlink": 4,
    "truncate": 1,
}
PIECE = 64 * 1024


class ServerDied(Exception):
    pass


@dataclasses.dataclass
class Upload:
    name: str  # destination, relative to root_dir ("" for a partial)
    data: bytes
    kind: str  # plain | checksum | defer | cwu | partial | final | doomed
    uid: str | None = None
    location: str | None = None
    acked: int = 0
    done: bool = False
    terminated: bool = False
    expirable: bool = False
    deleting: bool = False
    parts: list[Upload] = dataclasses.field(default_factory=list)

    @property
    def sha(self) -> str:
        return sha256(self.data)


class KillingBody:
    def __init__(self, torture: Torture, data: bytes, kill_at: int | None) -> None:
        self.torture, self.data, self.kill_at, self.pos = torture, data, kill_at, 0

    def __len__(self) -> int:
        return len(self.data)

    def read(self, n: int = -1) -> bytes:
        if self.kill_at is not None and self.pos >= self.kill_at:
            self.kill_at = None
            self.torture.proc.kill()
            self.torture.count_kill("external mid-PATCH")
            self.torture._body_kill = True
            raise ServerDied()
        n = len(self.data) - self.pos if n is None or n < 0 else n
        if self.kill_at is not None:
            n = min(n, max(self.kill_at - self.pos, 1))
        block = self.data[self.pos : self.pos + n]
        self.pos += len(block)
        return block


class Torture:
    def __init__(self, root: Path, seed: int, log: Path) -> None:
        self.root = root
        self.staging = root / ".tus"
        self.rng = random.Random(seed)
        self.seed = seed
        self.crash_log = log
        self.proc = server(root, env={}, log_path=root.parent / "server.log")
        self.client = Client(self.proc, timeout=30)
        self.uploads: list[Upload] = []
        self.kills: dict[str, int] = {}
        self.counter = 0
        self.steps = 0

    # ----------------------------------------------------------------- server life

    def start(self, env: dict[str, str], args: list[str] | None = None) -> None:
        self.proc.env = {"TUS_CRASH_LOG": str(self.crash_log), **env}
        self.proc.args = [a for a in self.proc.args if not a.startswith("--TusApp.")]
        self.proc.args += args or []
        while True:
            try:
                self.proc.start(timeout=60)
                return
            except RuntimeError:
                if self.proc.proc.returncode != -9:
                    raise
                # the armed point fired during startup recovery: a crash in recovery
                self.count_kill(env.get("TUS_CRASH", "?").split(":")[0] + "@recovery")
                self._fired = len(self.crash_log.read_text().splitlines())
                self.proc.env = {"TUS_CRASH_LOG": str(self.crash_log)}

    def count_kill(self, what: str) -> None:
        self.kills[what] = self.kills.get(what, 0) + 1

    @property
    def total_kills(self) -> int:
        return sum(self.kills.values())

    def alive(self) -> bool:
        return self.proc.proc.poll() is None

    def died(self) -> bool:
        """After a failed request: did the server die? (It may take a moment.)"""
        try:
            self.proc.proc.wait(10)
        except Exception:
            return False
        return True

    def call(self, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except (requests.RequestException, OSError) as exc:
            if self.died():
                raise ServerDied() from exc
            raise

    # ----------------------------------------------------------------- workload

    def new_upload(self) -> Upload:
        self.counter += 1
        kind = self.rng.choice(["plain", "plain", "checksum", "defer", "cwu", "final", "doomed"])
        size = self.rng.choice([0, 1, 1000, *[self.rng.randint(PIECE, 2 << 20)] * 6])
        data = self.rng.randbytes(size)
        folder = self.rng.choice(["", "in", "in/deep"])
        name = f"{folder}/f{self.counter}.bin".lstrip("/")
        up = Upload(name=name, data=data, kind=kind)
        if kind == "final":
            if size < 3:
                up.kind = "plain"
            else:
                cuts = sorted(self.rng.sample(range(1, size), self.rng.randint(1, 2)))
                bounds = [0, *cuts, size]
                up.parts = [
                    Upload(name="", data=data[a:b], kind="partial")
                    for a, b in itertools.pairwise(bounds)
                ]
        self.uploads.append(up)
        return up

    def active(self) -> list[Upload]:
        return [u for u in self.uploads if not u.done and not u.terminated]

    def body(self, data: bytes, kill_at: int | None):
        """The PATCH body, read by the HTTP client with a known length; SIGKILL the
        server once ``kill_at`` bytes (modulo the body length) have been sent."""
        return KillingBody(self, data, None if kill_at is None else kill_at % len(data))

    def step(self, up: Upload, kill_at: int | None = None) -> None:
        """One request's worth of progress on ``up`` (or on one of its parts)."""
        self.steps += 1
        if self.cleanup_round:  # an expiry sweep may remove it at any time
            up.expirable = True
        if up.kind == "final" and not all(p.done for p in up.parts):
            self.step(next(p for p in up.parts if not p.done), kill_at)
            return
        if up.uid is None:
            self.create(up, kill_at)
        else:
            self.resume(up, kill_at)

    def create(self, up: Upload, kill_at: int | None) -> None:
        headers = {}
        metadata = {"filename": up.name.rsplit("/", 1)[-1]}
        if "/" in up.name:
            metadata["path"] = up.name.rsplit("/", 1)[0]
        if up.kind == "partial":
            metadata = {}
            headers["Upload-Concat"] = "partial"
        if up.kind == "final":
            headers["Upload-Concat"] = "final;" + " ".join(p.location for p in up.parts)
            size = None
        elif up.kind == "defer":
            size = None
        else:
            size = len(up.data)
        data = None
        n = 0
        if up.kind == "cwu":
            n = self.rng.randint(0, len(up.data))
            data = self.body(up.data[:n], kill_at) if n else None
        if up.kind == "final":
            headers["Upload-Metadata"] = ",".join(
                f"{k} {b64(v.encode())}" for k, v in metadata.items()
            )
            r = self.call(self.client.request, "POST", headers=headers)
        else:
            r = self.call(self.client.create, size, metadata, headers=headers, data=data)
        if r.status_code == 201:
            up.location = r.headers["Location"]
            up.uid = Client.uid(r)
            if up.kind == "cwu" and n:
                assert int(r.headers["Upload-Offset"]) == n
                up.acked = n
            if up.kind == "final" or (
                up.kind != "defer" and (len(up.data) == 0 or up.acked == len(up.data))
            ):
                self.finished(up)
            return
        if (
            r.status_code == 404
            and up.kind == "final"
            and not (self.root / up.name).exists()
            and any(p.expirable for p in up.parts)
        ):
            # a finished partial expired in a sweep before the final came: redo them
            for p in up.parts:
                p.uid, p.location, p.acked, p.done, p.expirable = None, None, 0, False, False
            return
        if r.status_code in (404, 409) and (up.kind == "final" or r.status_code == 409):
            # An earlier POST did all the work (a final concatenation, an empty file, a
            # whole file sent with the creation) but its answer was lost to a kill, and
            # recovery finished it: the file must be there, whole.
            self.expect_landed(up)
            self.finished(up)
            return
        raise AssertionError(f"creation of {up.name} ({up.kind}): {r.status_code} {r.text}")

    def resume(self, up: Upload, kill_at: int | None) -> None:
        r = self.call(self.client.head, up.uid)
        if r.status_code in (404, 410) and up.expirable:
            # removed by an expiry sweep while unfinished: start again, as a client does
            up.uid, up.location, up.acked, up.expirable = None, None, 0, False
            return
        if r.status_code in (404, 410) and up.deleting:
            # the DELETE did its work but its answer was lost to a kill
            up.terminated = True
            self.check_terminated(up)
            return
        assert r.status_code == 200, (up.name, up.kind, r.status_code, r.text)
        offset = int(r.headers["Upload-Offset"])
        self.check_offset(up, offset)
        if offset == len(up.data) and (
            up.kind != "defer" or r.headers.get("Upload-Length") == str(len(up.data))
        ):
            self.finished(up)
            return
        if up.kind == "doomed" and (offset > 0 or self.rng.random() < 0.3):
            up.deleting = True
            r = self.call(self.client.delete, up.uid)
            assert r.status_code == 204, (r.status_code, r.text)
            up.terminated = True
            self.check_terminated(up)
            return
        end = self.rng.choice([len(up.data), self.rng.randint(offset, len(up.data))])
        chunk = up.data[offset:end]
        headers = {}
        if up.kind == "checksum" or (up.kind != "plain" and self.rng.random() < 0.3):
            algo = self.rng.choice(["sha1", "md5", "sha256"])
            headers["Upload-Checksum"] = f"{algo} {b64(hashlib.new(algo, chunk).digest())}"
        if up.kind == "defer" and (end == len(up.data) or self.rng.random() < 0.3):
            headers["Upload-Length"] = str(len(up.data))
        data = self.body(chunk, kill_at) if chunk else b""
        r = self.call(self.client.patch, up.uid, offset, data, headers=headers)
        assert r.status_code == 204, (up.name, up.kind, r.status_code, r.text)
        up.acked = int(r.headers["Upload-Offset"])
        assert up.acked == end, (up.acked, end)
        if (end == len(up.data) and "Upload-Length" in headers) or (
            end == len(up.data) and up.kind != "defer"
        ):
            self.finished(up)

    def finished(self, up: Upload) -> None:
        up.done = True
        if up.kind != "partial":
            self.expect_landed(up)

    # ----------------------------------------------------------------- checks

    def check_offset(self, up: Upload, offset: int) -> None:
        where = f"{up.name or 'partial'} ({up.kind}, {up.uid}) seed={self.seed}"
        assert up.acked <= offset <= len(up.data), f"{where}: HEAD {offset}, acked {up.acked}"
        data = self.staging / up.uid
        if data.exists():
            on_disk = data.read_bytes()
            assert offset <= len(on_disk), f"{where}: offset {offset} > {len(on_disk)} on disk"
            assert on_disk[:offset] == up.data[:offset], f"{where}: staged bytes differ"

    def expect_landed(self, up: Upload) -> None:
        path = self.root / up.name
        assert path.is_file(), f"{up.name} ({up.kind}) finished but not landed, seed={self.seed}"
        assert file_sha256(path) == up.sha, f"{up.name}: wrong content, seed={self.seed}"

    def check_terminated(self, up: Upload) -> None:
        r = self.call(self.client.head, up.uid)
        assert r.status_code in (404, 410), r.status_code
        leftovers = [p.name for p in self.staging.glob(f"{up.uid}*")]
        assert not leftovers, leftovers
        assert not (self.root / up.name).exists()

    def check_disk(self) -> None:
        problems = staging_problems(self.staging)
        expected = {u.name: u for u in self.uploads if u.kind != "partial"}
        for rel, path in workspace_files(self.root).items():
            if path.name.endswith(".tus-tmp"):
                problems.append(f"half-moved temp file {rel}")
                continue
            up = expected.get(rel)
            if up is None:
                problems.append(f"unexpected file in the workspace: {rel}")
            elif up.terminated:
                problems.append(f"terminated upload landed: {rel}")
            elif file_sha256(path) != up.sha:
                problems.append(f"half-moved or wrong file at {rel}")
        assert not problems, f"seed={self.seed} kills={self.kills}: {problems}"

    # ----------------------------------------------------------------- rounds

    def round(self) -> None:
        """Start the server armed (or not), check what recovery left, work until the
        server dies or the round's budget is spent, then kill it from outside."""
        point = self.rng.choice([*POINTS, "external", "external"])
        cleanup = self.rng.random() < 0.12
        env, args = {}, []
        if point != "external":
            env["TUS_CRASH"] = f"{point}:{self.rng.randint(1, POINTS[point])}"
        self.cleanup_round = cleanup
        if cleanup:
            args = ["--TusApp.expiration=0.5", "--TusApp.cleanup_interval=0.2"]
            for up in self.active():
                up.expirable = True
                for p in up.parts:
                    p.expirable = True
        self.start(env, args)
        while len(self.active()) < 4:
            self.new_upload()
        budget = self.rng.randint(1, 12)
        mid_patch = point == "external" and self.rng.random() < 0.7
        try:
            if cleanup:
                # the sweep runs from the start and removes an expired upload's files
                # one by one: what recovery left is checked once it is done, never
                # halfway through a removal (a record seen, its bytes gone the next
                # moment)
                self.wait_sweep()
            self.check_disk()
            for _ in range(budget):
                if not self.active():
                    self.new_upload()
                up = self.rng.choice(self.active())
                self.step(up, self.rng.randint(0, 1 << 30) if mid_patch else None)
            if cleanup:  # give the armed sweep time to run into its crash point
                self.wait_sweep()
        except ServerDied:
            fired = self.crash_log.read_text().splitlines() if self.crash_log.exists() else []
            if len(fired) > self._fired:
                self._fired = len(fired)
                self.count_kill(point)
            elif self._body_kill:
                self._body_kill = False  # counted where it happened
            else:
                raise AssertionError(f"the server died by itself, seed={self.seed}") from None
            self.proc.kill()
            return
        self.proc.kill()
        self.count_kill("external between requests")

    _fired = 0
    cleanup_round = False
    _body_kill = False

    def wait_sweep(self) -> None:
        def swept():
            if not self.alive():
                raise ServerDied()
            records = [p for p in self.staging.glob("*.info") if p.exists()]
            # what it removes: unfinished uploads and partial ones (finished or not),
            # each whole (data, record, then lock file)
            return not any(_expirable(p) for p in records) and all(
                (self.staging / f"{p.name[: -len('.lock')]}.info").exists()
                for p in self.staging.glob("*.lock")
            )

        wait_for(swept, 20, "the expiry sweep")

    def finish_all(self) -> None:
        self.cleanup_round = False
        self.start({})
        self.check_disk()
        guard = 0
        while self.active():
            guard += 1
            assert guard < 10_000
            self.step(self.active()[0])
        self.check_disk()


def _expirable(info_path: Path) -> bool:
    """Unfinished or partial: what an expiry sweep removes (FileStore.expired_uploads)."""
    import json

    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        return False
    return not info.get("is_complete") or bool(info.get("is_partial"))


def _complete(info_path: Path) -> bool:
    import json

    try:
        return bool(json.loads(info_path.read_text()).get("is_complete"))
    except (OSError, ValueError):
        return True


@pytest.mark.timeout(1200)
def test_kill_restart_resume_loses_nothing(tmp_path, capsys):
    seed = seed_from_env()
    target = env_int("TUS_TORTURE_KILLS", 50)
    root = tmp_path / "root"
    root.mkdir()
    t = Torture(root, seed, tmp_path / "fired.log")
    with capsys.disabled():
        print(f"\n[crash torture] seed={seed} kills={target} (replay: TUS_SEED={seed})")
    started = time.monotonic()
    try:
        while t.total_kills < target:
            t.round()
        t.finish_all()
        # Orphans (creations whose answer a kill swallowed) must not stay for good:
        # a short expiry removes every unfinished upload, and no finished file.
        t.proc.stop()
        t.start({}, ["--TusApp.expiration=0.5", "--TusApp.cleanup_interval=0.2"])

        def swept():
            unfinished = [p for p in t.staging.glob("*.info") if not _complete(p)]
            staged = [p for p in t.staging.iterdir() if "." not in p.name]
            return not unfinished and not staged

        wait_for(swept, 30, "the sweep of orphaned uploads")
        t.check_disk()
    finally:
        t.proc.stop()
    landed = [u for u in t.uploads if u.done and u.kind != "partial" and not u.terminated]
    lost = sum(len(u.data) for u in landed if file_sha256(root / u.name) != u.sha)
    figures = {
        "seed": seed,
        "kills": t.total_kills,
        "kills_by_point": dict(sorted(t.kills.items())),
        "uploads_finished": len(landed),
        "uploads_terminated": sum(u.terminated for u in t.uploads),
        "bytes_verified": sum(len(u.data) for u in landed),
        "bytes_lost": lost,
        "requests_steps": t.steps,
        "seconds": round(time.monotonic() - started, 1),
    }
    record_figures("crash_torture", figures)
    with capsys.disabled():
        print(f"[crash torture] {figures}")
    assert lost == 0
    assert t.total_kills >= target
