"""Several runs side by side: headline numbers in one table, overlaid figures, each run named by the settings
that differ between them (from scenario.yaml as run, and the overrides in run.json).

    >>> write_comparison(["runs/trip-10s", "runs/trip-60s"], "runs/comparison")  # doctest: +SKIP
    PosixPath('runs/comparison/compare.html')
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from harness.errors import UsageError
from harness.report import metrics
from harness.report.figures import OUTCOME_COLORS
from harness.report.html import fmt, headline_rows, img_tag, json_safe, page_html, png_bytes, table
from harness.report.load import RunData, load_run


@dataclass
class ComparedRun:
    """One run of a comparison: its data, summary, and the settings that set it apart."""

    run: RunData
    summary: dict[str, Any]
    settings: dict[str, Any]

    @property
    def label(self) -> str:
        if not self.settings:
            return self.run.name
        return ", ".join(f"{path}={_short(value)}" for path, value in self.settings.items())


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths to leaf values, as override paths spell them.

    >>> flatten({"gateway": {"pool": [{"weight": 2}]}, "run": {"seed": 1}})
    {'gateway.pool[0].weight': 2, 'run.seed': 1}
    """
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(data, list) and data and any(isinstance(v, dict | list) for v in data):
        out = {}
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}[{i}]"))
        return out
    return {prefix: data}


def differing_settings(runs: list[RunData]) -> list[dict[str, Any]]:
    """Per run, the scenario settings (and overrides) whose values are not the same in every run."""
    flat = []
    for run in runs:
        settings = flatten(run.scenario_data)
        for override in run.run_info.get("overrides") or []:
            path, _, value = str(override).partition("=")
            settings.setdefault(path.strip(), value)
        flat.append(settings)
    paths = sorted({p for f in flat for p in f})
    differ = [p for p in paths if len({json.dumps(f.get(p), sort_keys=True, default=str) for f in flat}) > 1]
    # run.name differs between runs without being a setting
    differ = [p for p in differ if p not in ("run.name",)]
    return [{p: f.get(p) for p in differ} for f in flat]


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def compare_runs(run_dirs: list[str | Path]) -> list[ComparedRun]:
    if len(run_dirs) < 2:
        raise UsageError("compare needs at least two run directories")
    runs = [load_run(d) for d in run_dirs]
    settings = differing_settings(runs)
    return [ComparedRun(r, metrics.summarize(r), s) for r, s in zip(runs, settings, strict=True)]


def write_comparison(run_dirs: list[str | Path], out: str | Path, notes: list[str] | None = None) -> Path:
    """compare.html (figures embedded), the figures as PNG and compare.json into `out`; returns compare.html."""
    compared = compare_runs(run_dirs)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = {"compare_timeline": overlay_timeline(compared), "compare_latency": overlay_latency(compared)}
    images = {name: png_bytes(fig) for name, fig in drawn.items()}
    for name, data in images.items():
        (out_dir / f"{name}.png").write_bytes(data)
    payload = {
        "runs": [
            {"run_dir": str(c.run.run_dir), "label": c.label, "settings": c.settings, "summary": c.summary}
            for c in compared
        ],
        "differing": sorted({p for c in compared for p in c.settings}),
        "notes": notes or [],
    }
    (out_dir / "compare.json").write_text(json.dumps(json_safe(payload), indent=2) + "\n", encoding="utf-8")
    path = out_dir / "compare.html"
    path.write_text(render_comparison(compared, images, notes or []), encoding="utf-8")
    return path


def render_comparison(compared: list[ComparedRun], images: dict[str, bytes], notes: list[str]) -> str:
    differing = sorted({p for c in compared for p in c.settings})
    parts = ["<h1>Comparison of runs</h1>"]
    what = ", ".join(differing) if differing else "nothing (same scenario)"
    parts.append(f"<p>Settings that differ: <b>{fmt(what)}</b></p>")
    parts += [f"<p>{fmt(n)}</p>" for n in notes]
    header = ("measure", *(c.label for c in compared))
    columns = [headline_rows(c.summary) for c in compared]
    rows = [(label, *(col[i][1] for col in columns)) for i, (label, _) in enumerate(columns[0])]
    rows.append(("run directory", *(c.run.run_dir.name for c in compared)))
    parts += ["<h2>Headline numbers</h2>", table(header, rows)]
    for c in compared:
        if c.run.missing:
            parts.append(f"<p>{fmt(c.label)}: missing: {fmt('; '.join(c.run.missing))}</p>")
    parts += [
        "<h2>Over time</h2>",
        img_tag(images["compare_timeline"], "goodput and throttling over time"),
        "<h2>Latency</h2>",
        img_tag(images["compare_latency"], "end-to-end latency distribution"),
    ]
    return page_html("Comparison of runs", "".join(parts))


