"""The head of a sweep's compare.html: the recommendation, then one small figure per headline number against
the swept setting (mean with its 95 % CI as error bars, the recommended point in its own colour and labelled),
a table of every point, and the live confirmation when there is one (its verdict the page's first line, its
runs drawn beside the simulated points). Reads only comparison.json's content.

    >>> short_labels({"a.b.tripDuration": ["PT10S", "PT1M"]}, [{"a.b.tripDuration": "PT1M"}])
    ['PT1M']
"""

from __future__ import annotations

import html
import re
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from harness.report.confirm import confirm_headline
from harness.report.html import img_tag, png_bytes, table
from harness.report.recommend import format_value, mean_ci_text, verdict
from harness.report.sweep_schema import Confirmation, Recommendation
from harness.scenario.objectives import HEADLINE, PER_BACKEND

RECOMMENDED_COLOR = "#d62728"
POINT_COLOR = "#1f77b4"
EXCLUDED_COLOR = "#999999"
LIVE_COLOR = "#2ca02c"
LIVE_OFFSET = 0.22  # live runs sit just right of their setting's simulated point
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def short_labels(axes: dict[str, list[str]], settings: list[dict[str, str]]) -> list[str]:
    """Per point, only the values of the axes that vary (joined by ', ' on a grid)."""
    varying = [p for p, values in axes.items() if len(values) > 1] or list(axes)
    return [", ".join(str(s.get(p, "")) for p in varying) or "as written" for s in settings]


def figure_metrics(sweep: dict[str, Any], first_backend: str | None) -> list[str]:
    """The numbers to draw, in reading order: failures, 429s, the first-priority backend (PTU utilization when
    the run has it, else token share), cost, latency, goodput; then the objective and constraints if not yet in.
    """
    known = {n for p in sweep["points"] for n in p["metrics"]}
    names = ["requests.client_failure_rate", "requests.rate_429"]
    if first_backend is not None:
        ptu = f"backends.{first_backend}.ptu_utilization.mean"
        names.append(ptu if ptu in known else f"backends.{first_backend}.token_share")
    names += ["cost.per_1m_tokens", "end_to_end_latency.p95", "throughput.goodput_tpm"]
    objective = str(sweep["objective"]).partition(":")[2]
    names += [objective, *(_constraint_metric(c) for c in sweep["constraints"])]
    names = [n for n in dict.fromkeys(names) if n in known]
    return [n for n in names if any(p["metrics"][n]["mean"] is not None for p in sweep["points"] if n in p["metrics"])]


def _constraint_metric(text: str) -> str:
    return re.split(r"<=|>=|<|>", text, maxsplit=1)[0]


def title(metric: str) -> str:
    """A reader's name for a metric: the headline label, or the dotted path."""
    if metric in HEADLINE:
        return HEADLINE[metric]
    for pattern, label in PER_BACKEND.items():
        match = re.fullmatch(re.escape(pattern).replace(r"\{backend\}", "(?P<b>.+)"), metric)
        if match:
            return label.format(backend=match["b"])
    return metric


