"""The scenario model: defaults, durations, overrides, and one clear line for every bad file."""

from pathlib import Path

import pytest
from conftest import scenario_error as error_of

from harness.errors import ScenarioError
from harness.scenario import apply_overrides, load_scenario, load_scenario_text, parse_duration
from harness.scenario.common import Distribution


def test_empty_file_gives_a_complete_default_scenario() -> None:
    scenario = load_scenario_text("")
    backend = scenario.backends[0]
    assert backend.name == "aoai" and backend.deployments["gpt-4o"].tpm == 50_000
    assert backend.deployments["gpt-4o"].model == "gpt-4o"
    assert scenario.run.time_scale == 1.0


def test_every_field_has_a_description() -> None:
    from pydantic import BaseModel

    from harness.scenario import Scenario

    def walk(model: type[BaseModel], path: str) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{path}.{name}")
            for arg in (*getattr(field.annotation, "__args__", ()), field.annotation):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    missing += walk(arg, f"{path}.{name}")
        return missing

    assert walk(Scenario, "scenario") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "backends: [{}, {deployments: {gpt-4o: {tpm: -5}}}]",
            "backends[1].deployments.gpt-4o.tpm: must be a positive integer",
        ),
        ("backends: [{deployments: {gpt-4o: {tpm: lots}}}]", "backends[0].deployments.gpt-4o.tpm: must be an integer"),
        ("backends: [{regoin: x}]", "backends[0].regoin: unknown field"),
        ("run: {time_scale: 0}", "run.time_scale: must be > 0"),
        ("run: {duration: soon}", "run.duration: 'soon' is not a duration"),
        ("backends: [{deployments: {}}]", "backends[0].deployments: an instance needs at least one deployment"),
        ("backends: [{name: a}, {name: a}]", "backends[1].name: 'a' is also backends[0]"),
        ("backends: [{faults: {error_rates: {200: 0.1}}}]", "backends[0].faults.error_rates.200: is not an HTTP error"),
        ("backends: {name: a}", "backends: must be a list"),
        (
            "backends: [{deployments: {gpt-4o: {ptu: 1, ptu_initial_utilization: 150}}}]",
            "backends[0].deployments.gpt-4o.ptu_initial_utilization: must be <= 100",
        ),
        (
            "backends: [{deployments: {gpt-4o: {count_rejected_requests: maybe}}}]",
            "backends[0].deployments.gpt-4o.count_rejected_requests: must be true or false",
        ),
        (
            "backends: [{faults: {injected_429: {policy_id: ''}}}]",
            "backends[0].faults.injected_429.policy_id: must not",
        ),
        ("run: [1, 2", "line 1, column 11"),
        ("- just\n- a list", "a scenario must be a mapping"),
    ],
)
def test_bad_files_give_one_line_naming_the_path(text: str, expected: str) -> None:
    message = error_of(text)
    assert message.startswith("s.yaml: ")
    assert expected in message


def test_aoai_rules_are_the_defaults() -> None:
    backend = load_scenario_text("").backends[0]
    deployment = backend.deployments["gpt-4o"]
    assert deployment.count_rejected_requests is True  # failed requests count toward the limits
    assert deployment.ptu_initial_utilization == 0.0  # a cold PTU deployment starts empty
    assert backend.faults.injected_429.retry_after == 1.0
    assert backend.faults.injected_429.policy_id == "DeploymentRatelimit-Requests"


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.yaml")


def test_durations_accept_iso8601_seconds_and_shorthand() -> None:
    assert parse_duration("PT1M") == 60
    assert parse_duration("P1D") == 86_400
    assert parse_duration(2.5) == 2.5
    assert parse_duration("500ms") == 0.5
    scenario = load_scenario_text("run: {duration: PT2M30S}")
    assert scenario.run.duration == 150
    assert scenario.model_dump(mode="json")["run"]["duration"] == "PT2M30S"


def test_unnamed_backends_get_distinct_names() -> None:
    scenario = load_scenario_text("backends: [{}, {region: West US}]")
    assert [b.name for b in scenario.backends] == ["aoai-0", "aoai-1"]


def test_overrides_set_nested_paths_and_list_items() -> None:
    data = {"backends": [{"region": "East US"}]}
    out = apply_overrides(data, ["backends[0].region=West Europe", "run.time_scale=10"])
    assert out == {"backends": [{"region": "West Europe"}], "run": {"time_scale": 10}}
    assert data == {"backends": [{"region": "East US"}]}  # the input is left alone
    with pytest.raises(ScenarioError, match=r"backends\[3\]: no such list item"):
        apply_overrides(data, ["backends[3].region=x"])
    with pytest.raises(ScenarioError, match="path=value"):
        apply_overrides(data, ["run.seed"])


def test_overrides_are_validated_like_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("backends: [{name: east}]\n")
    assert (
        load_scenario(path, ["backends[0].deployments.gpt-4o.tpm=1000"]).backends[0].deployments["gpt-4o"].tpm == 1000
    )
    with pytest.raises(ScenarioError, match=r"backends\[0\].deployments.gpt-4o.tpm: must be a positive integer"):
        load_scenario(path, ["backends[0].deployments.gpt-4o.tpm=0"])


def test_distributions_sample_within_bounds_and_scalars_are_constants() -> None:
    import random

    rng = random.Random(1)
    assert Distribution.model_validate(7).sample(rng) == 7
    lognormal = Distribution.model_validate({"kind": "lognormal", "median": 100, "p95": 400, "max": 500})
    samples = sorted(lognormal.sample(rng) for _ in range(4000))
    assert samples[-1] <= 500
    assert 85 <= samples[2000] <= 115  # the median is where it was asked to be
    assert 330 <= samples[3800] <= 470  # and so is the 95th percentile
    with pytest.raises(ValueError):
        Distribution.model_validate({"kind": "uniform", "low": 3, "high": 1})


def test_the_stream_cut_and_the_silent_429_faults_are_off_by_default_and_checked() -> None:
    faults = load_scenario_text("backends: [{name: a}]").backends[0].faults
    assert faults.cut_streams.probability == 0 and faults.injected_429.retry_after == 1.0
    text = "backends: [{name: a, faults: {injected_429: {retry_after: null}, cut_streams: {probability: 0.1}}}]"
    faults = load_scenario_text(text).backends[0].faults
    assert faults.injected_429.retry_after is None and faults.cut_streams.after == 0.5
    with pytest.raises(ScenarioError, match=r"^backends\[0\]\.faults\.cut_streams\.after: must be < 1"):
        load_scenario_text("backends: [{name: a, faults: {cut_streams: {after: 1}}}]")
