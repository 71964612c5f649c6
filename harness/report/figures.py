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

import matplotlib
import matplotlib.colors
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from harness.records.outcomes import OUTCOME_COLOURS, OUTCOME_LABELS, OUTCOMES, THROTTLING_KINDS
from harness.report.cost import Levels, ptu_levels
from harness.report.load import RunData
from harness.report.summary.frame import (
    MAX_TOKENS_LABELS,
    PERCENTILES,
    REACTIONS,
    SPLITS,
    annotate,
    attempts_per_request,
    duration_s,
    max_tokens_bucket,
    missing_label,
    ok_backend_rows,
    reactions,
    run_start,
    run_window,
    successes,
)
from harness.report.summary.splits import app_limits, backend_limits
from harness.report.summary.windows import (
    nice_bin,
    open_intervals,
    outcome_timeline,
    rolling_tokens,
    sample_times,
    trailing_sums,
)

# A limit more than this many times the busiest line is left off the scale of a throughput plot.
LIMIT_OFF_SCALE = 5.0

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
    records = annotate(run)
    colors = backend_colors(run, records)
    drawn = [timeline(run, records)]
    by_split = outcomes_by(records)
    if by_split is not None:
        drawn.append(by_split)
    drawn.append(throughput(run, records, colors))
    levels = ptu_levels(run.backend, run.scenario, *run_window(run))
    if levels:
        drawn.append(ptu_utilization(levels, colors))
    drawn += [retry_after(records), latency(records), retries(records)]
    if run.backend is not None:
        drawn.append(drain(run, records))
    return {d.name: d for d in drawn}


def palette(names: list[str]) -> dict[str, str]:
    """A distinct colour per name, in order (tab10, then tab20 past ten names)."""
    cmap = "tab10" if len(names) <= 10 else "tab20"
    colors = matplotlib.colormaps[cmap].colors  # type: ignore[attr-defined]
    return {name: matplotlib.colors.to_hex(colors[i % len(colors)]) for i, name in enumerate(names)}


def backend_colors(run: RunData, records: pd.DataFrame) -> dict[str, str]:
    """One colour per backend, the same in every figure of the report."""
    return palette(sorted(_pool_names(run) | {str(b) for b in records["backend"].dropna().unique()}))


