"""The report's figures, drawn with matplotlib's object API (no pyplot state, Agg canvas).

Every axis is in scenario time (seconds since the run's first attempt) or real units; timelines are binned
before plotting so a million-row run draws as fast as a small one.

    >>> figures = draw_all(run)  # doctest: +SKIP
    >>> figures["timeline"].figure.savefig("timeline.png")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from harness.report import metrics
from harness.report.load import RunData

# A limit more than this many times the busiest line is left off the scale of a throughput plot.
LIMIT_OFF_SCALE = 5.0

OUTCOME_COLORS = {
    "success": "#4c9a2a",
    "gateway_token_limit": "#e6a100",
    "gateway_quota": "#8c6d1f",
    "backend_429": "#d9534f",
    "breaker_open": "#7b3fa0",
    "other_error": "#6c757d",
}
REACTION_COLORS = {
    "waited_retry_after": "#1f77b4",
    "own_backoff": "#ff7f0e",
    "retried_at_once": "#17becf",
    "gave_up": "#d62728",
}


@dataclass
class Drawn:
    """A figure with its title and one line saying how to read it."""

    name: str
    title: str
    caption: str
    figure: Figure


def draw_all(run: RunData) -> dict[str, Drawn]:
    """Every figure the run's data allows, by file stem; what cannot be drawn is added to run.missing."""
    records = metrics.annotate(run.records)
    drawn = [
        timeline(run, records),
        throughput(run, records),
        retry_after(records),
        latency(records),
        retries(records),
    ]
    if run.backend is not None:
        drawn.append(drain(run, records))
    return {d.name: d for d in drawn}


def _figure(
    rows: int = 1, cols: int = 1, height: float = 4.0, width_ratios: list[float] | None = None
) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(11, height), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False, width_ratios=width_ratios)
    return figure, axes


def timeline(run: RunData, records: pd.DataFrame) -> Drawn:
    span = metrics.duration_s(records)
    bin_s = metrics.nice_bin(span)
    rates = metrics.outcome_timeline(records, bin_s)
    intervals = metrics.open_intervals(run.breakers, metrics.run_start(run), span)
    names = sorted({b for b, _, _ in intervals} | _pool_names(run)) if run.breakers is not None else []
    rows = 2 if names else 1
    figure = Figure(figsize=(11, 5.5 if names else 4.0), layout="constrained")
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False, height_ratios=[3, 1][:rows])[:, 0]
    ax = axes[0]
    x = rates.index.to_numpy(dtype=float)
    ax.stackplot(
        x,
        [rates[o].to_numpy() for o in metrics.OUTCOMES],
        labels=[metrics.OUTCOME_LABELS[o] for o in metrics.OUTCOMES],
        colors=[OUTCOME_COLORS[o] for o in metrics.OUTCOMES],
        step="post",
    )
    peak = float(rates.sum(axis=1).max()) if len(rates) else 0.0
    ax.set_ylim(0, max(peak, 1e-9) * 1.3)  # headroom for the legend
    ax.set_ylabel(f"attempts per second ({bin_s:g} s bins)")
    ax.set_title("Requests by outcome")
    ax.legend(loc="upper left", fontsize="small", ncols=3)
    ax.set_xlim(0, max(span, bin_s))
    if names:
        bands = axes[1]
        for i, name in enumerate(names):
            spans = [(since, until - since) for b, since, until in intervals if b == name]
            bands.broken_barh([(0, span)], (i - 0.4, 0.8), color="#dff0d8")
            bands.broken_barh(spans, (i - 0.4, 0.8), color="#c9302c")
        bands.set_yticks(range(len(names)), names)
        bands.set_title("Circuit breaker per backend (red: open, green: closed)", fontsize="medium")
    axes[-1].set_xlabel("scenario time since start (s)")
    if run.breakers is None:
        ax.text(0.99, 0.97, "no gateway log: breaker state unknown", transform=ax.transAxes, ha="right", va="top")
    return Drawn("timeline", "Requests by outcome over time", _timeline_caption(), figure)


def _timeline_caption() -> str:
    return (
        "Attempts per second (scenario time) stacked by outcome; below, when each backend's circuit breaker was open."
    )


