"""Time windows over a run: the trailing 60 s a per-minute limit counts, time bins for figures, and the
intervals a breaker stayed open or a replica counted on its own."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.records import SHARED_STATE_LOST, SHARED_STATE_RESTORED
from harness.records.outcomes import OUTCOMES
from harness.report.summary.frame import successes

TPM_WINDOW_S = 60.0  # the window of every per-minute limit: AOAI's TPM and the gateway's token limit
_NICE_BINS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)


def nice_bin(span_s: float, target_bins: int = 120) -> float:
    """A round bin width (s) giving about `target_bins` bins over the span."""
    for width in _NICE_BINS:
        if span_s / width <= target_bins:
            return float(width)
    return float(_NICE_BINS[-1])


def outcome_timeline(records: pd.DataFrame, bin_s: float) -> pd.DataFrame:
    """Attempts per second by outcome in time bins: index = bin start (s since start), columns = outcomes."""
    bins = (records["t"] // bin_s) * bin_s
    counts = pd.crosstab(bins, records["outcome"], dropna=False).reindex(columns=list(OUTCOMES), fill_value=0)
    return counts / bin_s


def rolling_tokens(records: pd.DataFrame, key: str, until: float, step_s: float) -> pd.DataFrame:
    """Usage tokens of successful attempts that started in the trailing 60 s, sampled every `step_s` from 0 to
    `until` (what a per-minute token limit compares): index = sample time (s), one column per `key` value."""
    done = successes(records)
    samples = sample_times(until, step_s)
    columns = {
        str(name): trailing_sums(rows["t"], rows["usage_total"], samples)
        for name, rows in done.groupby(key, observed=True, sort=True)
    }
    return pd.DataFrame(columns, index=pd.Index(samples, name="t"))


def sample_times(until: float, step_s: float) -> np.ndarray:
    return np.arange(0.0, until + step_s / 2, step_s)


def trailing_sums(times: pd.Series, values: pd.Series, at: np.ndarray) -> np.ndarray:
    """At each time of `at`, the sum of `values` whose time is in the trailing 60 s (t - 60, t]."""
    order = np.argsort(times.to_numpy(dtype=float), kind="stable")
    starts = times.to_numpy(dtype=float)[order]
    cumulative = np.concatenate([[0.0], np.cumsum(values.fillna(0.0).to_numpy(dtype=float)[order])])
    upper = np.searchsorted(starts, at, side="right")
    lower = np.searchsorted(starts, at - TPM_WINDOW_S, side="right")
    return cumulative[upper] - cumulative[lower]


def peak_window_tokens(rows: pd.DataFrame) -> float | None:
    """The most usage tokens of `rows` (successful attempts) that started within any 60 s (None without rows)."""
    if rows.empty:
        return None
    # the trailing-window sum only rises at an attempt's start, so its maximum is at one of them
    return float(trailing_sums(rows["t"], rows["usage_total"], rows["t"].to_numpy(dtype=float)).max())


def open_intervals(breakers: pd.DataFrame | None, start: float, end_s: float) -> list[tuple[str, float, float]]:
    """(backend, opened, closed) in seconds since start from the breaker transitions of the gateway log.

    A breaker that closes lazily (on the next request after its trip) is drawn closed at its `until`.
    """
    if breakers is None or breakers.empty:
        return []
    intervals: list[tuple[str, float, float]] = []
    opened: dict[str, tuple[float, float]] = {}
    # Transitions are few (one per trip and one per close), so a plain loop is fine here.
    for backend, t, to, until in zip(
        breakers["backend"], breakers["t"], breakers["to"], breakers["until"], strict=True
    ):
        t_rel = float(t) - start
        until_rel = float(until) - start if pd.notna(until) else math.inf
        if to == "open":
            if backend in opened:  # re-tripped without a logged close: the earlier trip ended by its until
                since, limit = opened[backend]
                intervals.append((backend, since, min(t_rel, limit)))
            opened[backend] = (t_rel, until_rel)
        elif to == "closed" and backend in opened:
            since, limit = opened.pop(backend)
            intervals.append((backend, since, min(t_rel, limit)))
    for backend, (since, limit) in opened.items():
        intervals.append((backend, since, min(end_s, limit)))
    return intervals


def lost_intervals(rows: pd.DataFrame, start: float, span: float) -> list[tuple[float, float]]:
    """(since, until) in seconds since start while at least one replica had lost Redis (its counters its own).

    A replica is on its own from its `lost` row to its next `restored` one, or else to the end of the run.
    """
    alone: list[tuple[float, float]] = []
    since: dict[str, float] = {}
    for replica, t, state in zip(rows["replica"].fillna("").astype(str), rows["t"], rows["shared_state"], strict=True):
        at = min(max(float(t) - start, 0.0), span)
        if state == SHARED_STATE_LOST:
            since.setdefault(replica, at)
        elif state == SHARED_STATE_RESTORED and replica in since:
            alone.append((since.pop(replica), at))
    alone += [(at, span) for at in since.values()]
    merged: list[tuple[float, float]] = []
    for begin, end in sorted(alone):
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((begin, end))
    return merged
