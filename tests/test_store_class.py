"""c.TusApp.store_class, and what the server advertises following what the store offers
(tusd's composer: an extension only when the store has the capability)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from jupyter_tus.filestore import FileStore


class LimitedStore(FileStore):
    """A file store without termination, concatenation and deferred lengths, verifying
    only sha256 (a ``None`` attribute is no capability for a runtime protocol)."""

    terminate = None
    concat_uploads = None
    declare_length = None
    checksum_algorithms = ("sha256",)


LIMITED = {"store_class": "tests.test_store_class.LimitedStore"}


@pytest.mark.parametrize("tus_config", [LIMITED])
async def test_a_store_without_capabilities_advertises_none_of_them(tus, tus_app, tus_config):
    assert type(tus_app.manager.store) is LimitedStore
    r = await tus.request("OPTIONS", headers={"Tus-Resumable": None})
    assert r.code == 204
    assert r.headers["Tus-Extension"].split(",") == [
        "creation",
        "creation-with-upload",
        "checksum",
        "expiration",
    ]
    assert r.headers["Tus-Checksum-Algorithm"] == "sha256"


@pytest.mark.parametrize("tus_config", [LIMITED])
async def test_requests_for_what_the_store_lacks_are_refused(tus, jp_root_dir, tus_config):
    uid = await tus.create_id(3, {"filename": "a.txt"})
    # termination: no DELETE (tusd routes none without a Terminater)
    r = await tus.request("DELETE", uid)
    assert r.code == 405 and "termination" in r.reason + r.body.decode()
    assert "DELETE" not in r.headers["Allow"]
    # concatenation and deferred lengths: 400, nothing created
    r = await tus.create(3, headers={"Upload-Concat": "partial"})
    assert r.code == 400 and b"concatenation" in r.body
    r = await tus.create(None, {"filename": "b.txt"})
    assert r.code == 400 and b"creation-defer-length" in r.body
    # a checksum algorithm the store does not verify
    md5 = base64.b64encode(hashlib.md5(b"abc").digest()).decode()
    r = await tus.patch(uid, 0, b"abc", headers={"Upload-Checksum": f"md5 {md5}"})
    assert r.code == 400 and b"sha256" in r.body
    sha = base64.b64encode(hashlib.sha256(b"abc").digest()).decode()
    r = await tus.patch(uid, 0, b"abc", headers={"Upload-Checksum": f"sha256 {sha}"})
    assert r.code == 204
    assert (jp_root_dir / "a.txt").read_bytes() == b"abc"
    assert not (jp_root_dir / "b.txt").exists()


@pytest.mark.parametrize("tus_config", [{"store_class": "jupyter_tus.filestore.FileStore"}])
async def test_the_file_store_by_name_offers_everything(tus, tus_app, tus_config):
    assert type(tus_app.manager.store) is FileStore
    r = await tus.request("OPTIONS", headers={"Tus-Resumable": None})
    assert "termination" in r.headers["Tus-Extension"].split(",")
    assert "concatenation" in r.headers["Tus-Extension"].split(",")
