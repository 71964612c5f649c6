"""The mock pool of a scenario: one app per backend instance that has no real `url`.

>>> from harness.clock import VirtualClock
>>> from harness.scenario import load_scenario_text
>>> sorted(build_pool(load_scenario_text("backends: [{name: a}, {name: b}]"), VirtualClock(), None))
['a', 'b']
"""

from __future__ import annotations

from starlette.applications import Starlette

from harness.clock import Clock
from harness.mock.app import build_mock_app
from harness.mock.log import BackendLog
from harness.scenario import BackendInstance, Scenario


def mock_instances(scenario: Scenario) -> list[BackendInstance]:
    """The instances to start: those that do not point at a real endpoint."""
    return [backend for backend in scenario.backends if not backend.url]


def build_pool(scenario: Scenario, clock: Clock, log: BackendLog | None) -> dict[str, Starlette]:
    """Instance name -> its ASGI app, all writing to one log, seeded from the run's seed."""
    return {b.name: build_mock_app(b, clock, log, scenario.run.seed) for b in mock_instances(scenario)}
