"""A sweep's verdict: per point, every headline number as mean and 95 % CI over its runs; which points are
feasible; the best under the objective, whether it beats the runner-up by more than the noise, and whether it
sits at the edge of what was swept.

Rules (comparison.json and the why paragraph follow them):
- a point is feasible when the means of its runs pass its own `checks:` (`evaluate_checks` on the means) and
  every `--constraint` holds for the runs a user will see, not only for their mean: the one-sided prediction
  bound of one more run, mean ± t(q, n-1) · s · √(1 + 1/n) (upper for <= and <, lower for >= and >; q is
  `--quantile`, 0.95 by default), must meet the limit too. With one run the bound is that run's value and the
  margin is unknown. A number no run measured fails;
- per point and constraint: `margin`, the signed distance from the bound to the limit in the metric's units
  (positive = room), and `seeds_breaking`, how many of the runs broke the limit on their own;
- `marginal`: the mean meets a limit but the bound does not. Such a point is not feasible (it is excluded,
  and the why paragraph says "marginal");
- with varied inputs (`harness sweep --vary`), a setting runs at every level of them: it is feasible only
  when it is feasible at every level, and it is ranked by its worst level's objective;
- the best is the feasible point with the best mean objective (the least bad of all when none is feasible);
- `within_noise`: the best's 95 % CI overlaps the runner-up's (the error bars of the figures overlap). This is
  the conservative reading: two intervals can overlap while a Welch t-test would call the gap significant,
  so "within noise" errs towards "measure more". None with one run per point (no noise estimate);
- `at_edge`: on some axis whose values are ordered (numbers or durations), the best has the smallest or the
  largest value swept, so a better value may lie beyond it.

    >>> edge_hints({"x": "PT1M"}, {"x": ["PT10S", "PT30S", "PT1M"]})
    ['x above PT1M']
    >>> edge_hints({"x": "PT30S"}, {"x": ["PT10S", "PT30S", "PT1M"]})
    []
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from harness.report.checks import CHECKED_NUMBERS, evaluate_checks
from harness.report.flat import flatten
from harness.report.stats import Estimate, estimate
from harness.report.summary.schema import Summary, SummaryBody
from harness.report.sweep_schema import AgreementRow, MarginFigures, Recommendation
from harness.scenario.checks import Checks
from harness.scenario.common import parse_duration
from harness.scenario.objectives import HEADLINE, PER_BACKEND, Constraint, Objective, unknown_metric

_BREAKER_COUNT = re.compile(r"^breaker\.(?P<backend>.+)\.(trips|open_s)$")
DEFAULT_QUANTILE = 0.95


@dataclass
class PointRuns:
    """One setting of a sweep and the summaries of its runs (None where a run produced no records)."""

    label: str
    settings: dict[str, str]
    run_dirs: list[str]
    summaries: list[Summary | None]
    checks: Checks = field(default_factory=Checks)
    problems: list[str] = field(default_factory=list)
    level: dict[str, str] = field(default_factory=dict)  # the varied inputs' values this point ran at


@dataclass(frozen=True)
class Margin:
    """How a point's runs meet one constraint: the mean, the prediction bound of one more run, and the runs
    that broke the limit on their own.

    >>> m = Margin(Constraint("requests.rate_429", "<=", 0.01), 0.006, 0.012, True, 1, 10, 0.95)
    >>> m.marginal, round(m.margin, 4), m.describe()
    (True, -0.002, 'mean 0.60 %, 95 % bound 1.20 % (0.20 pp over the limit), 1 of 10 runs broke it')
    """

    constraint: Constraint
    mean: float | None
    bound: float | None  # the one-sided prediction bound; with one run, that run's value
    known: bool  # False with one run: no spread to bound, so the margin is unknown
    breaking: int  # runs whose own value broke the limit
    runs: int  # runs that measured the number
    quantile: float

    @property
    def margin(self) -> float | None:
        """Signed distance from the bound to the limit (positive = room), in the metric's units."""
        return self.constraint.room(self.bound)

    @property
    def mean_holds(self) -> bool:
        return self.constraint.holds(self.mean)

    @property
    def holds(self) -> bool:
        return self.mean_holds and self.constraint.holds(self.bound)

    @property
    def marginal(self) -> bool:
        """The mean meets the limit, the runs a user will see may not."""
        return self.mean_holds and not self.constraint.holds(self.bound)

    def describe(self) -> str:
        metric = self.constraint.metric
        broke = f"{self.breaking} of {self.runs} runs broke it"
        if self.mean is None:
            return "not measured"
        if not self.known:
            return f"one run: {format_value(metric, self.bound)}, margin unknown, {broke}"
        room = self.margin
        assert room is not None
        side = "of room" if room >= 0 else "over the limit"
        return (
            f"mean {format_value(metric, self.mean)}, {self.quantile * 100:g} % bound {format_value(metric, self.bound)} "
            f"({format_value(metric, abs(room), delta=True)} {side}), {broke}"
        )

    def as_json(self) -> MarginFigures:
        return {
            "mean": self.mean,
            "bound": self.bound,
            "margin": self.margin if self.known else None,
            "margin_known": self.known,
            "holds": self.holds,
            "marginal": self.marginal,
        }