def say(ax: Axes, text: str) -> None:
    """An axis with nothing to draw says why instead of showing empty axes."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#555")


def _figure(
    rows: int = 1, cols: int = 1, height: float = 4.0, width_ratios: list[float] | None = None
) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(11, height), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False, width_ratios=width_ratios)
    return figure, axes


def timeline(run: RunData, records: pd.DataFrame) -> Drawn:
    span = duration_s(run)
    bin_s = nice_bin(span)
    rates = outcome_timeline(records, bin_s)
    intervals = open_intervals(run.breakers, run_start(run), span)
    names = sorted({b for b, _, _ in intervals} | _pool_names(run)) if run.breakers is not None else []
    rows = 2 if names else 1
    figure = Figure(figsize=(11, 5.5 if names else 4.0), layout="constrained")
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False, height_ratios=[3, 1][:rows])[:, 0]
    ax = axes[0]
    x = rates.index.to_numpy(dtype=float)
    ax.stackplot(
        x,
        [rates[o].to_numpy() for o in OUTCOMES],
        labels=[OUTCOME_LABELS[o] for o in OUTCOMES],
        colors=[OUTCOME_COLOURS[o] for o in OUTCOMES],
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


def _pool_names(run: RunData) -> set[str]:
    return {b.name for b in run.scenario.backends} if run.scenario is not None else set()


def outcomes_by(records: pd.DataFrame) -> Drawn | None:
    """Share of attempts by outcome per app, per client profile and per backend: the splits with two or more."""
    splits = []
    for split, key in SPLITS.items():
        names = records[key].astype(object).fillna(missing_label(key))
        if names.nunique() > 1:
            splits.append((split.removeprefix("by_").replace("_", " "), names))
    if not splits:
        return None
    figure, axes = _figure(1, len(splits), height=1.8 + 0.45 * max(n.nunique() for _, n in splits))
    for ax, (what, names) in zip(axes[0], splits, strict=True):
        table = pd.crosstab(names, records["outcome"], normalize="index").reindex(
            columns=list(OUTCOMES), fill_value=0.0
        )
        table = table.iloc[::-1]  # first name at the top
        left = np.zeros(len(table))
        counts = names.value_counts()
        labels = [f"{n} ({counts[n]:,})" for n in table.index]
        for outcome in OUTCOMES:
            share = table[outcome].to_numpy() * 100
            ax.barh(labels, share, left=left, color=OUTCOME_COLOURS[outcome], label=OUTCOME_LABELS[outcome])
            left += share
        ax.set_xlim(0, 100)
        ax.set_xlabel("share of attempts (%)")
        ax.set_title(f"By {what} (attempts)", fontsize="medium")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=6, fontsize="small")
    return Drawn(
        "outcomes_by",
        "Outcomes by app, client profile, backend and gateway replica",
        "Each bar is one app, client profile or backend (attempts in brackets), split by outcome; attempts "
        "no backend answered (refused at the gateway, connection errors) are under (none).",
        figure,
    )


def throughput(run: RunData, records: pd.DataFrame, colors: dict[str, str]) -> Drawn:
    figure, axes = _figure(1, 3, height=4.2, width_ratios=[2, 2, 1])
    span = duration_s(run)
    step = nice_bin(span, target_bins=240)
    for ax, key, limits, what in (
        (axes[0, 0], "backend", backend_limits(run), "backend"),
        (axes[0, 1], "app_id", app_limits(run, records), "app"),
    ):
        table = rolling_tokens(records, key, span, step)
        names = sorted(set(table.columns) | set(limits))
        mine = colors if key == "backend" else palette(names)
        for name in table.columns:
            ax.plot(table.index.to_numpy(), table[name].to_numpy(), label=str(name), color=mine[name])
        _limit_lines(ax, limits, mine)
        peak = float(np.nanmax(table.to_numpy())) if table.size else 0.0
        if peak > 0 and any(limit > LIMIT_OFF_SCALE * peak for limit in limits.values()):
            # a limit far above the traffic would flatten every line: keep the traffic readable instead
            ax.set_ylim(top=peak * 1.15)
            ax.text(0.99, 0.02, "limits above the scale", transform=ax.transAxes, ha="right", fontsize="small")
        ax.set_title(f"Tokens per minute per {what} (dashed: limit)", fontsize="medium")
        ax.set_xlabel("scenario time since start (s)")
        ax.set_ylabel("tokens in the last 60 scenario s")
        ax.set_ylim(bottom=0)
        ax.set_xlim(0, max(span, step))
        if len(table.columns):
            ax.legend(fontsize="small")
    share = successes(records).groupby("backend", observed=True)["usage_total"].sum()
    ax = axes[0, 2]
    if share.sum() > 0:
        share = share / share.sum() * 100
        names = [str(n) for n in share.index]
        ax.bar(names, share.to_numpy(), color=[colors[n] for n in names])
        ax.set_ylabel("share of tokens served (%)")
        ax.set_title("Share of tokens served", fontsize="medium")
        ax.tick_params(axis="x", labelrotation=30)
    else:
        say(ax, "no tokens served in this run")
    return Drawn(
        "throughput",
        "Achieved tokens per minute against limits",
        f"Usage tokens of successful attempts that started in the trailing 60 s, sampled every {step:g} s, per "
        "backend and per app; dashed lines, in each series' colour, are the backend's TPM (scenario.yaml) and "
        "the gateway's tokens-per-minute per app (one grey line when every app has the same limit).",
        figure,
    )


def _limit_lines(ax: Axes, limits: dict[str, float], colors: dict[str, str]) -> None:
    if not limits:
        return
    if len(limits) > 1 and len(set(limits.values())) == 1:
        # the same limit for every series: one line that belongs to none of them
        ax.axhline(next(iter(limits.values())), color="#666", linestyle="--", linewidth=1, label="limit (each)")
        return
    for name, limit in limits.items():
        ax.axhline(limit, color=colors[name], linestyle="--", linewidth=1)


def ptu_utilization(levels: dict[str, Levels], colors: dict[str, str]) -> Drawn:
    figure, axes = _figure(1, 1, height=3.6)
    ax = axes[0, 0]
    for name, level in levels.items():
        # each segment is a straight line from v0 to v1: draw its two ends
        x = np.column_stack([level.edges[:-1], level.edges[1:]]).ravel()
        y = np.column_stack([level.v0, level.v1]).ravel()
        ax.plot(x, y, color=colors.get(name), label=f"{name} (mean {level.mean():.0f} %)")
    ax.axhline(100.0, color="#c9302c", linestyle="--", linewidth=1, label="100 %: the PTU answers 429")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.set_xlabel("scenario time since start (s)")
    ax.set_ylabel("PTU utilization (%)")
    ax.legend(fontsize="small", loc="upper right")
    return Drawn(
        "ptu_utilization",
        "PTU utilization over time",
        "Each PTU backend's bucket level rebuilt from the backend log: the utilization logged at each admission, "
        "each answer's charge corrected to its usage, a drain of 100 % per scenario minute in between. Above "
        "100 % the deployment answers 429 with retry-after-ms.",
        figure,
    )


def retry_after(records: pd.DataFrame) -> Drawn:
    profiles = sorted(str(p) for p in records["client_profile"].dropna().unique()) or ["(unknown)"]
    figure, axes = _figure(len(profiles), 2, height=1.0 + 3.2 * len(profiles))
    throttled = records["outcome"].isin(THROTTLING_KINDS)
    values = records["retry_after"].where(records["retry_after"] > 0)
    edges = _log_edges(values[throttled])
    for row, profile in zip(axes, profiles, strict=True):
        mine = records["client_profile"].astype(object).fillna("(unknown)") == profile
        label = f"{profile}: " if len(profiles) > 1 else ""
        if not (mine & throttled).any():
            say(row[0], f"{label}no throttled attempts in this run")
            say(row[1], f"{label}nothing to react to")
            continue
        _retry_after_histogram(row[0], records[mine], values[mine], edges, label)
        _reactions(row[1], records[mine], label)
    return Drawn(
        "retry_after",
        "Retry-After and the client's reaction, by client profile",
        "Retry-After (retry-after-ms when sent) per throttled attempt by who throttled; then whether the client "
        "profile waited for it, used its own backoff, retried at once or gave up. One row per client profile.",
        figure,
    )


def _log_edges(values: pd.Series) -> np.ndarray | None:
    """Log-spaced histogram edges shared by every profile's row (None when no Retry-After was received)."""
    top = values.max()
    if pd.isna(top):
        return None
    low = max(values.min(), 1e-3)
    # at least one decade wide, so a single value (every 429 saying 86400) still gets a readable axis
    span = max(math.log10(top / low), 1.0)
    middle = (math.log10(low) + math.log10(top)) / 2
    return np.logspace(middle - span / 2, middle + span / 2 + 1e-9, 30)


