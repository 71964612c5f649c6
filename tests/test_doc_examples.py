"""The examples in every module's docstrings stay true.

Modules that import gevent (the Locust plugin and its HTTP transport) are left out: loading them would
monkey-patch this test process; the Locust end-to-end tests run them in their own processes.
"""

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import harness

GEVENT_IMPORT = re.compile(r"^\s*(import|from)\s+(gevent|geventhttpclient|locust)\b", re.MULTILINE)


def modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(harness.__path__, "harness."):
        spec = importlib.util.find_spec(info.name)
        assert spec is not None and spec.origin is not None
        source = Path(spec.origin).read_text(encoding="utf-8")
        if ">>>" in source and not GEVENT_IMPORT.search(source):
            names.append(info.name)
    return names


MODULES = modules_with_examples()


def test_the_examples_are_found() -> None:
    assert {"harness.clock", "harness.limits", "harness.mock.deployment", "harness.gateway.breaker"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
