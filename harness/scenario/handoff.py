"""Scenario overrides handed to a child process in its environment, never on its command line.

An override can carry a secret (`backends[0].api_key=...`); a command line is readable by every user of the
machine (`ps`, /proc/<pid>/cmdline), a process's environment only by its owner. `harness serve` and the
Locust plugin take `--set-env NAME`: further `--set` overrides read from the environment variable NAME, a JSON
list of `PATH=VALUE` strings.

    >>> env = overrides_env(["run.seed=2", "backends[0].api_key=s3cret"])
    >>> overrides_from_env(OVERRIDES_ENV, env)
    ['run.seed=2', 'backends[0].api_key=s3cret']
    >>> overrides_from_env("NOPE", {})
    Traceback (most recent call last):
    ...
    harness.errors.ScenarioError: --set-env: no environment variable NOPE
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

from harness.errors import ScenarioError

# The variable the harness itself uses when it starts a child with overrides.
OVERRIDES_ENV = "HARNESS_OVERRIDES"
SET_ENV_OPTION = "--set-env"


def overrides_env(overrides: Iterable[str]) -> dict[str, str]:
    """The environment entries that carry `overrides` to a child started with `--set-env OVERRIDES_ENV`."""
    return {OVERRIDES_ENV: json.dumps(list(overrides))}


def overrides_from_env(name: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """The overrides in the environment variable `name` (a JSON list of strings); anything else is one line."""
    environ = os.environ if environ is None else environ
    raw = environ.get(name)
    if raw is None:
        raise ScenarioError(SET_ENV_OPTION, f"no environment variable {name}")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ScenarioError(SET_ENV_OPTION, f"{name} must hold a JSON list of PATH=VALUE strings")
    return value
