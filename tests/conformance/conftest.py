"""The conformance suite's fixtures: ``harness``, once per store kind (see harness.py),
and the SeaweedFS behind the S3 store."""

from __future__ import annotations

import pytest

from .harness import FileHarness, Harness, S3Harness


@pytest.fixture(scope="session")
def s3_bucket(s3_server) -> str:
    return s3_server.new_bucket()


@pytest.fixture(params=["file", "s3"])
def harness(request, tmp_path) -> Harness:
    if request.param == "file":
        return FileHarness(tmp_path)
    server = request.getfixturevalue("s3_env")
    return S3Harness(server, request.getfixturevalue("s3_bucket"))
