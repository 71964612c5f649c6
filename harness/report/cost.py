"""PTU utilization per backend (time-weighted, from the backend log) and what a run cost (scenario prices).

The definitions are in `harness.report.summary`; this module computes two of its numbers.

    >>> none = (np.zeros(0), np.zeros(0))
    >>> level = bucket_level((np.array([0.0]), np.array([60.0])), none, end=60.0)  # 60 % at 0 s, empty at 36 s
    >>> round(level.mean(), 6), round(level.quantile(0.5), 6)
    (18.0, 10.0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.report.summary.schema import BackendCost, Cost, PtuUtilization
from harness.scenario import BackendInstance, Scenario

# A PTU deployment's bucket holds one minute of its drain (capacity = PTUs x ptu_tokens_per_minute, drained
# at capacity / 60 per second), so its level falls by 100 % per scenario minute whatever its size.
PTU_DRAIN_PCT_PER_S = 100.0 / 60.0
UTILIZATION_QUANTILE = 0.95


@dataclass
class Levels:
    """A piecewise-linear level: straight from `v0[k]` to `v1[k]` between `edges[k]` and `edges[k + 1]`."""

    edges: np.ndarray
    v0: np.ndarray
    v1: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.edges)

    def mean(self) -> float:
        """Time average of the level over [edges[0], edges[-1]]."""
        total = float(self.edges[-1] - self.edges[0])
        return float(np.sum((self.v0 + self.v1) / 2 * self.lengths) / total)

    def time_above(self, x: float) -> float:
        """Time the level spends strictly above `x`."""
        return self._above()(x)

    def quantile(self, q: float) -> float:
        """The level the bucket stays above for (1 - q) of the time: inf {x : time above x <= (1 - q) T}."""
        budget = (1.0 - q) * float(self.edges[-1] - self.edges[0])
        above = self._above()
        low, high = 0.0, float(max(self.v0.max(), self.v1.max(), 0.0))
        if above(low) <= budget:
            return low
        for _ in range(52):  # bisection (time above x is non-increasing in x), to float precision
            middle = (low + high) / 2
            if above(middle) <= budget:
                high = middle
            else:
                low = middle
        return high

    def _above(self) -> Callable[[float], float]:
        low, high, lengths = np.minimum(self.v0, self.v1), np.maximum(self.v0, self.v1), self.lengths
        sloped = high > low
        rise = np.where(sloped, high - low, 1.0)
        flat = ~sloped

        def above(x: float) -> float:
            # a sloped segment is above x for the share (high - x) / (high - low) of it, a flat one all or nothing
            share = np.where(sloped, np.clip((high - x) / rise, 0.0, 1.0), flat & (low > x))
            return float(np.dot(share, lengths))

        return above


Series = tuple[np.ndarray, np.ndarray]  # (times in seconds since the run's start, values in percent)


def bucket_level(decisions: Series, corrections: Series, end: float, initial: float = 0.0) -> Levels:
    """One PTU deployment's bucket level over [0, end], rebuilt from its log.

    The level starts at `initial` (the deployment's `ptu_initial_utilization`, 0 by default); at a decision it is the logged utilization; a correction adds
    its value (floored at 0); in between it drains at PTU_DRAIN_PCT_PER_S down to 0. At equal times
    corrections come first (a decision's logged level already includes them) and the higher decision last
    (an admission only adds to the bucket).
    """
    times = np.concatenate([corrections[0], decisions[0]])
    values = np.concatenate([corrections[1], decisions[1]])
    is_decision = np.concatenate([np.zeros(len(corrections[0])), np.ones(len(decisions[0]))])
    order = np.lexsort((values, is_decision, times))
    rate = PTU_DRAIN_PCT_PER_S
    at = min(0.0, float(times.min())) if len(times) else 0.0
    level = float(initial)
    edges: list[float] = [at]
    v0: list[float] = []
    v1: list[float] = []

    def drain_to(to: float) -> None:
        # segments from `at` to `to`, split where the level reaches 0 and at 0 s (where the window starts)
        empty_at = at + level / rate
        if at >= 0.0 and empty_at >= to:  # the usual case: one straight segment
            v0.append(level)
            v1.append(level - rate * (to - at))
            edges.append(to)
            return
        for stop in sorted({to} | {x for x in (0.0, empty_at) if at < x < to}):
            v0.append(max(0.0, level - rate * (edges[-1] - at)))
            v1.append(max(0.0, level - rate * (stop - at)))
            edges.append(stop)

    # A plain loop: each event starts from the level the previous ones left (the floor at 0 is not linear).
    for t, decided, value in zip(
        times[order].tolist(), is_decision[order].tolist(), values[order].tolist(), strict=True
    ):
        if t > end:
            break
        if t > at:
            drain_to(t)
            level, at = max(0.0, level - rate * (t - at)), t
        level = value if decided else max(0.0, level + value)
    if end > at:
        drain_to(end)
    starts = np.array(edges[:-1])
    keep = starts >= 0.0
    return Levels(np.append(starts[keep], end), np.array(v0)[keep], np.array(v1)[keep])


def combine(levels: Mapping[str, Levels], weights: Mapping[str, float], end: float) -> Levels:
    """The weighted mean of several levels over [0, end] (each covering exactly [0, end])."""
    if len(levels) == 1:
        return next(iter(levels.values()))
    edges = np.unique(np.concatenate([np.array([0.0, end]), *(x.edges for x in levels.values())]))
    starts, ends = edges[:-1], edges[1:]
    total = sum(weights[name] for name in levels)
    v0, v1 = np.zeros(len(starts)), np.zeros(len(starts))
    for name, x in levels.items():
        # every edge of `x` is an edge here, so each segment lies within one segment k of `x`
        k = np.clip(np.searchsorted(x.edges, starts, side="right") - 1, 0, len(x.v0) - 1)
        slope = (x.v1[k] - x.v0[k]) / x.lengths[k]
        v0 += weights[name] / total * (x.v0[k] + slope * (starts - x.edges[k]))
        v1 += weights[name] / total * (x.v0[k] + slope * (ends - x.edges[k]))
    return Levels(edges, v0, v1)


def ptu_utilization(
    backend_log: pd.DataFrame | None, scenario: Scenario | None, start: float, span: float
) -> dict[str, PtuUtilization]:
    """{"mean", "p95"} of each backend's time-weighted PTU utilization (percent) over [0, span]; backends
    without a utilization in the log are absent."""
    levels = ptu_levels(backend_log, scenario, start, span)
    return {name: {"mean": x.mean(), "p95": x.quantile(UTILIZATION_QUANTILE)} for name, x in levels.items()}


def ptu_levels(
    backend_log: pd.DataFrame | None, scenario: Scenario | None, start: float, span: float
) -> dict[str, Levels]:
    """Each backend's PTU utilization level (percent) over [0, span] s since `start`, by backend name."""
    if backend_log is None or span <= 0 or "utilization" not in backend_log:
        return {}
    rows = backend_log[backend_log["utilization"].notna() & backend_log["deployment"].notna()]
    out: dict[str, Levels] = {}
    for name, mine in rows.groupby("backend", observed=True, sort=True):
        capacity = _ptu_capacity(scenario, str(name))
        initial = _ptu_initial(scenario, str(name))
        levels: dict[str, Levels] = {}
        for deployment, group in mine.groupby("deployment", observed=True):
            decisions = (group["t"].to_numpy(dtype=float) - start, group["utilization"].to_numpy(dtype=float))
            levels[str(deployment)] = bucket_level(
                decisions,
                _corrections(group, capacity.get(str(deployment)), start),
                span,
                initial.get(str(deployment), 0.0),
            )
        nothing = (np.zeros(0), np.zeros(0))
        for never_asked in capacity.keys() - levels.keys():  # a PTU deployment with no request: only drains
            levels[never_asked] = bucket_level(nothing, nothing, span, initial.get(never_asked, 0.0))
        alike = not levels.keys() <= capacity.keys()  # without the scenario's capacities, weigh them alike
        weights = {d: 1.0 if alike else capacity[d] for d in levels}
        out[str(name)] = combine(levels, weights, span)
    return out


def _corrections(rows: pd.DataFrame, capacity: float | None, start: float) -> Series:
    """When each answered request's charge was corrected to its usage, and by how much (percent).

    The mock corrects a PTU charge when the answer is complete: at the row's t + duration_s, by total_tokens
    - estimate_charged. Unknown without the deployment's capacity (no scenario.yaml): none then.
    """
    done = rows[(rows["status"] >= 200) & (rows["status"] < 300)]
    done = done[done["total_tokens"].notna() & done["duration_s"].notna() & done["estimate_charged"].notna()]
    if capacity is None or done.empty:
        return np.zeros(0), np.zeros(0)
    times = (done["t"] + done["duration_s"]).to_numpy(dtype=float) - start
    deltas = (done["total_tokens"] - done["estimate_charged"]).to_numpy(dtype=float) * 100.0 / capacity
    return times, deltas


def _ptu_capacity(scenario: Scenario | None, backend: str) -> dict[str, float]:
    """Tokens per minute of each PTU deployment of a backend, from the scenario ({} without it)."""
    instance = _instance(scenario, backend)
    if instance is None:
        return {}
    return {n: float(d.ptu * d.ptu_tokens_per_minute) for n, d in instance.deployments.items() if d.ptu is not None}


def _ptu_initial(scenario: Scenario | None, backend: str) -> dict[str, float]:
    """The utilization (percent) each PTU deployment of a backend starts at, from the scenario ({} without it)."""
    instance = _instance(scenario, backend)
    if instance is None:
        return {}
    return {n: d.ptu_initial_utilization for n, d in instance.deployments.items() if d.ptu is not None}


def _instance(scenario: Scenario | None, name: str) -> BackendInstance | None:
    if scenario is None:
        return None
    return next((b for b in scenario.backends if b.name == name), None)


def run_cost(scenario: Scenario | None, successes: pd.DataFrame, span: float, goodput_tokens: float) -> Cost | None:
    """PTU, PAYG and total cost per backend, the run's total and its cost per 1M goodput tokens.

    None when no backend of the scenario has a `cost` (or the run has no valid scenario.yaml).
    """
    if scenario is None or all(b.cost is None for b in scenario.backends):
        return None
    hours = span / 3600.0
    backends: dict[str, BackendCost] = {}
    currency = next(b.cost.currency for b in scenario.backends if b.cost is not None)
    total = 0.0
    for instance in scenario.backends:
        price = instance.cost
        if price is None:
            backends[instance.name] = {"ptu": None, "payg": None, "total": None}
            continue
        ptus = sum(d.ptu for d in instance.deployments.values() if d.ptu is not None)
        ptu = ptus * price.ptu_per_hour * hours
        served = successes[successes["backend"] == instance.name]
        payg_rows = served[~served["deployment"].isin(_ptu_names(instance))]
        prompt = float(payg_rows["usage_prompt"].sum())
        completion = float(payg_rows["usage_completion"].sum())
        payg = prompt / 1000.0 * price.prompt_per_1k + completion / 1000.0 * price.completion_per_1k
        backends[instance.name] = {"ptu": ptu, "payg": payg, "total": ptu + payg}
        total += ptu + payg
    return {
        "currency": currency,
        "total": total,
        "per_1m_tokens": total / goodput_tokens * 1e6 if goodput_tokens > 0 else None,
        "backends": backends,
    }


def _ptu_names(instance: BackendInstance) -> set[str]:
    """What a record names when one of the instance's PTU deployments served it.

    A record names the deployment, or on the v1 routes the model, which the mock serves from the deployment
    of that name, else from the first deployment of that model.
    """
    by_model: dict[str, bool] = {}
    for deployment in instance.deployments.values():
        by_model.setdefault(deployment.model, deployment.is_ptu)
    names = {name: deployment.is_ptu for name, deployment in instance.deployments.items()}
    return {name for name, is_ptu in {**by_model, **names}.items() if is_ptu}
