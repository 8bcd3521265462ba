"""No in-process jupyter server in this folder: pytest-jupyter's per-test event loop
is not needed (and must never adopt an event loop that Playwright runs)."""

from ..servers import jp_asyncio_loop, jp_server_cleanup  # noqa: F401 - fixtures
