"""The `workload` section: defaults, references and one-line path-precise errors."""

from __future__ import annotations

import pytest

from harness.errors import ScenarioError
from harness.scenario import load_scenario_text


def error_of(text: str) -> str:
    with pytest.raises(ScenarioError) as caught:
        load_scenario_text(text)
    return str(caught.value)


def test_defaults_make_a_runnable_workload() -> None:
    workload = load_scenario_text("").workload
    assert [a.id for a in workload.apps] == ["app"]
    assert workload.apps[0].client_profile == "openai-python"
    assert workload.mixes[0].operation == "chat" and workload.mixes[0].deployment == "gpt-4o"
    assert workload.stages == [] and workload.trace is None


def test_every_field_has_a_description() -> None:
    from harness.scenario.workload import App, Mix, RetrySettings, Stage, Trace, Workload

    for model in (App, Mix, RetrySettings, Stage, Trace, Workload):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name}"


def test_unknown_deployment_lists_the_known_ones() -> None:
    assert error_of("workload: {mixes: [{deployment: gpt-5}]}") == (
        "workload.mixes[0].deployment: unknown deployment 'gpt-5' (the backends have: gpt-4o)"
    )


def test_trace_deployment_is_checked_too() -> None:
    assert error_of("workload: {trace: {file: t.csv, deployment: nope}}").startswith(
        "workload.trace.deployment: unknown deployment 'nope'"
    )


def test_app_naming_an_unknown_mix() -> None:
    assert error_of("workload: {apps: [{id: a, mixes: [big]}]}") == (
        "workload.apps[0].mixes[0]: unknown mix 'big' (the mixes are: chat)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("workload: {apps: [{id: a}, {id: a}]}", "workload.apps[1].id: 'a' is also apps[0]"),
        ("workload: {apps: [{client_profile: curl}]}", "workload.apps[0].client_profile: must be one of"),
        ("workload: {mixes: [{stream_share: 2}]}", "workload.mixes[0].stream_share: must be <= 1"),
        ("workload: {mixes: [{operation: images}]}", "workload.mixes[0].operation: must be one of"),
        ("workload: {stages: [{duration: soon}]}", "workload.stages[0].duration: 'soon' is not a duration"),
        ("workload: {apps: [{retry: {max_retries: -1}}]}", "workload.apps[0].retry.max_retries: must be >= 0"),
        ("workload: {mixes: [{prompt_tokens: {kind: lognormal, median: 0}}]}", "workload.mixes[0].prompt_tokens"),
        ("workload: {apps: []}", "workload.apps: needs at least 1 item(s)"),
        ("workload: {colour: red}", "workload.colour: unknown field"),
    ],
)
def test_errors_are_one_line_with_the_path(text: str, expected: str) -> None:
    message = error_of(text)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_stage_spawn_rate_defaults_to_its_users_and_durations_parse() -> None:
    stages = load_scenario_text("workload: {stages: [{duration: PT2M, users: 4}, {duration: 30, users: 0}]}")
    assert [(s.duration, s.spawn_rate) for s in stages.workload.stages] == [(120.0, 4.0), (30.0, 1.0)]


def test_overrides_reach_the_workload() -> None:
    scenario = load_scenario_text(
        "workload: {apps: [{id: a}]}", overrides=["workload.apps[0].client_profile=none", "workload.users=3"]
    )
    assert scenario.workload.apps[0].client_profile == "none" and scenario.workload.users == 3


@pytest.mark.parametrize("weights", [[1.0], [1.0, 3.0], [0.2, 0.5, 0.3, 7.0]])
def test_a_mix_is_drawn_as_random_choices_draws_it(weights: list[float]) -> None:
    """The users' mix picker draws exactly what `rng.choices(mixes, weights)` draws, from the same stream, one
    draw per request (a single mix still takes its draw), with --tags narrowing the mixes first."""
    import random

    from harness.scenario.workload import App, Mix, Workload
    from harness.workload.requests import MixPicker

    workload = Workload(mixes=[Mix(name=f"m{i}", weight=w) for i, w in enumerate(weights)])
    for only in (None, {f"m{i}" for i in range(0, len(weights), 2)}):
        picker = MixPicker(workload, App(), only)
        mixes = [m for m in workload.mixes if only is None or m.label in only]
        ours, theirs = random.Random(5), random.Random(5)
        drawn = [picker.pick(ours).label for _ in range(2_000)]
        assert drawn == [theirs.choices(mixes, weights=[m.weight for m in mixes])[0].label for _ in range(2_000)]
        assert ours.random() == theirs.random()  # the same number of draws taken
