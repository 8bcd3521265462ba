"""No in-process jupyter server in this folder: pytest-jupyter's per-test event loop
is not needed (and must never adopt an event loop that Playwright runs)."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Page, sync_playwright

from ..servers import jp_asyncio_loop, jp_server_cleanup  # noqa: F401 - fixtures

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update"]  # fmt: skip
TIMEOUT = 120_000  # ms, for what waits on JupyterLab, the kernel or an upload


@pytest.fixture
def in_browser(lab):
    """Run ``scenario(page)`` in a fresh chromium, on a thread of its own: Playwright's
    sync API runs an event loop while it is open, which must not meet pytest-jupyter's
    (or another module's open Playwright) on the main thread."""

    def run(scenario: Callable[[Page], None]) -> None:
        def in_thread() -> None:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                try:
                    page = browser.new_context().new_page()
                    page.set_default_timeout(TIMEOUT)
                    page.on("dialog", lambda dialog: dialog.accept())  # "leave?" on reload
                    scenario(page)
                finally:
                    browser.close()

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="playwright") as pool:
            pool.submit(in_thread).result()

    return run
