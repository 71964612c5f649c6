"""The examples in the gateway modules' docstrings stay true."""

import doctest
import importlib

import pytest

MODULES = [
    "harness.scenario.gateway",
    "harness.gateway.breaker",
    "harness.gateway.pool",
    "harness.gateway.token_limit",
    "harness.gateway.identity",
    "harness.gateway.metrics",
    "harness.gateway.log",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
