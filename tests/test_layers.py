"""The layers hold at run time, not only in the import graph: the simulator and the cores load no web
server, no HTTP client, no Locust or gevent, no Redis client and nothing of the Locust side (a package
`__init__` that imports its app would pull them all in unseen)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SERVERS_AND_NETWORK = (
    "starlette",
    "uvicorn",
    "httpx",
    "locust",
    "gevent",
    "geventhttpclient",
    "redis",
    "harness.loadgen",
)


def loaded_by(module: str) -> list[str]:
    probe = (
        f"import json, sys; import {module}; "
        f"print(json.dumps([m for m in {SERVERS_AND_NETWORK!r} if m in sys.modules]))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return list(json.loads(result.stdout))


@pytest.mark.parametrize("module", ["harness.sim.run", "harness.sim", "harness.mock.core", "harness.aoai.errors"])
def test_the_simulator_and_the_cores_load_no_server_and_no_network_side(module: str) -> None:
    assert loaded_by(module) == []


def test_the_servers_packages_import_nothing_by_themselves() -> None:
    assert loaded_by("harness.gateway") == [] and loaded_by("harness.mock") == []
