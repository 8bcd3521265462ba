"""Notebook 7's tree page: its file browser's upload button goes through tus too (the same
plugin: it needs only the file browser factory), the Uploads panel shows the row, and the
file lands intact."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from ..servers import JupyterProcess, lab_settings
from .conftest import CHROMIUM_ARGS, PLUGIN, MiB, chromium_path, random_file, sha256
from .test_filebrowser_upload import TusLog, upload_with_button, wait_state


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory) -> Iterator[JupyterProcess]:
    base = tmp_path_factory.mktemp("notebook7")
    root = base / "root"
    root.mkdir()
    (root / "data").mkdir()
    # Settings and workspaces of its own, by environment: Notebook 7 ignores
    # --JupyterNotebookApp.user_settings_dir (the test then wrote the user's settings).
    env = {
        "JUPYTERLAB_SETTINGS_DIR": str(lab_settings(base / "settings")),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
    }
    with JupyterProcess(root, app="notebook", env=env) as server:
        yield server


def test_the_tree_page_uploads_through_tus(notebook7: JupyterProcess, tmp_path, results_dir):
    from playwright.sync_api import sync_playwright

    # The plain file input (Playwright cannot drive the File System Access picker).
    r = requests.put(
        notebook7.url + f"lab/api/settings/{PLUGIN}",
        headers=notebook7.auth,
        json={"raw": '{"keepFileHandles": false}'},
        timeout=10,
    )
    assert r.status_code == 204, r.text
    own = notebook7.root_dir.parent / "settings" / "jupyter-tus" / "plugin.jupyterlab-settings"
    assert own.exists(), "written to the user's own settings, not the test's"
    src = tmp_path / "field-notes.bin"
    digest = random_file(src, 24 * MiB)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
            page.goto(f"{notebook7.url}tree/data?token={notebook7.token}")
            page.wait_for_selector(
                "body[data-jupyter-tus='ready']", state="attached", timeout=60_000
            )
            log = TusLog(page)
            upload_with_button(page, src)
            wait_state(page, src.name, "done")
            status = page.locator(".jp-TusUpload-status").first.inner_text()
            page.screenshot(path=str(results_dir / "notebook7-tree.png"))
            # The tree's listing shows the landed file.
            page.locator(".jp-DirListing-item", has_text=src.name).wait_for()
            posts = log.posts()
            patches = log.patches()
        finally:
            browser.close()

    assert status == f"done · 24 MiB → data/{src.name}", status
    assert len(posts) == 1 and posts[0].headers["upload-metadata"]
    assert patches, "the bytes went by tus PATCH"
    assert sha256(notebook7.root_dir / "data" / src.name) == digest
