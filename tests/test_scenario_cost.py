"""Prices in the scenario: `backends[i].cost`, its defaults, and one line naming the place of a bad value."""

from __future__ import annotations

import pytest
from conftest import scenario_error as error_of

from harness.scenario import load_scenario_text


def test_no_cost_unless_given_and_every_price_defaults_to_zero() -> None:
    scenario = load_scenario_text("backends: [{name: a}, {name: b, cost: {}}]")
    assert scenario.backends[0].cost is None
    cost = scenario.backends[1].cost
    assert cost is not None
    assert (cost.ptu_per_hour, cost.prompt_per_1k, cost.completion_per_1k, cost.currency) == (0.0, 0.0, 0.0, "USD")


def test_prices_are_read_as_given() -> None:
    scenario = load_scenario_text(
        "backends: [{deployments: {gpt-4o: {ptu: 15}},"
        " cost: {ptu_per_hour: 1.25, prompt_per_1k: 0.0025, completion_per_1k: 0.01, currency: EUR}}]"
    )
    cost = scenario.backends[0].cost
    assert cost is not None
    assert (cost.ptu_per_hour, cost.prompt_per_1k, cost.completion_per_1k, cost.currency) == (
        1.25,
        0.0025,
        0.01,
        "EUR",
    )


def test_a_price_can_be_overridden_from_the_command_line() -> None:
    scenario = load_scenario_text("backends: [{name: a}]", overrides=["backends[0].cost.prompt_per_1k=0.5"])
    assert scenario.backends[0].cost is not None and scenario.backends[0].cost.prompt_per_1k == 0.5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("backends: [{}, {cost: {ptu_per_hour: -1}}]", "s.yaml: backends[1].cost.ptu_per_hour: must be >= 0"),
        ("backends: [{cost: {prompt_per_1k: -0.001}}]", "backends[0].cost.prompt_per_1k: must be >= 0"),
        ("backends: [{cost: {prompt_per_1k: .nan}}]", "backends[0].cost.prompt_per_1k: must be a finite number"),
        ("backends: [{cost: {completion_per_1k: .inf}}]", "backends[0].cost.completion_per_1k: must be a finite"),
        ("backends: [{cost: {ptu_per_hour: -.inf}}]", "backends[0].cost.ptu_per_hour: must be a finite number"),
        ("backends: [{cost: {ptu_per_hour: nan}}]", "backends[0].cost.ptu_per_hour: must be a finite number"),
        ("backends: [{cost: {ptu_per_hour: true}}]", "backends[0].cost.ptu_per_hour: must be a number"),
        ("backends: [{cost: {ptu_per_hour: cheap}}]", "backends[0].cost.ptu_per_hour: must be a number"),
        ("backends: [{cost: {currency: ''}}]", "backends[0].cost.currency: must not be empty"),
        ("backends: [{cost: {per_token: 1}}]", "backends[0].cost.per_token: unknown field"),
        ("backends: [{cost: 3}]", "backends[0].cost: must be a mapping"),
        (
            "backends: [{name: a, cost: {}}, {name: b}, {name: c, cost: {currency: EUR}}]",
            "backends[2].cost.currency: 'EUR' differs from backends[0].cost.currency 'USD'",
        ),
    ],
)
def test_bad_prices_name_their_place(text: str, expected: str) -> None:
    assert expected in error_of(text)