def _retry_after_histogram(
    ax: Axes, records: pd.DataFrame, values: pd.Series, edges: np.ndarray | None, label: str
) -> None:
    if edges is None or values.dropna().empty:
        say(ax, f"{label}no Retry-After received")
        return
    for source in THROTTLING_KINDS:
        mine = values[records["outcome"] == source].dropna()
        if len(mine):
            ax.hist(mine, bins=edges.tolist(), alpha=0.6, label=OUTCOME_LABELS[source], color=OUTCOME_COLOURS[source])
    ax.set_xscale("log")
    # plain numbers on the decades only: minor labels pile up when every value is the same
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    received = values.dropna().unique()
    if len(received) == 1:  # one value (every 429 saying 86400): label it, not the decade beside it
        ax.set_xticks([float(received[0])], [f"{received[0]:g}"])
    ax.legend(fontsize="small")
    ax.set_xlabel("Retry-After received (s, log scale)")
    ax.set_ylabel("attempts")
    ax.set_title(f"{label}Retry-After by source", fontsize="medium")


def _reactions(ax: Axes, records: pd.DataFrame, label: str) -> None:
    reaction = reactions(records)
    table = pd.crosstab(records["outcome"], reaction).reindex(
        index=list(THROTTLING_KINDS), columns=list(REACTIONS), fill_value=0
    )
    bottom = np.zeros(len(table))
    # status on one line, who refused wrapped below it, so four bars' labels don't run into each other
    labels = [
        "\n".join([code, *textwrap.wrap(who, 12)])
        for code, who in (OUTCOME_LABELS[s].split(" ", 1) for s in table.index)
    ]
    for r in REACTIONS:
        ax.bar(labels, table[r].to_numpy(), bottom=bottom, label=r.replace("_", " "), color=REACTION_COLORS[r])
        bottom += table[r].to_numpy()
    ax.set_ylabel("throttled attempts")
    ax.set_title(f"{label}what the client did next", fontsize="medium")
    ax.legend(fontsize="small")


