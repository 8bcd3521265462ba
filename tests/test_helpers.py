"""jupyter_tus.list_uploads / get_info / get_reader / load on a store filled through the
real HTTP endpoint of a real ``jupyter server`` process."""

from __future__ import annotations

import io
import json
import os
import sys

import numpy as np
import pandas as pd
import pytest

import jupyter_tus
from jupyter_tus import helpers
from jupyter_tus.display import file_info_html

from .notebook_support import (  # noqa: F401 - fixtures
    jp_asyncio_loop,
    jp_server_cleanup,
    staging,
    upload,
)
from .servers import JupyterProcess

FRAME = pd.DataFrame({"city": ["Lyon", "Oslo", "Quito"], "temp": [12.5, 3.0, 14.25]})


def _bytes(write) -> bytes:
    buf = io.BytesIO()
    write(buf)
    return buf.getvalue()


def _npz(buf) -> None:
    np.savez(buf, a=np.arange(5), b=np.eye(2))


FILES: dict[str, bytes] = {
    "frame.csv": FRAME.to_csv(index=False).encode(),
    "frame.tsv": FRAME.to_csv(index=False, sep="\t").encode(),
    "frame.parquet": _bytes(lambda b: FRAME.to_parquet(b)),
    "frame.json": FRAME.to_json(orient="records").encode(),
    "frame.xlsx": _bytes(lambda b: FRAME.to_excel(b, index=False)),
    "frame.feather": _bytes(lambda b: FRAME.to_feather(b)),
    "matrix.npy": _bytes(lambda b: np.save(b, np.arange(12).reshape(3, 4))),
    "arrays.npz": _bytes(_npz),
    "notes.txt": "héllo\nwörld\n".encode(),
    "blob.bin": bytes(range(256)) * 40,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("helpers") / "root"
    root.mkdir()
    runtime = root.parent / "runtime"
    with JupyterProcess(root, env={"JUPYTER_RUNTIME_DIR": str(runtime)}) as server:
        server.runtime_dir = runtime
        server.ids = {name: upload(server, name, data, path="data") for name, data in FILES.items()}
        server.partial = upload(server, "half.csv", b"x,y\n" + b"1,2\n" * 5000, send=6000)
        yield server


@pytest.fixture
def in_server(server, monkeypatch):
    """A kernel's view: JUPYTER_TUS_DIR set by the server, working dir inside root_dir,
    the server's runtime dir (not this process's, where other tests' servers run)."""
    monkeypatch.setenv("JUPYTER_TUS_DIR", str(staging(server)))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(server.runtime_dir))
    monkeypatch.chdir(server.root_dir / "data")
    return server


def _check(name: str, value) -> None:
    if name.startswith("frame."):
        pd.testing.assert_frame_equal(value, FRAME, check_dtype=False)
    elif name == "matrix.npy":
        np.testing.assert_array_equal(value, np.arange(12).reshape(3, 4))
    elif name == "arrays.npz":
        assert set(value) == {"a", "b"}
        np.testing.assert_array_equal(value["b"], np.eye(2))
    elif name == "notes.txt":
        assert value == "héllo\nwörld\n"
    else:
        assert value == FILES[name]


@pytest.mark.parametrize("name", sorted(FILES))
def test_load_by_id_info_and_name(in_server, name):
    upload_id = in_server.ids[name]
    _check(name, jupyter_tus.load(upload_id))
    _check(name, jupyter_tus.load(jupyter_tus.get_info(upload_id)))
    _check(name, jupyter_tus.load(name))  # the landed file, relative to the working dir


def test_load_passes_options_and_format(in_server):
    df = jupyter_tus.load(in_server.ids["frame.csv"], usecols=["temp"])
    assert list(df.columns) == ["temp"]
    text = jupyter_tus.load("frame.csv", format="txt")
    assert text.startswith("city,temp")


def test_load_reads_the_file_once(in_server, monkeypatch):
    import builtins

    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        if str(file).endswith(("notes.txt", "blob.bin")):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    jupyter_tus.load("notes.txt")
    jupyter_tus.load(in_server.ids["blob.bin"])
    assert len(opened) == 2


def test_list_uploads_newest_first_with_unfinished(in_server):
    uploads = jupyter_tus.list_uploads()
    assert isinstance(uploads, list)
    assert len(uploads) == len(FILES) + 1
    created = [u.created for u in uploads]
    assert created == sorted(created, reverse=True)
    assert uploads[0].id == in_server.partial and not uploads[0].is_complete
    assert all(u.is_complete for u in uploads[1:])
    assert {u.filename for u in uploads} == {*FILES, "half.csv"}


def test_get_info_and_reader(in_server):
    info = jupyter_tus.get_info(in_server.ids["blob.bin"])
    assert info.is_complete and info.size == len(FILES["blob.bin"])
    assert info.path == str(in_server.root_dir / "data" / "blob.bin")
    with jupyter_tus.get_reader(info) as f:
        assert isinstance(f, io.BufferedReader) and f.seekable()
        f.seek(256)
        assert f.read(3) == bytes([0, 1, 2])
        f.seek(0)
        assert f.read() == FILES["blob.bin"]
    assert f.closed


