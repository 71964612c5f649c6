"""A redis-server for tests: started from the PATH, or the test is skipped saying how to install it."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator

import pytest

from harness.gateway.redis_server import RedisServer


@contextlib.contextmanager
def redis_server_or_skip(server: RedisServer | None = None) -> Iterator[str]:
    """The URL of a running redis-server (`server`, or a new one), stopped afterwards."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on the PATH (apt-get install redis-server; .ci/run installs it)")
    server = server or RedisServer()
    try:
        yield server.start()
    finally:
        server.stop()