def latency(records: pd.DataFrame) -> Drawn:
    figure, axes = _figure(1, 2, height=4.2)
    done = successes(records)
    stream = done["stream"].fillna(False).astype(bool)
    buckets = max_tokens_bucket(done["max_tokens"])
    by_bucket = [(f"max_tokens {label}", buckets == label) for label in (*MAX_TOKENS_LABELS, "unset")]
    panels = (
        (axes[0, 0], "latency_s", "Latency of successful attempts", [("stream", stream), ("non-stream", ~stream)]),
        (axes[0, 1], "ttft_s", "Time to first token of successful streams", [("all streams", stream)]),
    )
    for ax, column, title, groups in panels:
        only = stream if column == "ttft_s" else pd.Series(True, index=done.index)
        shown = [(name, done.loc[mask & only, column].dropna()) for name, mask in groups + by_bucket]
        shown = [(name, v) for name, v in shown if len(v)]
        if not shown:
            say(ax, "no streamed requests succeeded in this run")
            continue
        x = np.arange(len(shown))
        for j, p in enumerate(PERCENTILES):
            heights = [v.quantile(p / 100) for _, v in shown]
            ax.bar(x + (j - 1) * 0.27, heights, width=0.27, label=f"p{p}")
        ax.set_xticks(x, [f"{name}\n(n={len(v)})" for name, v in shown], fontsize="small", rotation=30)
        ax.set_ylabel("scenario seconds")
        ax.set_title(title, fontsize="medium")
        ax.legend(fontsize="small")
    return Drawn(
        "latency",
        "Latency and TTFT percentiles",
        "p50/p95/p99 of successful attempts by streaming and by max_tokens bucket; time to first token over "
        "streamed attempts only (scenario seconds).",
        figure,
    )


def retries(records: pd.DataFrame) -> Drawn:
    figure, axes = _figure(1, 2, height=4.0)
    ax = axes[0, 0]
    sizes = attempts_per_request(records).value_counts().sort_index()
    ax.bar(sizes.index.astype(int), sizes.to_numpy(), color="C0")
    ax.set_xlabel("attempts per logical request")
    ax.set_ylabel("logical requests")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"Retry amplification: {len(records) / sizes.sum():.2f} attempts per request", fontsize="medium")
    ax = axes[0, 1]
    waited = records[records["retry_wait_s"].fillna(0) > 0].sort_values("t")
    if waited.empty:
        say(ax, "no retries in this run" if sizes.index.max() <= 1 else "clients retried without waiting")
        return Drawn("retries", RETRIES_TITLE, RETRIES_CAPTION, figure)
    for i, (source, rows) in enumerate(waited.groupby(waited["retry_wait_source"].astype(object).fillna("not stated"))):
        ax.step(
            rows["t"].to_numpy(), rows["retry_wait_s"].cumsum().to_numpy(), where="post", label=source, color=f"C{i}"
        )
    ax.legend(fontsize="small")
    ax.set_xlabel("scenario time since start (s)")
    ax.set_ylabel("cumulative time waiting before retries (scenario s)")
    ax.set_title("Time lost waiting, by what set the wait", fontsize="medium")
    return Drawn("retries", RETRIES_TITLE, RETRIES_CAPTION, figure)


RETRIES_TITLE = "Retry amplification and time lost waiting"
RETRIES_CAPTION = "How many attempts each logical request took, and the scenario time clients spent waiting to retry."


def drain(run: RunData, records: pd.DataFrame) -> Drawn:
    figure, axes = _figure(1, 2, height=4.0, width_ratios=[2, 1])
    backend = run.backend
    assert backend is not None
    ok = ok_backend_rows(backend)
    start, span = run_window(run)
    step = nice_bin(span, target_bins=240)
    samples = sample_times(span, step)
    t = ok["t"] - start
    ax = axes[0, 0]
    for column, label in (("estimate_charged", "charged at admission"), ("total_tokens", "actually used (usage)")):
        ax.plot(samples, trailing_sums(t, ok[column], samples), label=label)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("scenario time since start (s)")
    ax.set_ylabel("tokens in the last 60 scenario s")
    ax.set_xlim(0, max(span, step))
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
        "reported, for requests answered 2xx (backend log), over the trailing 60 s.",
        figure,
    )
