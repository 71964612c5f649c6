"""The shape of a sweep's verdict in comparison.json: the recommendation, its margins, and the live
confirmation with its sim-against-live agreement rows. TypedDicts for the same reason as the summary's
(`summary.schema`): they are the plain dicts written to JSON, key order included, and mypy checks every
key a reader (the console lines, compare.html's sweep section) names.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class MarginFigures(TypedDict):
    """How a setting's runs meet one constraint (`recommend.Margin`)."""

    mean: float | None
    bound: float | None
    margin: float | None  # None with one run: no spread to bound
    margin_known: bool
    holds: bool
    marginal: bool


class RunnerUp(TypedDict):
    label: str
    setting: dict[str, str]
    mean: float | None
    ci95: float | None


class AgreementRow(TypedDict):
    """One number, simulated (mean ± CI over the sweep's runs) against the mean of the live runs."""

    sim_mean: float | None
    sim_ci95: float | None
    sim_runs: int
    live: float | None
    live_values: list[float | None]
    live_runs: int
    diff: float | None
    diff_pct: float | None
    within_ci: bool | None
    within_prediction: bool | None


class LiveRunFacts(TypedDict):
    run_dir: str
    seed: int
    exit_code: int | None
    problems: list[str]
    values: dict[str, float | None]  # by constraint


class ConstraintLiveFigures(TypedDict):
    values: list[float | None]
    breaking: int
    of: int
    held: bool


class ObjectiveLive(TypedDict):
    values: list[float | None]
    mean: float | None


class LiveVerdict(TypedDict):
    """A confirmed setting's live runs and whether it held (`confirm.LiveResult`)."""

    runs: list[LiveRunFacts]
    constraints_met: bool
    held_runs: int
    per_constraint: dict[str, ConstraintLiveFigures]
    failed_checks: list[str]
    objective: ObjectiveLive


class LiveCandidate(LiveVerdict):
    metrics: dict[str, list[float | None]]  # every number's live values, drawn beside the simulated points


class Confirmation(TypedDict):
    """`recommendation.confirm`: the live confirmation of a simulated sweep (`harness sweep --confirm`)."""

    runs_per_setting: int
    pick: str
    confirmed: bool
    final: str | None
    fallback: str | None
    final_setting: dict[str, str] | None
    exit_code: int
    line: str
    held_runs: dict[str, list[int]]  # by setting: [held, of]
    broken: list[str]
    candidates: dict[str, LiveCandidate]
    metrics: dict[str, AgreementRow]  # the pick's numbers, simulated against live
    within_ci: list[str]
    outside_ci: list[str]


class Recommendation(TypedDict):
    """comparison.json's `recommendation` (see `recommend`'s rules)."""

    setting: dict[str, str]
    label: str
    objective: str
    feasible: bool
    mean: float | None
    ci95: float | None
    within_noise: bool | None
    within_noise_of: list[str]
    at_edge: bool
    try_beyond: list[str]
    marginal_constraints: list[str]
    margins: dict[str, MarginFigures]
    runner_up: RunnerUp | None
    worst_level: NotRequired[dict[str, str]]  # with varied inputs: the level the setting is judged at
    # in every recommendation; written last, from the keys above (so not in the literal that builds them)
    why: NotRequired[str]
    confirm: NotRequired[Confirmation]  # with --confirm, once the live runs are judged
