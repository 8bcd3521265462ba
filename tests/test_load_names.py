"""``jupyter_tus.load`` by name: an exact path wins, a bare name must name one file;
and a loaded text or bytes never floods the page it is displayed on."""

from __future__ import annotations

import os

import pytest
from IPython.lib.pretty import pretty

import jupyter_tus

from .notebook_support import (  # noqa: F401 - fixtures
    jp_asyncio_loop,
    jp_server_cleanup,
    staging,
    upload,
)
from .servers import JupyterProcess

BIG = os.urandom(3 * 1024 * 1024)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("names") / "root"
    root.mkdir()
    with JupyterProcess(root) as server:
        server.dup = {
            where: upload(server, "dup.csv", f"where\n{where}\n".encode(), path=where)
            for where in ("data", "other")
        }
        server.big = upload(server, "big.bin", BIG, path="data")
        server.text = upload(server, "long.txt", b"x" * 100_000, path="data")
        (root / "clash.txt").write_text("a file at the top\n")
        server.clash = upload(server, "clash.txt", b"an upload\n", path="data")
        yield server


@pytest.fixture
def kernel_view(server, monkeypatch):
    monkeypatch.setenv("JUPYTER_TUS_DIR", str(staging(server)))
    monkeypatch.chdir(server.root_dir)
    return server


def test_a_bare_name_of_uploads_to_two_folders_is_ambiguous(kernel_view):
    with pytest.raises(jupyter_tus.AmbiguousName) as raised:
        jupyter_tus.load("dup.csv")
    message = str(raised.value)
    assert "data/dup.csv" in message and "other/dup.csv" in message
    assert kernel_view.dup["data"] in message and kernel_view.dup["other"] in message


def test_an_exact_destination_path_wins(kernel_view, monkeypatch):
    assert list(jupyter_tus.load("other/dup.csv")["where"]) == ["other"]
    monkeypatch.chdir(kernel_view.root_dir / "data")  # from the root, as the browser names it
    assert list(jupyter_tus.load("other/dup.csv")["where"]) == ["other"]
    assert list(jupyter_tus.load(kernel_view.dup["data"])["where"]) == ["data"]


def test_a_bare_name_of_an_upload_and_a_file_here_is_ambiguous(kernel_view, monkeypatch):
    with pytest.raises(jupyter_tus.AmbiguousName, match=r"clash\.txt \(a file here\)"):
        jupyter_tus.load("clash.txt")
    monkeypatch.chdir(kernel_view.root_dir / "data")  # there it is the upload's own file
    assert jupyter_tus.load("clash.txt") == "an upload\n"


def test_loaded_bytes_and_text_display_bounded(kernel_view):
    data = jupyter_tus.load("big.bin")
    assert isinstance(data, bytes) and data == BIG
    assert len(repr(data)) < 1000 and len(pretty(data)) < 1000
    assert "3,145,728 bytes (3.0 MiB)" in repr(data)
    text = jupyter_tus.load("long.txt")
    assert isinstance(text, str) and text == "x" * 100_000
    assert len(pretty(text)) < 1000 and "100,000 characters" in repr(text)
    small = jupyter_tus.load("other/dup.csv", format="txt")
    assert repr(small) == repr("where\nother\n")  # small values show as they are
