"""The example notebooks run top to bottom with nbclient, against uploads made through a
real server's HTTP endpoint. Cells tagged ``needs-human`` (they wait for someone to
drop a file on the widget) are the only ones skipped."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .notebook_support import (  # noqa: F401 - fixtures
    jp_asyncio_loop,
    jp_server_cleanup,
    staging,
    upload,
)
from .servers import JupyterProcess

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
HUMAN = "needs-human"
BIG = 12 * 1024 * 1024 + 7


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("notebooks") / "root"
    (root / "notebooks").mkdir(parents=True)
    with JupyterProcess(root) as server:
        rows = "".join(f"{i},{i % 24},{(i * 7) % 100 / 10}\n" for i in range(25_000))
        upload(server, "weather.csv", f"day,hour,temp\n{rows}".encode(), path="notebooks")
        big = os.urandom(BIG)
        server.big_sha = hashlib.sha256(big).hexdigest()
        upload(server, "big.bin", big, path="notebooks", chunk=4 << 20)
        upload(server, "partial.bin", b"\1" * 10_000, send=2_500)
        yield server


def run(server: JupyterProcess, name: str) -> nbformat.NotebookNode:
    """Execute notebooks/<name> as a user's kernel would (working dir in root_dir,
    JUPYTER_TUS_DIR from the server), skipping only the cells tagged needs-human."""
    workdir = server.root_dir / "notebooks"
    shutil.copy(NOTEBOOKS / name, workdir / name)
    nb = nbformat.read(workdir / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        assert not cell.get("outputs") and not cell.get("execution_count"), "clear outputs"
    nb.cells = [c for c in nb.cells if HUMAN not in c.metadata.get("tags", [])]
    os.environ["JUPYTER_TUS_DIR"] = str(staging(server))
    try:
        client = NotebookClient(
            nb,
            timeout=120,
            kernel_name="python3",
            resources={"metadata": {"path": str(workdir)}},
        )
        client.execute()
    finally:
        del os.environ["JUPYTER_TUS_DIR"]
    return nb


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def text_of(nb: nbformat.NotebookNode) -> str:
    parts = []
    for o in outputs(nb):
        if o.output_type == "stream":
            parts.append(o.text)
        elif "data" in o:
            parts.append(o.data.get("text/plain", ""))
            parts.append(o.data.get("text/html", ""))
    return "\n".join(parts)


def test_only_human_cells_are_tagged():
    """One cell waits for a file dropped on the widget; nothing else is skipped."""
    counts = {}
    for name in ("upload-and-load.ipynb", "read-uploads.ipynb"):
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        tagged = [c for c in nb.cells if HUMAN in c.metadata.get("tags", [])]
        assert all("w.uploads" in c.source for c in tagged)
        counts[name] = len(tagged)
    assert counts == {"upload-and-load.ipynb": 1, "read-uploads.ipynb": 0}


def test_upload_and_load(server):
    nb = run(server, "upload-and-load.ipynb")
    outs = outputs(nb)
    assert not [o for o in outs if o.output_type == "error"]
    kinds = {k for o in outs for k in o.get("data", {})}
    assert "application/vnd.jupyter.widget-view+json" in kinds  # the widget showed
    assert "image/png" in kinds  # the plot
    text = text_of(nb)
    assert "day" in text and "temp" in text and "25000" in text  # df.head(), describe()
    assert "weather.csv" in text and "partial.bin" in text  # %uploads


def test_read_uploads(server):
    nb = run(server, "read-uploads.ipynb")
    assert not [o for o in outputs(nb) if o.output_type == "error"]
    text = text_of(nb)
    assert "2 finished, 1 unfinished" in text
    assert f"{BIG:,} bytes in" in text
    assert f"sha256 {server.big_sha}" in text
    assert "weather.csv: 25,000 rows" in text
    assert "2500 of 10000 bytes" in text and "2500 bytes readable so far" in text
