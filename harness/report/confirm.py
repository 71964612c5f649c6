"""A sweep's live confirmation, judged: the simulator's pick and its runner-up ran live N times each; a setting
holds live when every live run produced records, passes the setting's own `checks:` and meets every
constraint. The pick stands when it held; otherwise the best setting that held (in the simulator's order)
is recommended instead, or none, and the sweep exits with CHECKS_FAILED_EXIT_CODE.

    >>> c = Constraint("requests.rate_429", "<=", 0.01)
    >>> pick = judge_live("PT30S", [LiveRun("a", 5, {"requests": {"rate_429": 0.02}})], [c], Checks(), "x.y")
    >>> other = judge_live("PT1M", [LiveRun("b", 5, {"requests": {"rate_429": 0.0}})], [c], Checks(), "x.y")
    >>> decide(["PT30S", "PT1M"], {"PT30S": pick, "PT1M": other}, no_fail=False)
    Decision(confirmed=False, final='PT1M', fallback='PT1M', exit_code=3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.errors import CHECKS_FAILED_EXIT_CODE
from harness.report.checks import evaluate_checks
from harness.report.recommend import format_value, metric_value, numbers
from harness.report.summary.schema import Summary
from harness.report.sweep_schema import Confirmation, LiveVerdict
from harness.scenario.checks import Checks
from harness.scenario.objectives import Constraint


@dataclass(frozen=True)
class LiveRun:
    """One live run of a confirmed setting: where it went, its seed, its summary (None: no records)."""

    run_dir: str
    seed: int
    summary: Summary | None
    problems: list[str] = field(default_factory=list)
    exit_code: int | None = None


@dataclass(frozen=True)
class ConstraintLive:
    """One constraint over the live runs of a setting: each run's value and which of them broke it."""

    constraint: Constraint
    values: list[float | None]

    @property
    def breaking(self) -> int:
        return sum(not self.constraint.holds(v) for v in self.values)

    @property
    def held(self) -> bool:
        return self.breaking == 0

    def values_text(self) -> str:
        """The live values, e.g. `1.46 %, 2.00 %, 0.90 %` (`no records` for a run without)."""
        return ", ".join("no records" if v is None else format_value(self.constraint.metric, v) for v in self.values)


@dataclass
class LiveResult:
    """A confirmed setting's live runs and their verdict."""

    label: str
    runs: list[LiveRun]
    per_constraint: dict[str, ConstraintLive]
    failed_checks: list[list[str]]  # per run (in the order of `runs`): the checks it failed, described
    objective_values: list[float | None]

    @property
    def held_runs(self) -> int:
        """Live runs that produced records, passed the checks and met every constraint."""
        return sum(self._run_held(i) for i in range(len(self.runs)))

    @property
    def held(self) -> bool:
        return bool(self.runs) and self.held_runs == len(self.runs)

    def _run_held(self, i: int) -> bool:
        run = self.runs[i]
        if run.summary is None or self.failed_checks[i]:
            return False
        return all(c.constraint.holds(c.values[i]) for c in self.per_constraint.values())

    def failed_checks_text(self) -> list[str]:
        """`seed S: <the failed check>` for every check a live run failed."""
        return [f"seed {r.seed}: {f}" for r, failed in zip(self.runs, self.failed_checks, strict=True) for f in failed]

    def broken(self) -> list[ConstraintLive]:
        return [c for c in self.per_constraint.values() if not c.held]

    def as_json(self) -> LiveVerdict:
        measured = [v for v in self.objective_values if v is not None]
        return {
            "runs": [
                {
                    "run_dir": r.run_dir,
                    "seed": r.seed,
                    "exit_code": r.exit_code,
                    "problems": r.problems,
                    "values": {n: c.values[i] for n, c in self.per_constraint.items()},
                }
                for i, r in enumerate(self.runs)
            ],
            "constraints_met": self.held,
            "held_runs": self.held_runs,
            "per_constraint": {
                n: {"values": c.values, "breaking": c.breaking, "of": len(c.values), "held": c.held}
                for n, c in self.per_constraint.items()
            },
            "failed_checks": self.failed_checks_text(),
            "objective": {
                "values": self.objective_values,
                "mean": math.fsum(measured) / len(measured) if measured else None,
            },
        }