def draw(sweep: dict[str, Any], metric: str) -> Figure:
    """One metric's mean ± 95 % CI per point against the swept setting; the recommendation highlighted."""
    points = sweep["points"]
    labels = short_labels(sweep["axes"], [p["settings"] for p in points])
    recommended = (sweep.get("recommendation") or {}).get("label")
    figure = Figure(figsize=(3.9, 2.9), layout="constrained")
    ax = figure.subplots()
    x = np.arange(len(points))
    for i, p in enumerate(points):
        m = p["metrics"].get(metric) or {"mean": None, "ci95": None}
        if m["mean"] is None:
            continue
        mine = p["label"] == recommended
        color = RECOMMENDED_COLOR if mine else (POINT_COLOR if p["feasible"] else EXCLUDED_COLOR)
        ax.errorbar(
            [i],
            [m["mean"]],
            yerr=[[m["ci95"] or 0.0], [m["ci95"] or 0.0]],
            fmt="D" if mine else "o",
            color=color,
            mfc=color if p["feasible"] or mine else "white",
            capsize=4,
            markersize=7 if mine else 5,
        )
        if mine:
            ax.annotate(
                "recommended",
                (i, m["mean"] + (m["ci95"] or 0.0)),  # above the error bar
                xytext=(0, 5),
                textcoords="offset points",
                ha="center",
                fontsize="x-small",
                color=RECOMMENDED_COLOR,
            )
    _draw_live(ax, points, metric)
    for text in sweep["constraints"]:
        if _constraint_metric(text) == metric:
            limit = float(re.split(r"<=|>=|<|>", text, maxsplit=1)[1])
            ax.axhline(limit, color=EXCLUDED_COLOR, linestyle="--", linewidth=1)
    ax.set_xticks(x, labels, fontsize="small", rotation=30 if max(map(len, labels)) > 8 else 0)
    ax.set_xlim(-0.5, len(points) - 0.5)
    ax.margins(y=0.2)
    if ".ptu_utilization." in metric:  # summary.json gives it in percent already
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=100.0, decimals=None))
    elif _is_share(metric):
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))
    ax.tick_params(axis="y", labelsize="small")
    ax.set_title(title(metric), fontsize="medium")
    varying = [p for p, values in sweep["axes"].items() if len(values) > 1] or list(sweep["axes"])
    ax.set_xlabel(", ".join(varying), fontsize="x-small")
    return figure


def _draw_live(ax: Any, points: list[dict[str, Any]], metric: str) -> None:
    """Each live run of a confirmed setting as an x beside its simulated point, labelled "live" in a legend."""
    labelled = False
    for i, p in enumerate(points):
        live = p.get("live") or {}
        values = [v for v in ((live.get("metrics") or {}).get(metric) or []) if v is not None]
        if values:
            label = None if labelled else "live"
            ax.scatter([i + LIVE_OFFSET] * len(values), values, marker="x", color=LIVE_COLOR, label=label, zorder=3)
            labelled = True
    if labelled:
        ax.legend(fontsize="x-small", loc="best")


def _is_share(metric: str) -> bool:
    leaf = metric.rsplit(".", 1)[-1]
    return "rate" in leaf or "share" in leaf


def figure_name(metric: str) -> str:
    return "tradeoff_" + _UNSAFE.sub("_", metric)


def draw_all(sweep: dict[str, Any], first_backend: str | None) -> dict[str, bytes]:
    """Every tradeoff figure as PNG bytes, by file stem, in reading order."""
    out = {}
    for metric in figure_metrics(sweep, first_backend):
        out[figure_name(metric)] = png_bytes(draw(sweep, metric))
    return out


def section(sweep: dict[str, Any], images: dict[str, bytes]) -> str:
    """The sweep's part of compare.html, above the runs side by side."""
    rec: Recommendation | None = sweep.get("recommendation")
    constraints = ", ".join(sweep["constraints"]) or "none"
    confirmed = rec.get("confirm") if rec else None
    parts = [f"<h1>{html.escape(confirm_headline(confirmed))}</h1>"] if confirmed else []
    parts += [
        f"<h1>Sweep of {html.escape(str(sweep['scenario']))}</h1>",
        f"<p>engine: <b>{html.escape(sweep['engine'])}</b> · runs per setting: {sweep['repeats']} · "
        f"objective: <b>{html.escape(sweep['objective'])}</b> · constraints: {html.escape(constraints)}</p>",
        "<h2>Recommendation</h2>",
    ]
    if rec is None:
        parts.append("<p>No run produced records: nothing to recommend.</p>")
    else:
        noise = {True: "yes", False: "no", None: "unknown (one run per setting)"}[rec["within_noise"]]
        edge = f"yes: try {'; '.join(rec['try_beyond'])}" if rec["at_edge"] else "no"
        parts.append(
            f'<p style="border-left:4px solid {RECOMMENDED_COLOR};padding-left:.8em">'
            f"<b>{html.escape(rec['label'])}</b><br>{html.escape(rec['why'])}</p>"
            f"<p>within noise of the runner-up: <b>{noise}</b> · at the edge of the swept range: <b>{edge}</b></p>"
        )
    parts.append(
        "<h2>Tradeoff</h2><p>Mean over the runs of each setting, error bars the 95 % confidence interval; "
        f'<span style="color:{RECOMMENDED_COLOR}">◆ recommended</span>, ● feasible, ○ excluded '
        "(fails its checks or a constraint, or only its mean meets one; dashed line: the constraint)"
        + (f'; <span style="color:{LIVE_COLOR}">× live</span> runs of the confirmation' if confirmed else "")
        + ".</p>"
    )
    figures = "".join(
        f'<figure style="margin:0;flex:0 0 350px">{img_tag(data, name)}</figure>' for name, data in images.items()
    )
    parts.append(f'<div style="display:flex;flex-wrap:wrap;gap:.5em">{figures}</div>')
    parts += ["<h2>Every setting</h2>", _points_table(sweep)]
    if confirmed:
        parts.append(_confirm_section(confirmed))
    return "".join(parts)