def overlay_timeline(compared: list[ComparedRun]) -> Figure:
    """Goodput and the throttled share of attempts over scenario time, one line per run."""
    figure = Figure(figsize=(11, 6.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True)
    span = max(metrics.duration_s(metrics.annotate(c.run.records)) for c in compared)
    bin_s = max(metrics.nice_bin(span, target_bins=60), 5.0)
    for i, c in enumerate(compared):
        records = c.run.records
        bins = (records["t"] // bin_s) * bin_s
        ok = records["outcome"] == "success"
        goodput = records["usage_total"].where(ok, 0.0).fillna(0.0).groupby(bins).sum() * (60.0 / bin_s)
        throttled = records["outcome"].isin(metrics.THROTTLED).groupby(bins).mean() * 100
        x = goodput.index.to_numpy(dtype=float) + bin_s / 2
        top.plot(x, goodput.to_numpy(), label=c.label, color=f"C{i}")
        bottom.plot(x, throttled.to_numpy(), label=c.label, color=f"C{i}")
    top.set_ylabel("goodput (tokens per scenario minute)")
    top.set_ylim(bottom=0)
    top.set_title(f"Goodput ({bin_s:g} s bins)", fontsize="medium")
    top.legend(fontsize="small")
    bottom.set_ylabel("throttled attempts (429/503, %)")
    bottom.set_ylim(0, 100)
    bottom.set_xlabel("scenario time since start (s)")
    return figure


def overlay_latency(compared: list[ComparedRun]) -> Figure:
    """End-to-end latency CDF (retries included) and the outcome mix, per run."""
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    cdf, mix = figure.subplots(1, 2)
    quantiles = np.linspace(0, 1, 201)
    for i, c in enumerate(compared):
        e2e = metrics.end_to_end(metrics.annotate(c.run.records))
        if len(e2e):
            cdf.plot(e2e.quantile(quantiles).to_numpy(), quantiles * 100, label=c.label, color=f"C{i}")
    cdf.set_xlabel("end-to-end latency of succeeded requests, retries included (scenario s)")
    cdf.set_ylabel("share of requests at or below (%)")
    cdf.legend(fontsize="small")
    x = np.arange(len(compared))
    bottom = np.zeros(len(compared))
    for outcome in metrics.OUTCOMES:
        shares = np.array([c.summary["requests"]["attempt_outcomes"][outcome] / len(c.run.records) for c in compared])
        mix.bar(x, shares * 100, bottom=bottom, label=metrics.OUTCOME_LABELS[outcome], color=OUTCOME_COLORS[outcome])
        bottom += shares * 100
    mix.set_xticks(x, [f"run {i + 1}" for i in range(len(compared))])
    mix.set_ylabel("share of attempts (%)")
    mix.set_title("Outcome mix (runs in table order)", fontsize="medium")
    mix.legend(fontsize="x-small")
    return figure


FIDELITY_429_PP = 2.0
FIDELITY_GOODPUT_PCT = 5.0


def fidelity(reference: dict[str, Any], compressed: dict[str, Any]) -> dict[str, Any]:
    """Does a time-compressed run give the same throttling picture as the reference (scale 1) run?

    Holds when the 429 rate is within 2 percentage points and goodput within 5 %.

    >>> ref = {"requests": {"rate_429": 0.10}, "throughput": {"goodput_tpm": 1000.0}}
    >>> fidelity(ref, {"requests": {"rate_429": 0.11}, "throughput": {"goodput_tpm": 960.0}})["holds"]
    True
    """
    rate_pp = abs(compressed["requests"]["rate_429"] - reference["requests"]["rate_429"]) * 100
    ref_goodput = reference["throughput"]["goodput_tpm"] or 0.0
    goodput = compressed["throughput"]["goodput_tpm"] or 0.0
    goodput_pct = abs(goodput - ref_goodput) / ref_goodput * 100 if ref_goodput else math.inf
    return {
        "rate_429_diff_pp": rate_pp,
        "goodput_diff_pct": goodput_pct,
        "holds": rate_pp <= FIDELITY_429_PP and goodput_pct <= FIDELITY_GOODPUT_PCT,
    }
