"""A page of another origin uploads with tus-js-client, exactly when the server's
``allow_origin`` lets that origin in."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Error, Page

from ..servers import JupyterProcess

SIZE = 1024 * 1024 + 12345  # five PATCHes of 256 KiB, the last one short


@pytest.fixture
def data_file(tmp_path) -> tuple[Path, bytes]:
    path = tmp_path / "cross-origin.bin"
    data = os.urandom(SIZE)
    path.write_bytes(data)
    return path, data


@pytest.fixture
def page(browser: Browser, page_server) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    page.goto(page_server.origin + "/index.html")
    page.wait_for_function("() => typeof tus !== 'undefined' && tus.isSupported")
    yield page
    context.close()


def start_upload(page: Page, server: JupyterProcess, path: Path) -> dict:
    page.set_input_files("#file", str(path))
    return page.evaluate(
        "([endpoint, token]) => upload(endpoint, token, 'incoming')",
        [server.endpoint, server.token],
    )


def test_allowed_origin_uploads(page, cors_server, data_file, page_server):
    path, data = data_file
    assert not page_server.origin.endswith(f":{cors_server.port}")  # another origin
    result = start_upload(page, cors_server, path)
    landed = cors_server.root_dir / "incoming" / path.name
    assert hashlib.sha256(landed.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    # The page could read Location (tus-js-client needs it) and Jupyter-Tus-Path.
    assert result["url"].startswith(cors_server.endpoint + "/")
    assert result["landed"] == f"incoming/{path.name}"


def test_other_origin_cannot_upload(page, plain_server, data_file):
    path, _ = data_file
    with pytest.raises(Error, match="tus: failed to create upload"):
        start_upload(page, plain_server, path)
    assert not (plain_server.root_dir / "incoming").exists()
    assert list(plain_server.root_dir.glob(".tus/*.info")) == []  # no upload created