def test_reader_of_unfinished_upload_has_the_bytes_so_far(in_server):
    with jupyter_tus.get_reader(in_server.partial) as f:
        assert len(f.read()) == 6000


def test_load_unfinished_says_how_far(in_server):
    for what in (in_server.partial, "half.csv", jupyter_tus.get_info(in_server.partial)):
        with pytest.raises(jupyter_tus.UploadIncomplete, match=r"6000 of 20004 bytes.*30\.0 %"):
            jupyter_tus.load(what)


def test_unknown_things(in_server):
    with pytest.raises(jupyter_tus.UploadNotFound):
        jupyter_tus.get_info("A" * 32)
    with pytest.raises(KeyError):
        jupyter_tus.get_reader("../../etc/passwd")
    with pytest.raises(FileNotFoundError, match="neither a file"):
        jupyter_tus.load("nothing-here.csv")


def test_missing_pandas_names_the_extra(in_server, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"jupyter-tus\[data\]"):
        jupyter_tus.load("frame.csv")
    monkeypatch.setitem(sys.modules, "pandas", pd)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match=r"pyarrow.*jupyter-tus\[data\]"):
        jupyter_tus.load("frame.parquet")
    # Formats that need neither still load.
    assert jupyter_tus.load("notes.txt").startswith("héllo")


def test_default_store_from_running_server(server, monkeypatch):
    """Without JUPYTER_TUS_DIR: the running server whose root holds the working dir."""
    monkeypatch.delenv("JUPYTER_TUS_DIR", raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(server.runtime_dir))
    monkeypatch.chdir(server.root_dir / "data")
    found = helpers.find_server()
    assert found is not None and found["port"] == server.port
    assert helpers.default_store().directory == staging(server)
    assert helpers.workspace_path() == "data"
    assert jupyter_tus.load("frame.json").shape == (3, 2)


def test_an_unrelated_running_server_does_not_move_the_workspace(server, tmp_path, monkeypatch):
    """A kernel whose server is not listed where it looks (another runtime dir), while
    one unrelated server runs there: the root its own server named (the parent of
    $JUPYTER_TUS_DIR) wins, for the upload ``path`` and for the table's paths."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    info = {"pid": os.getpid(), "port": 1, "url": "http://127.0.0.1:1/", "root_dir": str(elsewhere)}
    (runtime / f"jpserver-{os.getpid()}.json").write_text(json.dumps(info))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("JUPYTER_TUS_DIR", str(staging(server)))
    monkeypatch.chdir(server.root_dir / "data")
    assert helpers.find_server()["root_dir"] == str(elsewhere)  # the only one running
    assert helpers.workspace_root() == server.root_dir.resolve()
    assert helpers.workspace_path() == "data"
    assert "<td>data/blob.bin</td>" in jupyter_tus.list_uploads()._repr_html_()


def test_the_kernels_own_server_names_the_root(server, tmp_path, monkeypatch):
    """A kernel started by a listed server (``$JPY_PARENT_PID``, set by jupyter_client)
    whose staging dir is named .tus but is not ``<root>/.tus`` (staging_dir = "~/.tus"),
    its working directory outside the root: its server's root, not the staging dir's
    parent."""
    from jupyter_server.serverapp import list_running_servers

    (own,) = list_running_servers(str(server.runtime_dir))
    scratch = tmp_path / "scratch"
    (scratch / "sub").mkdir(parents=True)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(server.runtime_dir))
    monkeypatch.setenv("JPY_PARENT_PID", str(own["pid"]))
    monkeypatch.setenv("JUPYTER_TUS_DIR", str(scratch / ".tus"))
    monkeypatch.chdir(scratch / "sub")
    assert helpers.workspace_root() == server.root_dir.resolve()
    assert helpers.workspace_path() == ""


def test_no_store_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("JUPYTER_TUS_DIR", raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))  # no server listed there
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LookupError, match="JUPYTER_TUS_DIR"):
        jupyter_tus.list_uploads()


def test_explicit_store_argument(server, tmp_path, monkeypatch):
    monkeypatch.delenv("JUPYTER_TUS_DIR", raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    store = jupyter_tus.FileStore(staging(server))
    assert len(jupyter_tus.list_uploads(store=store)) == len(FILES) + 1
    assert jupyter_tus.load(server.ids["frame.json"], store=str(staging(server))).shape == (3, 2)


def test_html_rendering(in_server):
    infos = jupyter_tus.list_uploads()
    page = infos._repr_html_()
    assert page == file_info_html(infos, jupyter_tus.helpers.workspace_root())
    assert "<td>data/blob.bin</td>" in page  # relative to the server's root_dir
    assert page.count("<tr>") == len(infos) + 1
    assert "half.csv" in page and "uploading" in page and "30%" in page
    assert "<td>done</td>" in page
    one = jupyter_tus.get_info(in_server.ids["notes.txt"])._repr_html_()
    assert "notes.txt" in one and "notes.txt" in json.dumps(one)
    assert "&lt;" in file_info_html([jupyter_tus.FileInfo(id="x", metadata={"filename": "<b>"})])


def test_importing_jupyter_tus_stays_light():
    import subprocess

    code = (
        "import sys, jupyter_tus; "
        "print([m for m in ('pandas', 'anywidget', 'ipywidgets', 'jupyter_server.serverapp') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out
