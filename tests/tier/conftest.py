"""Fixtures of the remote-tier tests: one moto S3 server per session, a bucket per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.tier.s3server import S3Server


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    server = S3Server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def remote(s3: S3Server) -> str:
    """The URI of a prefix in a new bucket."""
    return s3.bucket()
