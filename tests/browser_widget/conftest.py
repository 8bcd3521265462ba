"""No in-process jupyter server in this folder: pytest-jupyter's per-test event loop
is not needed (and must never adopt an event loop that Playwright runs)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def jp_asyncio_loop() -> Iterator[None]:
    yield None


@pytest.fixture
def jp_server_cleanup() -> Iterator[None]:
    yield
