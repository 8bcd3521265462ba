"""Prometheus metrics on jupyter-server's own ``{base_url}metrics``: each counter moves
by the right amount for what a client did, through a real server and a real client."""

from __future__ import annotations

import errno
import os
import re
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from tusclient import client as tus_client

from jupyter_tus import metrics

from .conftest import encode_metadata
from .servers import wait_until
from .test_connections import RawPatch, wait_for

OPERATIONS = Path(__file__).parent.parent / "docs" / "operations.md"
Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def scrape(server) -> Samples:
    r = requests.get(server.url + "metrics", headers=server.auth, timeout=10)
    assert r.status_code == 200, r.text
    return parse(r.text)


def test_an_upload_through_a_real_server_moves_the_counters(server_process, tmp_path):
    server = server_process
    before = scrape(server)

    # A real client, four PATCHes of at most 1 MiB.
    src = tmp_path / "data.bin"
    size = 3 * 1024 * 1024 + 123
    src.write_bytes(os.urandom(size))
    c = tus_client.TusClient(server.endpoint, headers=server.auth)
    c.uploader(str(src), chunk_size=1024 * 1024, metadata={"filename": "data.bin"}).upload()
    assert (server.root_dir / "data.bin").stat().st_size == size
    done = scrape(server)
    assert moved(before, done, "jupyter_tus_requests_total", method="POST", status="201") == 1
    assert moved(before, done, "jupyter_tus_requests_total", method="PATCH", status="204") == 4
    assert moved(before, done, "jupyter_tus_received_bytes_total") == size
    assert moved(before, done, "jupyter_tus_uploads_created_total") == 1
    assert moved(before, done, "jupyter_tus_uploads_finished_total") == 1
    assert value(done, "jupyter_tus_uploads_in_progress") == 0
    assert value(done, "jupyter_tus_staged_bytes") == 0

    # An upload left half-way counts as in progress, with its bytes staged.
    tus = {**server.auth, "Tus-Resumable": "1.0.0"}
    r = requests.post(
        server.endpoint,
        headers={**tus, "Upload-Length": "1000", "Upload-Metadata": encode_metadata({})},
    )
    url = f"http://127.0.0.1:{server.port}{r.headers['Location']}"
    patch = {**tus, "Content-Type": "application/offset+octet-stream"}
    assert requests.patch(url, headers={**patch, "Upload-Offset": "0"}, data=b"p" * 300).ok
    half = scrape(server)
    assert value(half, "jupyter_tus_uploads_in_progress") == 1
    assert value(half, "jupyter_tus_staged_bytes") == 300
    # A wrong offset is an error, by status and name.
    r = requests.patch(url, headers={**patch, "Upload-Offset": "7"}, data=b"q")
    assert r.status_code == 409
    # Unauthenticated: jupyter-server's own refusal.
    assert requests.head(url, headers={"Tus-Resumable": "1.0.0"}).status_code == 403
    assert requests.delete(url, headers=tus).status_code == 204
    after = scrape(server)
    assert moved(half, after, "jupyter_tus_errors_total", status="409", code="OffsetMismatch") == 1
    assert moved(half, after, "jupyter_tus_requests_total", method="PATCH", status="409") == 1
    assert moved(half, after, "jupyter_tus_errors_total", status="403", code="HTTPError") == 1
    assert moved(half, after, "jupyter_tus_uploads_terminated_total") == 1
    assert moved(before, after, "jupyter_tus_uploads_created_total") == 2
    assert moved(before, after, "jupyter_tus_received_bytes_total") == size + 300
    assert moved(before, after, "jupyter_tus_requests_total", method="DELETE", status="204") == 1
    assert value(after, "jupyter_tus_uploads_in_progress") == 0
    assert value(after, "jupyter_tus_staged_bytes") == 0


# ----------------------------------------------------------- the in-process server


@pytest.fixture
def scrape_here(jp_fetch):
    async def scrape() -> Samples:
        r = await jp_fetch("metrics")
        return parse(r.body.decode())

    return scrape


async def test_a_takeover_is_counted(
    tus, scrape_here, staging, jp_http_port, jp_base_url, jp_auth_header
):
    uid = await tus.create_id(4096, {"filename": "t.bin"})
    stale = RawPatch(jp_http_port, f"{jp_base_url}api/tus/uploads/{uid}", jp_auth_header, 0, 4096)
    await stale.open()
    await stale.send(b"s" * 1000)
    await wait_for(lambda: (staging / uid).stat().st_size == 1000)
    before = await scrape_here()
    assert (await tus.head(uid)).headers["Upload-Offset"] == "1000"
    after = await scrape_here()
    assert moved(before, after, "jupyter_tus_lock_takeovers_total") == 1
    assert value(after, "jupyter_tus_staged_bytes") >= 1000
    stale.close()


@pytest.mark.parametrize("tus_config", [{"expiration": 0.001, "cleanup_interval": 0}])
async def test_an_expiry_is_counted(tus, tus_app, tus_config, scrape_here):
    uid = await tus.create_id(10, {"filename": "x.bin"})
    store = tus_app.manager.store
    wait_until(lambda: store.get_info(uid).expires < time.time(), what="the expiry")
    before = await scrape_here()
    await tus_app._sweep()
    after = await scrape_here()
    assert moved(before, after, "jupyter_tus_uploads_expired_total") == 1
    assert (await tus.head(uid)).code == 404


async def test_landing_failures_are_counted_by_kind(
    tus, tus_app, scrape_here, jp_root_dir, monkeypatch
):
    store = tus_app.manager.store
    real_land = store._land

    def read_only(info):  # fault injection: a read-only destination, once
        monkeypatch.setattr(store, "_land", real_land)
        raise OSError(errno.EROFS, "Read-only file system")

    before = await scrape_here()
    uid = await tus.create_id(3, {"filename": "late.txt"})
    monkeypatch.setattr(store, "_land", read_only)
    assert (await tus.patch(uid, 0, b"abc")).code == 503
    # A folder on the way turned into a file: refused for good.
    (jp_root_dir / "sub").mkdir()
    uid2 = await tus.create_id(3, {"filename": "a.txt", "path": "sub"})
    (jp_root_dir / "sub").rmdir()
    (jp_root_dir / "sub").write_text("now a file")
    assert (await tus.patch(uid2, 0, b"abc")).code == 403
    mid = await scrape_here()
    assert moved(before, mid, "jupyter_tus_landing_failures_total", kind="retry") == 1
    assert moved(before, mid, "jupyter_tus_landing_failures_total", kind="refused") == 1
    assert moved(before, mid, "jupyter_tus_errors_total", status="503", code="LandingFailed") == 1
    # The retry on the next request lands it: finished, once.
    assert (await tus.head(uid)).code == 200
    after = await scrape_here()
    assert moved(mid, after, "jupyter_tus_uploads_finished_total") == 1
    assert (jp_root_dir / "late.txt").read_bytes() == b"abc"


def test_every_metric_is_documented():
    text = OPERATIONS.read_text()
    names = [m._name for m in vars(metrics).values() if hasattr(m, "_documentation")]
    assert len(names) >= 12
    for name in names:
        assert re.search(rf"`{name}(_total)?`", text), f"docs/operations.md lacks {name}"
