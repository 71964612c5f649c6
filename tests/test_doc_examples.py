"""The examples in the foundation modules' docstrings stay true."""

import doctest
import importlib

import pytest

MODULES = [
    "harness.clock",
    "harness.errors",
    "harness.limits",
    "harness.scenario",
    "harness.scenario.common",
    "harness.tokens",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
