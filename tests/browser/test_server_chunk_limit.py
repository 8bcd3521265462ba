"""A server with `max_chunk_size` behind a proxy with the same body limit: the file
browser's uploader reads the limit before it sends a body (OPTIONS, then every answer),
so no request is ever refused, for files sent whole in their creation request and for
files sent in chunks."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Route

from .conftest import Lab, MiB
from .test_filebrowser_upload import TusLog, upload_with_button, wait_state

LIMIT = MiB


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("lab"), args=[f"--TusApp.max_chunk_size={LIMIT}"])
    lab.process.start()
    yield lab
    lab.process.stop()


def test_no_body_is_ever_refused(lab: Lab, open_lab, tmp_path):
    lab.set_settings(keepFileHandles=False)
    page = open_lab(throttle=None)
    refused: list[tuple[str, int]] = []

    def proxy(route: Route) -> None:
        # nginx's default client_max_body_size, in front of the server.
        request = route.request
        body = request.post_data_buffer or b""
        if len(body) > LIMIT:
            refused.append((request.method, len(body)))
            route.fulfill(status=413, body="<html>413 Request Entity Too Large</html>")
            return
        route.continue_()

    page.route("**/api/tus/uploads**", proxy)
    log = TusLog(page)
    # The first file fits one default chunk (8 MiB) but not the limit: without the probe
    # its creation request would carry all of it.
    files = {"chunked.bin": 5 * MiB + 3, "whole.bin": 900 * 1024}
    for name, size in files.items():
        src = tmp_path / name
        src.write_bytes(os.urandom(size))
        upload_with_button(page, src)
        wait_state(page, name, "done")
        assert (lab.root / name).read_bytes() == src.read_bytes()

    assert refused == []
    bodies = [len(r.post_data_buffer or b"") for r in log.requests if r.method in ("POST", "PATCH")]
    assert max(bodies) == LIMIT, bodies
    statuses = {r.response().status for r in log.requests if r.response() is not None}
    assert statuses <= {200, 201, 204}, statuses
    # (the status as a word: a port such as 34133 in a logged URL is not a 413)
    assert not [t for kind, t in page.console_messages_seen if re.search(r"\b413\b", t)]