def judge_live(
    label: str, runs: list[LiveRun], constraints: list[Constraint], checks: Checks, objective_metric: str
) -> LiveResult:
    """Re-apply the constraints, the setting's own checks and the objective to each live run."""
    flats = [None if r.summary is None else (r.summary, numbers(r.summary)) for r in runs]

    def values(metric: str) -> list[float | None]:
        return [None if f is None else metric_value(f[0], f[1], metric) for f in flats]

    per_constraint = {str(c): ConstraintLive(c, values(c.metric)) for c in constraints}
    failed = [
        [] if r.summary is None else [c.describe() for c in evaluate_checks(checks, r.summary) if not c.passed]
        for r in runs
    ]
    return LiveResult(label, runs, per_constraint, failed, values(objective_metric))


@dataclass(frozen=True)
class Decision:
    """What the live confirmation concluded: did the pick hold, what is finally recommended, the exit code."""

    confirmed: bool
    final: str | None
    fallback: str | None
    exit_code: int


def decide(order: list[str], live: dict[str, LiveResult], no_fail: bool) -> Decision:
    """The pick (`order[0]`) stands when it held live; else the first in `order` that held, or none.

    >>> held = LiveResult("A", [LiveRun("a", 1, {})], {}, [[]], [])
    >>> decide(["A", "B"], {"A": held}, no_fail=False)
    Decision(confirmed=True, final='A', fallback=None, exit_code=0)
    """
    pick = order[0]
    if live[pick].held:
        return Decision(True, pick, None, 0)
    fallback = next((label for label in order[1:] if label in live and live[label].held), None)
    return Decision(False, fallback, fallback, 0 if no_fail else CHECKS_FAILED_EXIT_CODE)


def _why_not(result: LiveResult) -> str:
    """What broke, e.g. `broke requests.rate_429<=0.01 live in 2 of 3 runs (1.46 %, 2.00 %, 0.90 %)`."""
    runs = len(result.runs)
    parts = [
        f"broke {c.constraint} live in {c.breaking} of {runs} runs ({c.values_text()})"
        for c in result.broken()
        if any(v is not None for v in c.values)
    ]
    missing = sum(r.summary is None for r in result.runs)
    if missing:
        parts.append(f"produced no records live in {missing} of {runs} runs")
    failed = result.failed_checks_text()
    if failed:
        parts.append(f"failed its checks live ({'; '.join(failed)})")
    return "; ".join(parts) or f"held in {result.held_runs} of {runs} live runs"


def confirm_line(order: list[str], live: dict[str, LiveResult], decision: Decision) -> str:
    """The one console line of the confirmation (see the module's example)."""
    pick = live[order[0]]
    runs = len(pick.runs)
    if decision.confirmed:
        held = "; ".join(f"{c.constraint}: {c.values_text()}" for c in pick.per_constraint.values())
        return f"confirm: {pick.label} held in {runs} of {runs} live runs" + (f" ({held})" if held else "")
    line = f"confirm: {pick.label} {_why_not(pick)}: "
    if decision.final is not None:
        final = live[decision.final]
        return line + f"recommending {final.label}, which held in {final.held_runs} of {len(final.runs)}"
    others = [live[label] for label in order[1:] if label in live]
    tail = "; ".join(f"{o.label} {_why_not(o)}" for o in others)
    return line + "no setting held live, nothing to recommend" + (f" ({tail})" if tail else "")


def confirm_headline(confirm: Confirmation) -> str:
    """The first line of compare.html when a sweep was confirmed live (from comparison.json's `confirm`).

    >>> confirm_headline({"confirmed": True, "final": "PT1M", "pick": "PT1M", "held_runs": {"PT1M": [3, 3]}})
    'Live confirmation: PT1M held in 3 of 3 live runs'
    """
    pick, final = confirm["pick"], confirm["final"]
    held, of = confirm["held_runs"][pick]
    if confirm["confirmed"]:
        return f"Live confirmation: {pick} held in {held} of {of} live runs"
    broken = ", ".join(confirm.get("broken", [])) or "its constraints"
    head = f"Live confirmation: the simulator's pick {pick} broke {broken} live"
    return head + (f"; {final} held" if final is not None else "; no setting held")