def _closed_steps(x: np.ndarray, y: np.ndarray, bin_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Step data that also draws the last bin to its end (`step(where="post")` stops at its start)."""
    if len(x) == 0:
        return x, y
    return np.append(x, x[-1] + bin_s), np.append(y, y[-1])


def _pool_names(run: RunData) -> set[str]:
    return {b.name for b in run.scenario.backends} if run.scenario is not None else set()


def throughput(run: RunData, records: pd.DataFrame) -> Drawn:
    figure, axes = _figure(1, 3, height=4.2, width_ratios=[2, 2, 1])
    for ax, key, limits, what in (
        (axes[0, 0], "backend", metrics.backend_limits(run), "backend"),
        (axes[0, 1], "app_id", metrics.app_limits(run, records), "app"),
    ):
        table = metrics.tokens_per_minute(records, key)
        for i, name in enumerate(table.columns):
            color = f"C{i % 10}"
            x, y = _closed_steps(table.index.to_numpy(dtype=float), table[name].to_numpy(), 60.0)
            ax.step(x, y, where="post", label=str(name), color=color)
            if name in limits:
                ax.axhline(limits[name], color=color, linestyle="--", linewidth=1)
        peak = float(np.nanmax(table.to_numpy())) if table.size else 0.0
        if peak > 0 and any(limit > LIMIT_OFF_SCALE * peak for limit in limits.values()):
            # a limit far above the traffic would flatten every line: keep the traffic readable instead
            ax.set_ylim(top=peak * 1.15)
            ax.text(0.99, 0.02, "limits above the scale", transform=ax.transAxes, ha="right", fontsize="small")
        ax.set_title(f"Tokens per minute per {what} (dashed: limit)", fontsize="medium")
        ax.set_xlabel("scenario time since start (s)")
        ax.set_ylabel("tokens per scenario minute")
        ax.set_ylim(bottom=0)
        if len(table.columns):
            ax.legend(fontsize="small")
    share = metrics.successes(records).groupby("backend", observed=True)["usage_total"].sum()
    ax = axes[0, 2]
    if share.sum() > 0:
        share = share / share.sum() * 100
        ax.bar([str(n) for n in share.index], share.to_numpy(), color=[f"C{i % 10}" for i in range(len(share))])
    ax.set_ylabel("share of tokens served (%)")
    ax.set_title("Share of tokens served", fontsize="medium")
    ax.tick_params(axis="x", labelrotation=30)
    return Drawn(
        "throughput",
        "Achieved tokens per minute against limits",
        "Usage tokens of successful attempts per scenario minute (60 s bins) per backend and per app; dashed lines "
        "are the backend's TPM (scenario.yaml) and the gateway's tokens-per-minute per app.",
        figure,
    )


def retry_after(records: pd.DataFrame) -> Drawn:
    figure, axes = _figure(1, 2, height=4.0)
    ax = axes[0, 0]
    values = records["retry_after"].where(records["retry_after"] > 0)
    top = values.max()
    if pd.notna(top):
        low = max(values.min(), 1e-3)
        # at least one decade wide, so a single value (every 429 saying 86400) still gets a readable axis
        span = max(math.log10(top / low), 1.0)
        middle = (math.log10(low) + math.log10(top)) / 2
        edges = np.logspace(middle - span / 2, middle + span / 2 + 1e-9, 30)
        for source in metrics.THROTTLED:
            mine = values[records["outcome"] == source].dropna()
            if len(mine):
                ax.hist(mine, bins=edges, alpha=0.6, label=metrics.OUTCOME_LABELS[source], color=OUTCOME_COLORS[source])
        ax.set_xscale("log")
        # plain numbers on the decades only: minor labels pile up when every value is the same
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no Retry-After received", transform=ax.transAxes, ha="center")
    ax.set_xlabel("Retry-After received (s, log scale)")
    ax.set_ylabel("attempts")
    ax.set_title("Retry-After by source", fontsize="medium")
    ax = axes[0, 1]
    reaction = metrics.reactions(records)
    table = pd.crosstab(records["outcome"], reaction).reindex(
        index=list(metrics.THROTTLED), columns=list(metrics.REACTIONS), fill_value=0
    )
    bottom = np.zeros(len(table))
    # status on one line, who refused wrapped below it, so four bars' labels don't run into each other
    labels = [
        "\n".join([code, *textwrap.wrap(who, 12)])
        for code, who in (metrics.OUTCOME_LABELS[s].split(" ", 1) for s in table.index)
    ]
    for r in metrics.REACTIONS:
        ax.bar(labels, table[r].to_numpy(), bottom=bottom, label=r.replace("_", " "), color=REACTION_COLORS[r])
        bottom += table[r].to_numpy()
    ax.set_ylabel("throttled attempts")
    ax.set_title("What the client did next", fontsize="medium")
    ax.legend(fontsize="small")
    return Drawn(
        "retry_after",
        "Retry-After and the client's reaction",
        "Retry-After (retry-after-ms when sent) per throttled attempt by who throttled; then whether the client "
        "profile waited for it, used its own backoff, retried at once or gave up.",
        figure,
    )


def latency(records: pd.DataFrame) -> Drawn:
    figure, axes = _figure(1, 2, height=4.2)
    done = metrics.successes(records)
    stream = done["stream"].fillna(False).astype(bool)
    buckets = metrics.max_tokens_bucket(done["max_tokens"])
    groups = [("stream", stream), ("non-stream", ~stream)] + [
        (f"max_tokens {label}", buckets == label) for label in (*metrics.MAX_TOKENS_LABELS, "unset")
    ]
    for ax, column, what in ((axes[0, 0], "latency_s", "Latency"), (axes[0, 1], "ttft_s", "Time to first token")):
        shown = [(name, done.loc[mask, column].dropna()) for name, mask in groups]
        shown = [(name, v) for name, v in shown if len(v)]
        x = np.arange(len(shown))
        for j, p in enumerate(metrics.PERCENTILES):
            heights = [v.quantile(p / 100) for _, v in shown]
            ax.bar(x + (j - 1) * 0.27, heights, width=0.27, label=f"p{p}")
        ax.set_xticks(x, [f"{name}\n(n={len(v)})" for name, v in shown], fontsize="small", rotation=30)
        ax.set_ylabel("scenario seconds")
        ax.set_title(f"{what} of successful attempts", fontsize="medium")
        ax.legend(fontsize="small")
    return Drawn(
        "latency",
        "Latency and TTFT percentiles",
        "p50/p95/p99 of successful attempts by streaming and by max_tokens bucket (scenario seconds).",
        figure,
    )


def retries(records: pd.DataFrame) -> Drawn:
    figure, axes = _figure(1, 2, height=4.0)
    ax = axes[0, 0]
    sizes = metrics.attempts_per_request(records).value_counts().sort_index()
    ax.bar(sizes.index.astype(int), sizes.to_numpy(), color="C0")
    ax.set_xlabel("attempts per logical request")
    ax.set_ylabel("logical requests")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"Retry amplification: {len(records) / sizes.sum():.2f} attempts per request", fontsize="medium")
    ax = axes[0, 1]
    waited = records[records["retry_wait_s"].fillna(0) > 0].sort_values("t")
    for i, (source, rows) in enumerate(waited.groupby(waited["retry_wait_source"].astype(object).fillna("not stated"))):
        ax.step(
            rows["t"].to_numpy(), rows["retry_wait_s"].cumsum().to_numpy(), where="post", label=source, color=f"C{i}"
        )
    if len(waited):
        ax.legend(fontsize="small")
    ax.set_xlabel("scenario time since start (s)")
    ax.set_ylabel("cumulative time waiting before retries (scenario s)")
    ax.set_title("Time lost waiting, by what set the wait", fontsize="medium")
    return Drawn(
        "retries",
        "Retry amplification and time lost waiting",
        "How many attempts each logical request took, and the scenario time clients spent waiting to retry.",
        figure,
    )


def drain(run: RunData, records: pd.DataFrame) -> Drawn:
    figure, axes = _figure(1, 2, height=4.0, width_ratios=[2, 1])
    backend = run.backend
    assert backend is not None
    ok = metrics.ok_backend_rows(backend)
    t = ok["t"] - metrics.run_start(run)
    bins = (t // 60.0) * 60.0
    per_minute = ok.groupby(bins)[["estimate_charged", "total_tokens"]].sum()
    ax = axes[0, 0]
    x = per_minute.index.to_numpy(dtype=float)
    ax.step(
        *_closed_steps(x, per_minute["estimate_charged"].to_numpy(), 60.0), where="post", label="charged at admission"
    )
    ax.step(*_closed_steps(x, per_minute["total_tokens"].to_numpy(), 60.0), where="post", label="actually used (usage)")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("scenario time since start (s)")
    ax.set_ylabel("tokens per scenario minute")
    ax.set_title("Admission charge vs usage, all backends", fontsize="medium")
    ax.legend(fontsize="small")
    ax = axes[0, 1]
    by = ok.groupby("deployment")[["estimate_charged", "total_tokens"]].sum()
    x2 = np.arange(len(by))
    ax.bar(x2 - 0.2, by["estimate_charged"].to_numpy(), width=0.4, label="charged")
    ax.bar(x2 + 0.2, by["total_tokens"].to_numpy(), width=0.4, label="used")
    ax.set_xticks(x2, [str(d) for d in by.index], rotation=30)
    ax.set_ylabel("tokens")
    ax.set_title("By deployment", fontsize="medium")
    ax.legend(fontsize="small")
    return Drawn(
        "drain",
        "The max_tokens drain",
        "Tokens the backends charged against TPM at admission (prompt estimate + max_tokens) vs the usage they "
        "reported, for requests answered 2xx (backend log).",
        figure,
    )
