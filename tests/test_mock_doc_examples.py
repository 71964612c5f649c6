"""The examples in the mock modules' docstrings stay true."""

import doctest
import importlib

import pytest

MODULES = [
    "harness.mock",
    "harness.mock.app",
    "harness.mock.deployment",
    "harness.mock.errors",
    "harness.mock.faults",
    "harness.mock.headers",
    "harness.mock.latency",
    "harness.mock.log",
    "harness.mock.pool",
    "harness.mock.synth",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