def margin_of(constraint: Constraint, est: Estimate, quantile: float) -> Margin:
    """The margin of one constraint over a point's runs (see the module's rules)."""
    measured = [v for v in est.values if v is not None and math.isfinite(v)]
    bound = est.prediction_bound(quantile, upper=constraint.upper)
    known = bound is not None
    if bound is None and len(measured) == 1:
        bound = measured[0]
    breaking = sum(not constraint.holds(v) for v in measured)
    return Margin(constraint, est.mean, bound, known, breaking, len(measured), quantile)


@dataclass
class RatedPoint:
    """A point with its numbers over its runs and the verdict of its checks and constraints."""

    point: PointRuns
    metrics: dict[str, Estimate]
    feasible: bool
    excluded_because: list[str]
    marginal: list[str] = field(default_factory=list)  # constraints met by the mean but not by the bound
    margins: dict[str, Margin] = field(default_factory=dict)  # by the constraint's text
    levels: list[RatedPoint] = field(default_factory=list)  # with varied inputs: the setting at each level


def numbers(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """Every number of a summary by its dotted path (None where the run could not measure it).

    >>> numbers({"requests": {"rate_429": 0.1, "attempt_outcomes": {"success": 9}}, "run": {"run_id": "a"}})
    {'requests.rate_429': 0.1, 'requests.attempt_outcomes.success': 9.0}
    """
    out: dict[str, float | None] = {}
    for path, value in flatten(summary).items():
        if value is None:
            out[path] = None
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[path] = float(value)
    return out


def metric_value(summary: SummaryBody, flat: dict[str, float | None], name: str) -> float | None:
    """One number of a run; a backend whose breaker never tripped has 0 trips (the summary leaves it out)."""
    if name in flat:
        return flat[name]
    match = _BREAKER_COUNT.match(name)
    if match and summary.get("breaker") is not None and match["backend"] in (summary.get("backends") or {}):
        return 0.0
    return None


def known_metrics(summaries: list[Summary]) -> set[str]:
    """The metric names any of these summaries has (breaker counts for every backend when a gateway log exists)."""
    known: set[str] = set()
    for summary in summaries:
        known |= set(numbers(summary))
        if summary.get("breaker") is not None:
            known |= {f"breaker.{b}.{k}" for b in summary.get("backends") or {} for k in ("trips", "open_s")}
    return known


def check_metrics(objective: Objective, constraints: list[Constraint], summaries: list[Summary]) -> None:
    """UsageError naming the first objective or constraint metric that none of the summaries has."""
    known = known_metrics(summaries)
    if objective.metric not in known:
        raise unknown_metric(objective.metric, "--objective")
    for constraint in constraints:
        if constraint.metric not in known:
            raise unknown_metric(constraint.metric, "--constraint")


def headline_names(summaries: list[Summary]) -> list[str]:
    """The headline metrics these summaries have, fixed ones first, then per backend in the scenario's order."""
    known = known_metrics(summaries)
    backends: list[str] = []
    for summary in summaries:
        backends += [b for b in summary.get("backends") or {} if b not in backends]
    names = [n for n in HEADLINE if n in known]
    for backend in backends:
        names += [n for p in PER_BACKEND if (n := p.format(backend=backend)) in known]
    return names


def rate(
    points: list[PointRuns],
    objective: Objective,
    constraints: list[Constraint],
    extra: list[str] | None = None,
    quantile: float = DEFAULT_QUANTILE,
) -> list[RatedPoint]:
    """Every point's numbers (headline, objective, constraints, checked, `extra`) and its feasibility."""
    measured = [s for p in points for s in p.summaries if s is not None]
    names = headline_names(measured)
    wanted = [objective.metric, *(c.metric for c in constraints), *(extra or [])]
    for p in points:
        wanted += [".".join(CHECKED_NUMBERS[check]) for check in p.checks.limits()]
    names += [n for n in dict.fromkeys(wanted) if n not in names]
    return [_rate_point(p, names, constraints, quantile) for p in points]


def _rate_point(point: PointRuns, names: list[str], constraints: list[Constraint], quantile: float) -> RatedPoint:
    flats = [None if s is None else (s, numbers(s)) for s in point.summaries]
    metrics = {n: estimate(None if f is None else metric_value(f[0], f[1], n) for f in flats) for n in names}
    if not any(s is not None for s in point.summaries):
        return RatedPoint(point, metrics, False, ["no run produced records", *point.problems])
    why_not: list[str] = []
    runs = sum(s is not None for s in point.summaries)
    checked = [".".join(CHECKED_NUMBERS[check]) for check in point.checks.limits()]
    means = _nest({name: metrics[name].mean for name in checked})
    of = f" (mean of {runs} runs)" if runs > 1 else ""
    why_not += [r.describe() + of for r in evaluate_checks(point.checks, means) if not r.passed]
    marginal: list[str] = []
    margins = {str(c): margin_of(c, metrics[c.metric], quantile) for c in constraints}
    for c in constraints:
        margin = margins[str(c)]
        if not margin.mean_holds:
            why_not.append(f"constraint {c}: not met: {describe(c.metric, metrics[c.metric])}")
        elif margin.marginal:
            marginal.append(f"constraint {c}: marginal: the mean meets it, one more run may not: {margin.describe()}")
    why_not += marginal
    return RatedPoint(point, metrics, not why_not, why_not, marginal, margins)


def _nest(flat: dict[str, float | None]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, leaf = path.split(".")
        node = nested
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return nested


def level_label(level: dict[str, str]) -> str:
    """The varied inputs' values of one level, e.g. `backends[0].network_latency=0.005`."""
    return ", ".join(f"{path}={value}" for path, value in level.items())


def _badness(rated: RatedPoint, objective: Objective) -> float:
    """The objective as a number to minimise (an unmeasured one last)."""
    mean = rated.metrics[objective.metric].mean
    if mean is None:
        return math.inf
    return -mean if objective.direction == "max" else mean


def worst_case(levels: list[RatedPoint], objective: Objective) -> RatedPoint:
    """One setting judged over every level of the varied inputs: feasible only when feasible at each, its
    numbers (and so its rank) those of the level with the worst objective, its margins the smallest."""
    worst = max(levels, key=lambda r: _badness(r, objective))  # the first of equals: the sweep's order
    at = {id(r): f"at {level_label(r.point.level)}: " for r in levels}
    excluded = [at[id(r)] + why for r in levels for why in r.excluded_because]
    marginal = [at[id(r)] + why for r in levels for why in r.marginal]

    def room(margin: Margin) -> float:
        return -math.inf if margin.margin is None else margin.margin

    margins = {name: min((r.margins[name] for r in levels), key=room) for name in worst.margins}
    return RatedPoint(worst.point, worst.metrics, all(r.feasible for r in levels), excluded, marginal, margins, levels)


def deciding_inputs(candidate: RatedPoint) -> list[str]:
    """Sentences naming the varied inputs whose value alone decides whether the setting is feasible.

    An input decides when the values it has at the feasible levels and at the others do not overlap.
    """
    feasible = [r.point.level for r in candidate.levels if r.feasible]
    failing = [r.point.level for r in candidate.levels if not r.feasible]
    if not feasible or not failing:
        return []
    sentences = []
    for path in candidate.levels[0].point.level:
        good = list(dict.fromkeys(level[path] for level in feasible))
        bad = list(dict.fromkeys(level[path] for level in failing))
        if not set(good) & set(bad):
            sentences.append(
                f"{candidate.point.label} is feasible at {path}={' or '.join(good)} but not at "
                f"{' or '.join(bad)}: this input decides"
            )
    if not sentences:
        sentences.append(
            f"{candidate.point.label} is feasible at {level_label(feasible[0])} but not at {level_label(failing[0])}"
        )
    return sentences


def ranked(rated: list[RatedPoint], objective: Objective) -> list[RatedPoint]:
    """Feasible points best first under the objective (all measured points when none is feasible)."""
    pool = [r for r in rated if r.feasible] or [r for r in rated if any(s is not None for s in r.point.summaries)]
    return sorted(pool, key=lambda r: _badness(r, objective))  # stable: ties keep the sweep's order


def edge_hints(settings: dict[str, str], axes: dict[str, list[str]]) -> list[str]:
    """`PATH above|below VALUE` for each ordered axis on which the setting is the largest or smallest swept."""
    hints = []
    for path, values in axes.items():
        keys = [_order_key(v) for v in values]
        if len(values) < 2 or path not in settings or any(k is None for k in keys):
            continue  # an axis of names or lists has no "beyond"
        mine = _order_key(settings[path])
        ordered = [k for k in keys if k is not None]
        if mine == max(ordered):
            hints.append(f"{path} above {settings[path]}")
        elif mine == min(ordered):
            hints.append(f"{path} below {settings[path]}")
    return hints


def _order_key(text: str) -> float | None:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError:
            return None
    return None


def recommend(rated: list[RatedPoint], objective: Objective, axes: dict[str, list[str]]) -> Recommendation | None:
    """The recommendation of comparison.json (see the module's rules); None when no run produced records."""
    order = ranked(rated, objective)
    if not order:
        return None
    best, runner_up = order[0], (order[1] if len(order) > 1 else None)
    mine = best.metrics[objective.metric]
    within_noise = False if runner_up is None else mine.overlaps(runner_up.metrics[objective.metric])
    near = [r.point.label for r in order[1:] if mine.overlaps(r.metrics[objective.metric])]
    hints = edge_hints(best.point.settings, axes)
    result: Recommendation = {
        "setting": best.point.settings,
        "label": best.point.label,
        "objective": str(objective),
        "feasible": best.feasible,
        "mean": mine.mean,
        "ci95": mine.ci95,
        "within_noise": within_noise,
        "within_noise_of": near,
        "at_edge": bool(hints),
        "try_beyond": hints,
        "marginal_constraints": best.marginal,
        "margins": {name: m.as_json() for name, m in best.margins.items()},
        "runner_up": None,
    }
    if best.levels:
        result["worst_level"] = best.point.level
    if runner_up is not None:
        theirs = runner_up.metrics[objective.metric]
        result["runner_up"] = {
            "label": runner_up.point.label,
            "setting": runner_up.point.settings,
            "mean": theirs.mean,
            "ci95": theirs.ci95,
        }
    result["why"] = _why(rated, order, objective, result)
    return result


def _why(rated: list[RatedPoint], order: list[RatedPoint], objective: Objective, rec: Recommendation) -> str:
    best = order[0]
    metric = objective.metric
    est = best.metrics[metric]
    word = "highest" if objective.direction == "max" else "lowest"
    feasible = [r for r in rated if r.feasible]
    if feasible:
        among = f"among the {len(feasible)} feasible settings" if len(feasible) > 1 else "the only feasible setting"
        why = f"Recommended: {best.point.label}: the {word} mean {metric} {among}: {describe(metric, est)}."
    else:
        why = (
            f"Recommended, though no setting met the checks and constraints: {best.point.label}, the {word} "
            f"mean {metric}: {describe(metric, est)}; it fails {'; '.join(best.excluded_because)}."
        )
    if len(order) > 1:
        why += f" Runner-up: {order[1].point.label}: {describe(metric, order[1].metrics[metric])}."
        if rec["within_noise"] is None:
            why += (
                " With one run per setting the run-to-run noise is unknown, so the gap may be noise: "
                "repeat each setting (--repeats 5 or more, or --engine sim)."
            )
        elif rec["within_noise"]:
            why += (
                " Their 95 % intervals overlap, so the gap is within run-to-run noise: on this objective they are "
                "equally good (choose on the other numbers, or add repeats)."
            )
        else:
            why += " Their 95 % intervals do not overlap: the gap is larger than the run-to-run noise."
    if best.feasible and best.margins:
        why += " Margins (one more run): " + "; ".join(f"{n}: {m.describe()}" for n, m in best.margins.items()) + "."
    if best.levels:
        why += (
            f" Every setting ran at each level of the varied inputs and is ranked by its worst: "
            f"{best.point.label} at {level_label(best.point.level)}."
        )
        deciding = [s for r in rated for s in deciding_inputs(r)]
        if deciding:
            why += " " + "; ".join(deciding) + "."
        else:
            why += " No varied input changes which settings are feasible: the answer holds across the range."
    if rec["at_edge"]:
        why += f" It is at the edge of the swept range: try beyond it ({'; '.join(rec['try_beyond'])})."
    excluded = [r for r in rated if not r.feasible] if feasible else []
    if excluded:
        why += " Excluded: " + "; ".join(f"{r.point.label} ({', '.join(r.excluded_because)})" for r in excluded) + "."
    return why


def describe(metric: str, est: Estimate) -> str:
    """`mean ± ci (n runs)` in the metric's unit, e.g. `1.20 % ± 0.31 pp (10 runs)`.

    >>> describe("requests.rate_429", estimate([0.01, 0.02, 0.03]))
    '2.00 % ± 2.48 pp (3 runs)'
    """
    return mean_ci_text(metric, est.mean, est.ci95, est.n)


def mean_ci_text(metric: str, mean: float | None, ci95: float | None, n: int) -> str:
    if mean is None:
        return "not measured"
    if ci95 is None:
        return f"{format_value(metric, mean)} (one run)"
    return f"{format_value(metric, mean)} ± {format_value(metric, ci95, delta=True)} ({n} runs)"


def format_value(metric: str, value: float | None, *, delta: bool = False) -> str:
    """A metric's value for a sentence: shares and rates as % (differences in points), seconds with 's'.

    >>> format_value("requests.rate_429", 0.0123), format_value("requests.rate_429", 0.000042, delta=True)
    ('1.23 %', '0.0042 pp')
    >>> format_value("backends.a.ptu_utilization.mean", 63.2), format_value("throughput.goodput_tpm", 57969.4)
    ('63.2 %', '57,969')
    """
    if value is None or not math.isfinite(value):
        return "n/a"
    leaf = metric.rsplit(".", 1)[-1]
    if ".ptu_utilization." in metric:  # already a percentage of the PTU capacity
        return f"{value:.1f} {'pp' if delta else '%'}"
    if "rate" in leaf or "share" in leaf:
        pct = value * 100
        digits = f"{pct:.2f}" if abs(pct) >= 0.1 or pct == 0 else f"{pct:.2g}"  # 0.0042 pp, not 0.00 pp
        return f"{digits} {'pp' if delta else '%'}"
    if metric.startswith(("end_to_end_latency.", "latency.", "ttft.")) or leaf.endswith("_s"):
        return f"{value:.2f} s"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def agreement(sim: dict[str, Estimate], live: Summary) -> dict[str, AgreementRow]:
    """Per metric: simulated mean ± CI against one live run, and whether the live value falls inside.

    `within_ci` compares with the CI of the simulated mean; `within_prediction` with the wider interval one
    more simulated run would fall in (t · s · √(1 + 1/n)), the fairer test for a single live run.
    """
    return agreement_over(sim, [live])


def agreement_over(sim: dict[str, Estimate], lives: list[Summary]) -> dict[str, AgreementRow]:
    """`agreement` against the mean of several live runs; each row also keeps every live run's value.

    >>> row = agreement_over({"x.rate": estimate([0.1, 0.2])}, [{"x": {"rate": 0.1}}, {"x": {"rate": 0.3}}])["x.rate"]
    >>> row["live"], row["live_values"], row["live_runs"]
    (0.2, [0.1, 0.3], 2)
    """
    flats = [(live, numbers(live)) for live in lives]
    out: dict[str, AgreementRow] = {}
    for name, est in sim.items():
        values = [metric_value(live, flat, name) for live, flat in flats]
        measured = [v for v in values if v is not None]
        value = math.fsum(measured) / len(measured) if measured else None
        diff = None if value is None or est.mean is None else value - est.mean
        pred = est.prediction95()
        out[name] = {
            "sim_mean": est.mean,
            "sim_ci95": est.ci95,
            "sim_runs": est.n,
            "live": value,
            "live_values": values,
            "live_runs": len(measured),
            "diff": diff,
            "diff_pct": None if diff is None or not est.mean else diff / abs(est.mean) * 100,
            "within_ci": None if diff is None or est.ci95 is None else abs(diff) <= est.ci95,
            "within_prediction": None if diff is None or pred is None else abs(diff) <= pred,
        }
    return out


def describe_agreement(name: str, row: AgreementRow) -> str:
    """One line per metric for the console: sim mean ± CI, the live value, and how far apart they are."""
    sim = mean_ci_text(name, row["sim_mean"], row["sim_ci95"], row["sim_runs"])
    runs = row.get("live_runs", 1)
    live = format_value(name, row["live"]) + (f" (mean of {runs} runs)" if runs > 1 else "")
    return f"{name}: sim {sim}, live {live}: {verdict(name, row)}"


def verdict(name: str, row: AgreementRow) -> str:
    """Whether the live value of an agreement row is within the simulated CI, or by how much it differs."""
    if row["diff"] is None:
        return "cannot compare"
    by = format_value(name, row["diff"], delta=True)
    pct = "" if row["diff_pct"] is None else f", {row['diff_pct']:+.1f} %"
    ci95 = row["sim_ci95"]
    if row["within_ci"] is None or ci95 is None:  # within_ci is None exactly when the CI is
        return f"differs by {by}{pct} (one simulated run: no CI)"
    if row["within_ci"]:
        return "within the sim CI"
    outside = format_value(name, abs(row["diff"]) - ci95, delta=True)
    text = f"outside the sim CI by {outside} (differs by {by}{pct})"
    if row["within_prediction"]:
        text += ", within the spread of single simulated runs"
    return text
