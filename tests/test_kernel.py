"""The kernel side in a real IPython kernel: %load_ext jupyter_tus, %uploads, %upload,
rich displays, and the UploadWidget hearing of a finished upload through its comm."""

from __future__ import annotations

import json
import os
import queue
import time

import pytest
from jupyter_client import KernelManager

from .notebook_support import (  # noqa: F401 - fixtures
    jp_asyncio_loop,
    jp_server_cleanup,
    staging,
    upload,
)
from .servers import JupyterProcess

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class Kernel:
    """A blocking client that returns the outputs of each execution."""

    def __init__(self, km, kc) -> None:
        self.km, self.kc = km, kc

    def run(self, code: str, timeout: float = 60) -> list[dict]:
        msg_id = self.kc.execute(code)
        return self.collect(msg_id, timeout)

    def collect(self, msg_id: str, timeout: float = 60) -> list[dict]:
        outputs: list[dict] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no idle after {timeout} s: {outputs}") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "status" and msg["content"]["execution_state"] == "idle":
                return outputs
            if kind in ("execute_result", "display_data", "stream", "error"):
                outputs.append({"type": kind, **msg["content"]})

    def value(self, code: str) -> object:
        """Evaluate ``code`` in the kernel and return it (through JSON)."""
        out = self.run(f"import json as _j; print(_j.dumps({code}))")
        text = "".join(o["text"] for o in out if o["type"] == "stream")
        assert text, out
        return json.loads(text)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("kernel") / "root"
    (root / "data").mkdir(parents=True)
    with JupyterProcess(root) as server:
        server.csv_id = upload(server, "cities.csv", b"city,n\nLyon,1\nOslo,2\n", path="data")
        server.partial_id = upload(server, "big.bin", b"\0" * 4000, send=1000)
        yield server


@pytest.fixture(scope="module")
def kernel(server):
    """A python3 kernel started as the server would: JUPYTER_TUS_DIR inherited, working
    directory inside root_dir."""
    km = KernelManager(kernel_name="python3")
    km.start_kernel(
        cwd=str(server.root_dir / "data"),
        env={**os.environ, "JUPYTER_TUS_DIR": str(staging(server))},
    )
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    yield Kernel(km, kc)
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def test_uploads_magic_renders_a_table(kernel, server):
    assert kernel.run("%load_ext jupyter_tus") == []
    (out,) = kernel.run("%uploads")
    assert out["type"] == "execute_result"
    page = out["data"]["text/html"]
    assert "<table" in page and page.count("<tr>") == 3
    assert "cities.csv" in page and "big.bin" in page
    assert "done" in page and "25%" in page
    assert page.index("big.bin") < page.index("cities.csv")  # newest first


def test_file_info_renders_as_html(kernel, server):
    kernel.run("import jupyter_tus")
    (out,) = kernel.run(f"jupyter_tus.get_info({server.csv_id!r})")
    assert "cities.csv" in out["data"]["text/html"]
    assert "data/cities.csv" in out["data"]["text/html"]


def test_load_in_the_next_cell(kernel, server):
    assert kernel.value("jupyter_tus.load('cities.csv')['n'].sum().item()") == 3
    (err,) = kernel.run(f"jupyter_tus.load({server.partial_id!r})")
    assert err["type"] == "error" and err["ename"] == "UploadIncomplete"
    assert "1000 of 4000 bytes" in err["evalue"]


def test_upload_magic_shows_a_widget(kernel):
    (out,) = kernel.run("%upload incoming --accept .csv,.tsv --overwrite")
    assert WIDGET_VIEW in out["data"]
    assert kernel.value(
        "[_upload_widget.path, _upload_widget.accept, _upload_widget.overwrite, "
        "_upload_widget.multiple, _upload_widget.chunk_size]"
    ) == ["incoming", ".csv,.tsv", True, True, 8 * 1024 * 1024]
    # Without a path: the kernel's working directory relative to root_dir.
    kernel.run("%upload")
    assert kernel.value("_upload_widget.path") == "data"


def test_widget_hears_a_finished_upload_through_its_comm(kernel, server):
    """What the browser sends when tus-js-client succeeds: a custom comm message with
    the id; the kernel reads the FileInfo from the store."""
    (out,) = kernel.run(
        "w = jupyter_tus.UploadWidget()\n"
        "seen = []\n"
        "w.on_complete(lambda info: seen.append(info.filename))\n"
        "changes = []\n"
        "w.observe(lambda change: changes.append(len(change['new'])), names='uploads')\n"
        "w"
    )
    model_id = out["data"][WIDGET_VIEW]["model_id"]
    content = {"type": "complete", "id": server.csv_id, "filename": "cities.csv", "size": 20}
    msg = kernel.kc.session.msg(
        "comm_msg", {"comm_id": model_id, "data": {"method": "custom", "content": content}}
    )
    kernel.kc.shell_channel.send(msg)
    kernel.collect(msg["header"]["msg_id"])
    assert kernel.value("[seen, changes, [u.id for u in w.uploads]]") == [
        ["cities.csv"],
        [1],
        [server.csv_id],
    ]
    assert kernel.value("jupyter_tus.load(w.uploads[-1]).shape[0]") == 2
    # The browser found no tus endpoint: the Python side knows why.
    content = {"type": "unavailable", "message": "not a tus upload endpoint (HTTP 404)"}
    msg = kernel.kc.session.msg(
        "comm_msg", {"comm_id": model_id, "data": {"method": "custom", "content": content}}
    )
    kernel.kc.shell_channel.send(msg)
    kernel.collect(msg["header"]["msg_id"])
    assert "HTTP 404" in kernel.value("w.error")
