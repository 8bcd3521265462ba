"""Lost connections never end an upload from the file browser. The Jupyter server stops in
the middle of an upload: the row says the connection is lost and that it is retrying (never
"failed"), and once the server is back the upload goes on from the server's offset and lands
intact. The browser goes offline for a second every few seconds: each time the row waits
for the network, then goes on. A module of its own: the `lab` fixture (module scope) these
tests kill and restart is not shared with other tests."""

from __future__ import annotations

import re
import time

from ..wire import Relay
from .conftest import Lab, MiB, random_file, sha256, wait_until
from .test_filebrowser_upload import TusLog, named_copy, row, upload_with_button, wait_progress

RETRYING = re.compile(r"^connection lost, retrying (in \d+s|now) · \d+% · ")


def status_of(page, name: str) -> tuple[str, str]:
    li = row(page, name)
    return li.get_attribute("data-state"), li.locator(".jp-TusUpload-status").inner_text()


def test_server_stopped_mid_upload_retries_then_lands(
    lab: Lab, open_lab, big_file, tmp_path, results_dir
):
    src = named_copy(big_file[0], tmp_path, "through-a-restart.bin")
    size = src.stat().st_size
    lab.set_settings(keepFileHandles=False)
    page = open_lab(throttle=10 * MiB)
    log = TusLog(page)
    upload_with_button(page, src)
    wait_progress(page, src.name, 0.3)
    upload_url = log.patches()[0].url

    lab.process.kill()  # SIGKILL: no goodbye, connections refused from now on
    down = log.mark()
    page.wait_for_function(
        """(name) => [...document.querySelectorAll('.jp-TusUpload')].some(
            li => li.querySelector('.jp-TusUpload-name').textContent === name
                  && li.dataset.state === 'retrying'
                  && li.querySelector('.jp-TusUpload-status').textContent
                       .startsWith('connection lost, retrying'))""",
        arg=src.name,
        timeout=30_000,
    )
    state, text = status_of(page, src.name)
    assert RETRYING.match(text), text
    assert "/s" not in text and "left" not in text, text  # no speed from a dead server
    page.screenshot(
        path=str(results_dir / "filebrowser-retrying.png"),
        clip={"x": 0, "y": 0, "width": 720, "height": 720},
    )
    # The server stays away for a while: the upload keeps retrying and never fails.
    seen = set()
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        state, text = status_of(page, src.name)
        seen.add(state)
        assert state == "retrying", text
        time.sleep(0.25)
    assert len([r for r in log.requests[down:] if r.method == "HEAD"]) >= 2, "it kept trying"

    lab.process.start()
    back = log.mark()
    page.wait_for_function(
        """(name) => [...document.querySelectorAll('.jp-TusUpload')].some(
            li => li.querySelector('.jp-TusUpload-name').textContent === name
                  && li.dataset.state === 'done')""",
        arg=src.name,
        timeout=90_000,
    )

    assert sha256(lab.root / src.name) == big_file[1]
    assert len(log.posts()) == 1, "resumed, never started again"
    assert {p.url for p in log.patches()} == {upload_url}
    # The first answered HEAD after the restart gave the offset the next PATCH started at,
    # and only the rest of the file was sent.
    heads = [
        r
        for r in log.requests[down:]
        if r.method == "HEAD" and r.response() is not None and r.response().status == 200
    ]
    assert heads, "no HEAD answered after the restart"
    offset = int(heads[0].response().headers["upload-offset"])
    after = [TusLog.bytes_of(p) for p in log.patches(back) if p.response() is not None]
    assert after and after[0][0] == offset
    assert sum(n for _, n in after) == size - offset
    state, text = status_of(page, src.name)
    assert text == f"done · 100 MiB → {src.name}", text


def test_a_link_that_drops_every_few_seconds_still_lands(lab: Lab, browser, tmp_path, results_dir):
    """480 MiB at 24 MiB/s over a link that goes offline (DevTools' emulation: requests
    fail, navigator.onLine false) for 1 s every 5 s. The upload never fails, lands intact,
    and at most 1.1 x its size goes over the wire (counted by a TCP relay in front of the
    server: every byte the browser sent, bodies cut off by a drop included)."""
    src = tmp_path / "flaky-link.bin"
    digest = random_file(src, 480 * MiB)
    size = src.stat().st_size
    lab.set_settings(keepFileHandles=False)
    with Relay(lab.process.port) as wire:
        context = browser.new_context(viewport={"width": 1280, "height": 720})
        page = context.new_page()
        page.on("dialog", lambda d: d.accept() if d.type == "beforeunload" else d.dismiss())
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")

        def link(offline: bool) -> None:
            cdp.send(
                "Network.emulateNetworkConditions",
                {
                    "offline": offline,
                    "latency": 0,
                    "downloadThroughput": -1,
                    "uploadThroughput": 24 * MiB,
                },
            )

        link(False)
        page.goto(f"http://127.0.0.1:{wire.port}/lab?token={lab.process.token}")
        page.wait_for_selector("body[data-jupyter-tus]", state="attached", timeout=60_000)
        log = TusLog(page)
        before = wire.upstream
        upload_with_button(page, src)
        wait_progress(page, src.name, 0.02)

        drops = 0
        waited: list[str] = []
        last = ""
        while drops < 60:
            # The link's schedule (the fault being injected), not a wait for a state.
            time.sleep(4)
            if row(page, src.name).get_attribute("data-state") == "done":
                break
            link(True)
            drops += 1
            time.sleep(1)
            last = row(page, src.name).locator(".jp-TusUpload-status").inner_text()
            if last.startswith("offline, waiting for the network"):
                waited.append(last)
            assert row(page, src.name).get_attribute("data-state") != "failed", last
            link(False)
        wait_until(
            lambda: row(page, src.name).get_attribute("data-state") == "done",
            timeout=120,
            what="the upload done",
        )
        sent = wire.upstream - before
        accepted = [TusLog.bytes_of(p) for p in log.patches() if p.response() is not None]
        posts = len(log.posts())
        context.close()

    assert drops >= 3, "the link dropped during the upload"
    assert waited, f"the row never said it waits for the network (last: {last})"
    assert sha256(lab.root / src.name) == digest
    assert posts == 1, "one upload all along"
    assert sum(n for _, n in accepted) == size, "every byte landed once"
    assert sent <= 1.1 * size, f"{sent / MiB:.1f} MiB on the wire for {size / MiB:.0f} MiB"
    print(f"flaky link: {drops} drops, {sent / size:.3f} x the file on the wire")
