"""Several runs side by side: headline numbers and a per-backend split in tables, each run's verdict,
overlaid figures, each run named by the settings that differ between them (from scenario.yaml as run, the
overrides in run.json, and the engine: live or simulated).

In headers and legends a setting is named by the shortest end of its path that no other differing setting
shares (`tripDuration=PT1M`); when even that is too long, by what sets the run apart otherwise (its scenario
file, or its run directory), never by its position.

    >>> write_comparison(["runs/trip-10s", "runs/trip-60s"], "runs/comparison")  # doctest: +SKIP
    PosixPath('runs/comparison/compare.html')
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from harness.errors import UsageError
from harness.records.outcomes import OUTCOME_COLOURS, OUTCOME_LABELS, OUTCOMES, SUCCESS, THROTTLING_KINDS
from harness.report import tradeoff
from harness.report.flat import flatten
from harness.report.html import fmt, headline_rows, img_tag, page_html, png_bytes, table
from harness.report.load import RunData, load_run
from harness.report.summary.build import summarize
from harness.report.summary.frame import NO_BACKEND, annotate, duration_s
from harness.report.summary.latency import end_to_end
from harness.report.summary.schema import Summary, json_safe
from harness.report.summary.windows import nice_bin
from harness.report.units import percent

__all__ = [
    "ComparedRun",
    "backend_split",
    "compare_runs",
    "differing_settings",
    "fidelity",
    "flatten",
    "name_runs",
    "write_comparison",
]

# A run's short label longer than this names it by its scenario or run directory instead (its settings in a table).
LABEL_CHARS = 48
# At most this many differing settings are listed (two different scenarios differ in hundreds).
SHOWN_SETTINGS = 40


@dataclass
class ComparedRun:
    """One run of a comparison: its data, summary, and the settings that set it apart."""

    run: RunData
    summary: Summary
    settings: dict[str, Any]

    index: int = 0  # position in the comparison, from 0
    short_label: str = ""  # the name in headers and legends (`name_runs`); the label until set

    def __post_init__(self) -> None:
        self.short_label = self.short_label or self.label

    @property
    def label(self) -> str:
        if not self.settings:
            return self.run.name
        return ", ".join(f"{path}={_short(value)}" for path, value in self.settings.items())


def short_paths(paths: list[str]) -> dict[str, str]:
    """Each path by the shortest end of it (whole dotted parts) that no other path ends with.

    >>> short_paths(["gateway.circuit_breaker.tripDuration", "backends[0].tpm", "backends[1].tpm"])
    {'gateway.circuit_breaker.tripDuration': 'tripDuration', 'backends[0].tpm': 'backends[0].tpm', 'backends[1].tpm': 'backends[1].tpm'}
    """
    out = {}
    for path in paths:
        parts = path.split(".")
        for k in range(1, len(parts) + 1):
            end = ".".join(parts[-k:])
            if not any(other != path and (other == end or other.endswith("." + end)) for other in paths):
                break
        out[path] = end
    return out


def name_runs(compared: list[ComparedRun]) -> None:
    """Give each run the short name its column and legend entry use: its differing settings by their short
    paths, else its scenario file, else its run directory (made unique), so no run is only a number."""
    short = short_paths(sorted({p for c in compared for p in c.settings}))
    names = [", ".join(f"{short[p]}={_short(v)}" for p, v in c.settings.items()) for c in compared]
    if any(len(n) > LABEL_CHARS for n in names) or len(set(names)) < len(names) or not all(names):
        scenarios = [Path(str(c.run.run_info.get("scenario") or "")).stem for c in compared]
        dirs = [c.run.run_dir.name for c in compared]
        if len(set(dirs)) < len(dirs):  # a sweep's runs are run-NN/seed-NNNN
            dirs = [f"{c.run.run_dir.parent.name}/{c.run.run_dir.name}" for c in compared]
        names = scenarios if all(scenarios) and len(set(scenarios)) == len(scenarios) else dirs
    if len(set(names)) < len(names):
        names = [f"{name} ({i + 1})" for i, name in enumerate(names)]
    for c, name in zip(compared, names, strict=True):
        c.short_label = name


def differing_settings(runs: list[RunData]) -> list[dict[str, Any]]:
    """Per run, the scenario settings (and overrides, and the engine) whose values are not the same in every run."""
    flat = []
    for run in runs:
        settings = flatten(run.scenario_data)
        for override in run.run_info.get("overrides") or []:
            path, _, value = str(override).partition("=")
            settings.setdefault(path.strip(), value)
        settings["engine"] = run.run_info.get("engine") or "live"  # a run.json written live may not say
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
    compared = [ComparedRun(r, summarize(r), s, i) for i, (r, s) in enumerate(zip(runs, settings, strict=True))]
    name_runs(compared)
    return compared


def write_comparison(
    run_dirs: list[str | Path],
    out: str | Path,
    notes: list[str] | None = None,
    *,
    sweep: dict[str, Any] | None = None,
    write_json: bool = True,
) -> Path:
    """compare.html (figures embedded), the figures as PNG and compare.json into `out`; returns compare.html.

    With `sweep` (a sweep's comparison.json content) the page leads with the sweep's recommendation and
    tradeoff figures; `write_json=False` leaves compare.json out (the sweep's comparison.json says more).
    """
    compared = compare_runs(run_dirs)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    lead_images = tradeoff.draw_all(sweep, first_backend(compared)) if sweep is not None else {}
    drawn = {"compare_timeline": overlay_timeline(compared), "compare_latency": overlay_latency(compared)}
    images = {name: png_bytes(fig) for name, fig in drawn.items()}
    for name, data in {**lead_images, **images}.items():
        (out_dir / f"{name}.png").write_bytes(data)
    lead = tradeoff.section(sweep, lead_images) if sweep is not None else ""
    payload = {
        "runs": [
            {
                "run_dir": str(c.run.run_dir),
                "label": c.label,
                "name": c.short_label,
                "settings": c.settings,
                "verdict": c.summary.get("verdict", []),
                "summary": c.summary,
            }
            for c in compared
        ],
        "differing": sorted({p for c in compared for p in c.settings}),
        "notes": notes or [],
    }
    if write_json:
        (out_dir / "compare.json").write_text(json.dumps(json_safe(payload), indent=2) + "\n", encoding="utf-8")
    path = out_dir / "compare.html"
    page = render_comparison(compared, images, [] if sweep is not None else notes or [], lead=lead)
    path.write_text(page, encoding="utf-8")
    return path


def first_backend(compared: list[ComparedRun]) -> str | None:
    """The first pool member of the highest priority in the first run's scenario (the one traffic goes to first)."""
    scenario = compared[0].run.scenario
    if scenario is None:
        return None
    members = scenario.gateway.pool_members(b.name for b in scenario.backends)
    return min(members, key=lambda m: m.priority).backend if members else None


def render_comparison(compared: list[ComparedRun], images: dict[str, bytes], notes: list[str], lead: str = "") -> str:
    differing = sorted({p for c in compared for p in c.settings})
    if lead:
        parts = [lead, "<h2>Runs side by side (the first run of each setting)</h2>"]
    else:
        parts = ["<h1>Comparison of runs</h1>"]
    if not differing:
        parts.append("<p>Settings that differ: <b>nothing (same scenario)</b></p>")
    elif len(differing) <= 3 and all(c.short_label == c.label for c in compared):
        parts.append(f"<p>Settings that differ: <b>{fmt(', '.join(differing))}</b></p>")
    else:
        parts.append(_settings_table(compared, differing))
    parts += [f"<p>{fmt(n)}</p>" for n in notes]
    header = ("measure", *(c.short_label for c in compared))
    columns = [headline_rows(c.summary) for c in compared]
    rows = [(label, *(col[i][1] for col in columns)) for i, (label, _) in enumerate(columns[0])]
    names = [c.run.run_dir.name for c in compared]
    if len(set(names)) < len(names):  # a sweep's runs are run-NN/seed-NNNN
        names = [f"{c.run.run_dir.parent.name}/{c.run.run_dir.name}" for c in compared]
    rows.append(("run directory", *names))
    parts += ["<h2>Headline numbers</h2>", table(header, rows)]
    split = backend_split(compared)
    if split:
        parts += ["<h2>By backend</h2>", table(("backend", "measure", *header[1:]), split)]
    parts.append("<h2>Verdict per run</h2>")
    for c in compared:
        sentences = " ".join(fmt(s) for s in c.summary.get("verdict", []))
        parts.append(f'<h3>{fmt(c.short_label)}</h3><p class="verdict">{sentences}</p>')
    for c in compared:
        if c.run.missing:
            parts.append(f"<p>{fmt(c.short_label)}: missing: {fmt('; '.join(c.run.missing))}</p>")
    parts += [
        "<h2>Over time</h2>",
        img_tag(images["compare_timeline"], "goodput and throttling over time"),
        "<h2>Latency</h2>",
        img_tag(images["compare_latency"], "end-to-end latency distribution"),
    ]
    return page_html("Sweep" if lead else "Comparison of runs", "".join(parts))


def backend_split(compared: list[ComparedRun]) -> list[tuple[Any, ...]]:
    """Rows of the per-backend table: each backend any run reached, a measure per row, a run per column."""
    backends: list[str] = []
    for c in compared:
        backends += [b for b in c.summary.get("by_backend", {}) if b != NO_BACKEND and b not in backends]
    rows: list[tuple[Any, ...]] = []
    for name in backends:
        split: list[Mapping[str, Any]] = [c.summary["by_backend"].get(name) or {} for c in compared]
        own: list[Mapping[str, Any]] = [(c.summary.get("backends") or {}).get(name) or {} for c in compared]
        trips = [_trips(c.summary, name) for c in compared]
        utilization = [(o.get("ptu_utilization") or {}).get("mean") for o in own]
        rows += [
            (name, "attempts", *(s.get("attempts") for s in split)),
            (name, "token share", *(percent(o.get("token_share")) for o in own)),
            (name, "429 rate (share of its attempts)", *(percent(s.get("rate_429")) for s in split)),
            (name, "goodput (tokens per scenario minute)", *(s.get("goodput_tpm") for s in split)),
            (name, "p95 latency (scenario s)", *(s.get("latency_p95") for s in split)),
            (name, "breaker trips", *trips),
        ]
        if any(u is not None for u in utilization):
            rows.append((name, "PTU utilization, mean", *(None if u is None else f"{u:.0f} %" for u in utilization)))
    return rows


def _trips(summary: Summary, backend: str) -> int | None:
    breakers = summary.get("breaker")
    if breakers is None:
        return None  # no gateway log
    figures = breakers.get(backend)
    return 0 if figures is None else int(figures["trips"])


def _settings_table(compared: list[ComparedRun], differing: list[str]) -> str:
    shown = differing[:SHOWN_SETTINGS]
    rows = [(path, *(_short(c.settings.get(path)) for c in compared)) for path in shown]
    more = len(differing) - len(shown)
    tail = f"<p>… and {more} more settings differ.</p>" if more else ""
    return (
        f"<h2>Settings that differ ({len(differing)})</h2>"
        + table(("setting", *(c.short_label for c in compared)), rows)
        + tail
    )


def overlay_timeline(compared: list[ComparedRun]) -> Figure:
    """Goodput and the throttled share of attempts over scenario time, one line per run."""
    figure = Figure(figsize=(11, 6.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True)
    span = max(duration_s(c.run) for c in compared)
    bin_s = max(nice_bin(span, target_bins=60), 5.0)
    for i, c in enumerate(compared):
        records = annotate(c.run)
        bins = (records["t"] // bin_s) * bin_s
        ok = records["outcome"] == SUCCESS
        goodput = records["usage_total"].where(ok, 0.0).fillna(0.0).groupby(bins).sum() * (60.0 / bin_s)
        throttled = records["outcome"].isin(THROTTLING_KINDS).groupby(bins).mean() * 100
        x = goodput.index.to_numpy(dtype=float) + bin_s / 2
        top.plot(x, goodput.to_numpy(), label=c.short_label, color=f"C{i}")
        bottom.plot(x, throttled.to_numpy(), label=c.short_label, color=f"C{i}")
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
        e2e = end_to_end(annotate(c.run))
        if len(e2e):
            cdf.plot(e2e.quantile(quantiles).to_numpy(), quantiles * 100, label=c.short_label, color=f"C{i}")
    cdf.set_xlabel("end-to-end latency of succeeded requests, retries included (scenario s)")
    cdf.set_ylabel("share of requests at or below (%)")
    cdf.legend(fontsize="small")
    x = np.arange(len(compared))
    bottom = np.zeros(len(compared))
    for outcome in OUTCOMES:
        shares = np.array([c.summary["requests"]["attempt_outcomes"][outcome] / len(c.run.records) for c in compared])
        mix.bar(x, shares * 100, bottom=bottom, label=OUTCOME_LABELS[outcome], color=OUTCOME_COLOURS[outcome])
        bottom += shares * 100
    mix.set_xticks(x, [c.short_label for c in compared], rotation=15 if len(compared) > 2 else 0)
    mix.set_ylabel("share of attempts (%)")
    mix.set_title("Outcome mix", fontsize="medium")
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