def _points_table(sweep: dict[str, Any]) -> str:
    points = sweep["points"]
    names = list(dict.fromkeys(n for p in points for n in p["metrics"]))
    labels = short_labels(sweep["axes"], [p["settings"] for p in points])
    recommended = (sweep.get("recommendation") or {}).get("label")
    header = (
        "measure (mean ± 95 % CI)",
        *(f"{s}{' (recommended)' if p['label'] == recommended else ''}" for s, p in zip(labels, points, strict=True)),
    )
    rows: list[tuple[Any, ...]] = [
        ("feasible", *("yes" if p["feasible"] else "no: " + "; ".join(p["excluded_because"]) for p in points))
    ]
    for name in names:
        cells = []
        for p in points:
            m = p["metrics"].get(name)
            n = 0 if m is None else sum(v is not None for v in m["values"])
            cells.append("–" if m is None else mean_ci_text(name, m["mean"], m["ci95"], n))
        label = title(name)
        rows.append((label if label == name else f"{label} ({name})", *cells))
    return table(header, rows)


def _values_text(constraint: str, values: list[float | None]) -> str:
    metric = _constraint_metric(constraint)
    return ", ".join("no records" if v is None else format_value(metric, v) for v in values)


def _confirm_section(confirmed: Confirmation) -> str:
    runs = confirmed["runs_per_setting"]
    parts = [
        "<h2>Live confirmation</h2>",
        f"<p>{html.escape(confirmed['line'])}</p>",
        f"<p>The recommendation and the runner-up ran live {runs} time(s) each, with the simulated seeds; a "
        "setting holds when every live run meets its checks and every constraint.</p>",
    ]
    verdicts = [
        (
            label,
            f"{held} of {of}",
            "yes" if held == of else "no",
            "; ".join(f"{n}: {_values_text(n, c['values'])}" for n, c in live["per_constraint"].items()) or "–",
            "; ".join(r["run_dir"] for r in live["runs"]),
        )
        for label, live in confirmed["candidates"].items()
        for held, of in [confirmed["held_runs"][label]]
    ]
    parts.append(
        table(("setting", "live runs that held", "held", "constraint values per run", "run directories"), verdicts)
    )
    rows = [
        (
            name,
            mean_ci_text(name, r["sim_mean"], r["sim_ci95"], r["sim_runs"]),
            format_value(name, r["live"]),
            {True: "yes", False: "no", None: "–"}[r["within_ci"]],
            verdict(name, r),
        )
        for name, r in confirmed["metrics"].items()
    ]
    if rows:
        parts.append(f"<p>{html.escape(confirmed['pick'])}: simulated against the mean of its live runs</p>")
        parts.append(table(("measure", "simulated", "live (mean)", "live within sim CI", "difference"), rows))
    return "".join(parts)
