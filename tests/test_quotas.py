"""Quotas (``max_staged_size``, ``quota``): what does not fit is refused at creation
with the numbers in the message, and an upload once admitted is never cut mid-PATCH.

``max_staged_size`` works from the records, so its tests run on each store
(tests/backends.py: the file store, and S3Store on SeaweedFS); ``quota`` measures
root_dir and the destination's disk: the file store's alone (``FILE_ONLY``), a
configuration error with any other store."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess

import pytest
from traitlets import TraitError

from jupyter_tus import quotas
from jupyter_tus.app import TusApp
from jupyter_tus.quotas import describe, workspace_usage
from tests.backends import backend_server_config  # noqa: F401 (jp_server_config)

from .conftest import OFFSET_TYPE
from .test_lifetime import send_chunked

KiB = 1024

# What measures the file system: on the file store alone.
FILE_ONLY = pytest.mark.parametrize("backend", ["file"], indirect=True)


def message(r) -> str:
    return json.loads(r.body)["message"]


# ----------------------------------------------------------- max_staged_size


@pytest.mark.parametrize("tus_config", [{"max_staged_size": 1000}])
async def test_unfinished_uploads_share_max_staged_size(tus, tus_config, backend):
    a = await tus.create_id(600, {"filename": "a.bin"})
    before = backend.staged()
    r = await tus.create(500, {"filename": "b.bin"})
    assert r.code == 507, r.body
    assert message(r) == (
        "the unfinished uploads on this server already take 600 bytes of the 1000 bytes"
        " they may; 500 bytes more do not fit now: finish or cancel other uploads first"
    )
    assert r.reason == "Insufficient Storage"
    assert backend.staged() == before  # nothing created
    r = await tus.create(1001, {"filename": "c.bin"})
    assert r.code == 413 and "larger than all unfinished uploads together" in message(r)
    assert (await tus.create(400, {"filename": "b.bin"})).code == 201
    # A finished upload no longer counts, a cancelled one neither.
    assert (await tus.patch(a, 0, b"a" * 600)).code == 204
    b = await tus.create_id(600, {"filename": "d.bin"})
    assert (await tus.create(1, {"filename": "e.bin"})).code == 507
    assert (await tus.request("DELETE", b)).code == 204
    assert (await tus.create(600, {"filename": "e.bin"})).code == 201


@pytest.mark.parametrize("tus_config", [{"max_staged_size": 1000}])
async def test_a_deferred_length_counts_what_it_received_then_what_it_declares(tus, tus_config):
    uid = await tus.create_id(None, {"filename": "later.bin"})
    assert (await tus.patch(uid, 0, b"x" * 700)).code == 204
    assert (await tus.create(400, {"filename": "b.bin"})).code == 507
    other = await tus.create_id(300, {"filename": "c.bin"})
    # Declaring 800 would make 1100: refused before the PATCH's body, nothing written.
    r = await tus.patch(uid, 700, b"y" * 10, headers={"Upload-Length": "800"})
    assert r.code == 507 and "700 bytes" not in message(r) and "300 bytes" in message(r)
    assert (await tus.head(uid)).headers["Upload-Offset"] == "700"
    assert (await tus.request("DELETE", other)).code == 204
    r = await tus.patch(uid, 700, b"y" * 100, headers={"Upload-Length": "800"})
    assert r.code == 204 and r.headers.get("Jupyter-Tus-Path") == "later.bin"


@pytest.mark.parametrize("tus_config", [{"max_staged_size": 1000}])
async def test_an_admitted_upload_is_never_cut_mid_patch(tus, tus_config):
    # A deferred length is not known at creation: its bodies are taken whole, even
    # past max_staged_size; only the next creations feel it.
    uid = await tus.create_id(None, {"filename": "big.bin"})
    headers = {**OFFSET_TYPE, "Upload-Offset": "0"}
    r = await send_chunked(tus, "PATCH", uid, headers, [b"z" * 800, b"z" * 700])
    assert r.code == 204, r.body
    assert (await tus.head(uid)).headers["Upload-Offset"] == "1500"
    assert (await tus.create(1, {"filename": "one.bin"})).code == 507


# ----------------------------------------------------------- quota


def listing(staging) -> list[str]:
    return sorted(p.name for p in staging.iterdir()) if staging.exists() else []


def test_the_quota_with_another_store_is_a_configuration_error():
    app = TusApp(store_class="jupyter_tus.s3store.S3Store", quota=10_000)
    with pytest.raises(TraitError, match=r"TusApp\.quota measures root_dir: .* file store only"):
        app.make_store(allow_hidden=False)
    assert TusApp(store_class="jupyter_tus.s3store.S3Store").make_store(False) is not None


@FILE_ONLY
@pytest.mark.parametrize("tus_config", [{"quota": 10_000, "quota_rescan": 0}])
async def test_the_workspace_quota_counts_files_and_uploads_under_way(
    tus, tus_config, jp_root_dir, staging
):
    (jp_root_dir / "old.bin").write_bytes(b"o" * 4000)
    a = await tus.create_id(5000, {"filename": "a.bin"})
    # Half of a arrived: its bytes in the staging folder are not counted twice.
    assert (await tus.patch(a, 0, b"a" * 3000)).code == 204
    before = listing(staging)
    r = await tus.create(2000, {"filename": "b.bin"})
    assert r.code == 507, r.body
    assert message(r) == (
        "the workspace holds 3.9 KiB (4000 bytes) and unfinished uploads will add 4.9 KiB"
        " (5000 bytes), of a quota of 9.8 KiB (10000 bytes); 2.0 KiB (2000 bytes) more do"
        " not fit: free some space first"
    )
    assert listing(staging) == before
    r = await tus.create(10_001, {"filename": "c.bin"})
    assert r.code == 413 and "larger than the workspace's quota" in message(r)
    # Uploads that stay in the store (no filename) do not land: no quota for them.
    assert (await tus.create(2000)).code == 201
    assert (await tus.create(1000, {"filename": "b.bin"})).code == 201
    # Free some space: the next walk sees it.
    (jp_root_dir / "old.bin").unlink()
    assert (await tus.create(4000, {"filename": "c.bin"})).code == 201
    assert (await tus.create(1, {"filename": "d.bin"})).code == 507


@FILE_ONLY
@pytest.mark.parametrize("tus_config", [{"quota": 10_000, "quota_rescan": 3600}])
async def test_files_landed_meanwhile_count_without_a_walk(tus, tus_config, jp_root_dir):
    a = await tus.create_id(6000, {"filename": "a.bin"})  # the walk: 0 bytes
    assert (await tus.patch(a, 0, b"a" * 6000)).code == 204  # landed: 6000
    assert (await tus.create(5000, {"filename": "b.bin"})).code == 507
    assert (await tus.create(4000, {"filename": "b.bin"})).code == 201


@FILE_ONLY
@pytest.mark.parametrize("tus_config", [{"quota": 10_000, "quota_rescan": 0}])
async def test_a_replaced_file_is_counted_out(tus, tus_config, jp_root_dir):
    (jp_root_dir / "data.csv").write_bytes(b"d" * 8000)
    assert (await tus.create(3000, {"filename": "new.csv"})).code == 507
    r = await tus.create(9000, {"filename": "data.csv", "overwrite": "1"})
    assert r.code == 201, r.body


@FILE_ONLY
@pytest.mark.parametrize("tus_config", [{"quota": 10_000, "quota_rescan": 0}])
async def test_a_final_concatenation_is_checked_with_its_total(tus, tus_config, jp_base_url):
    a = await tus.create_id(6000, headers={"Upload-Concat": "partial"})
    b = await tus.create_id(5000, headers={"Upload-Concat": "partial"})
    assert (await tus.patch(a, 0, b"a" * 6000)).code == 204
    assert (await tus.patch(b, 0, b"b" * 5000)).code == 204
    urls = f"{jp_base_url}api/tus/uploads/{a} {jp_base_url}api/tus/uploads/{b}"
    r = await tus.request(
        "POST",
        headers={"Upload-Concat": f"final;{urls}", "Upload-Metadata": "filename YWIudHh0"},
    )
    assert r.code == 413 and "10.7 KiB (11000 bytes)" in message(r)


def test_workspace_usage_leaves_out_staging_links_and_symlinks(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / ".tus").mkdir()
    (root / "sub" / "a.bin").write_bytes(b"a" * 100)
    os.link(root / "sub" / "a.bin", root / "a-again.bin")
    (root / ".hidden.txt").write_bytes(b"h" * 10)
    (root / ".tus" / "staged").write_bytes(b"s" * 1000)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x" * 5000)
    (root / "link.bin").symlink_to(outside)
    (root / "linked-folder").symlink_to(tmp_path, target_is_directory=True)
    assert workspace_usage(root, root / ".tus") == 110


def test_sizes_are_said_in_words_and_bytes():
    assert describe(600) == "600 bytes"
    assert describe(5 * 1024 * 1024) == "5.0 MiB (5242880 bytes)"
    assert describe(3 * 1024**5) == "3.0 PiB (3377699720527872 bytes)"


# ----------------------------------------------------------- the destination's disk


@pytest.fixture
def small_disk(jp_root_dir, monkeypatch):
    """A folder of the workspace on a 1 MiB filesystem: a real tmpfs (we run as root),
    else a faked free space for that folder."""
    folder = jp_root_dir / "small"
    folder.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, FileNotFoundError, PermissionError):
        real = shutil.disk_usage

        def disk_usage(path):
            usage = real(path)
            if str(path).startswith(str(folder)):
                return usage._replace(free=1024 * KiB)
            return usage

        monkeypatch.setattr(quotas.shutil, "disk_usage", disk_usage)
        yield folder
        return
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@FILE_ONLY
@pytest.mark.parametrize("tus_config", [{"quota": 1 << 40}])
async def test_the_destination_disk_must_have_room(tus, tus_config, small_disk):
    free = shutil.disk_usage(small_disk).free
    r = await tus.create(free + 1, {"filename": "big.bin", "path": "small"})
    assert r.code == 507, r.body
    assert f"has {describe(free)} free" in message(r)
    a = await tus.create_id(600 * KiB, {"filename": "a.bin", "path": "small"})
    # What a still has to write there is kept for it.
    r = await tus.create(600 * KiB, {"filename": "b.bin", "path": "small"})
    assert r.code == 507 and f"still need {describe(600 * KiB)}" in message(r)
    assert (await tus.create(100 * KiB, {"filename": "c.bin", "path": "small"})).code == 201
    await tus.patch(a, 0, b"a" * 600 * KiB)
    assert (small_disk / "a.bin").stat().st_size == 600 * KiB


@pytest.mark.parametrize("tus_config", [{"max_staged_size": 10_000}])
async def test_concurrent_creations_never_share_the_last_room(tus, tus_config):
    answers = await asyncio.gather(*(tus.create(3000, {"filename": f"f{i}.bin"}) for i in range(6)))
    assert sorted(r.code for r in answers) == [201, 201, 201, 507, 507, 507]
