"""Write a run's report: report.html (figures embedded as base64 PNG), the PNGs, and summary.json.

>>> write_report("reports/runs/quickstart")  # doctest: +SKIP
PosixPath('reports/runs/quickstart/report.html')
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from harness.records.outcomes import OUTCOME_LABELS
from harness.report import figures
from harness.report.console import offered_load_warning
from harness.report.load import RunData, load_run
from harness.report.summary.build import summarize
from harness.report.summary.frame import REACTIONS
from harness.report.summary.schema import (
    BackendCost,
    ChargebackRow,
    Lockout,
    PerKey,
    RunFacts,
    Summary,
    SummaryFile,
    to_json,
)
from harness.report.units import percent
from harness.report.verdict import shared_state_lost

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}.missing{background:#fff3cd;padding:.5em 1em}
img{max-width:100%}figcaption{color:#555;font-size:.9em;margin-bottom:2em}
.question{font-size:1.15em;margin-bottom:.3em}.verdict{background:#eef6ee;border-left:4px solid #4c9a2a;padding:.6em 1em}
.facts{color:#444}
"""


def write_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    run: RunData | None = None,
    summary: Mapping[str, Any] | None = None,
) -> Path:
    """Report on one run directory; writes into `out` (default: the run directory) and returns report.html.

    A caller that has already loaded the run and summarized it passes both, so nothing is computed twice
    (its summary as `summarize` made it, possibly made JSON-safe: the same keys).
    """
    run = run if run is not None else load_run(run_dir)
    out_dir = Path(out) if out is not None else run.run_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    made = cast(Summary, summary) if summary is not None else summarize(run)
    drawn = figures.draw_all(run)
    images = {name: png_bytes(d.figure) for name, d in drawn.items()}
    for name, data in images.items():
        (out_dir / f"{name}.png").write_bytes(data)
    # a copy: the caller's summary stays as summarize() made it
    written: SummaryFile = {
        **made,
        "run": {**made["run"], "missing": list(run.missing)},
        "figures": [f"{name}.png" for name in images],
    }
    (out_dir / "summary.json").write_text(json.dumps(to_json(written), indent=2) + "\n", encoding="utf-8")
    page = render_run(written, drawn, images)
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    for note in run.missing:
        print(f"harness report: note: {note}", file=sys.stderr)
    return path


def png_bytes(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table cell: rounded, thousands separated; empty for None."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return html.escape(str(value))


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def img_tag(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def headline_rows(summary: Summary) -> list[tuple[str, Any]]:
    """The numbers a reader looks at first, as (label, value); also the rows of `harness compare`."""
    req, thr, ret = summary["requests"], summary["throughput"], summary["retries"]
    lat, ttft, e2e = summary["latency"]["all"], summary["ttft"]["stream"], summary["end_to_end_latency"]
    lockout: Mapping[str, Any] = summary.get("lockout") or {}
    return [
        ("logical requests", req["logical"]),
        ("unfinished at the end (waiting to retry; not in the rates)", req["unfinished"]),
        ("in flight when their user stopped (counted nowhere)", req.get("in_flight_when_stopped")),
        ("attempts", req["attempts"]),
        ("client-visible failure rate", percent(req["client_failure_rate"])),
        ("429 rate (share of attempts)", percent(req["rate_429"])),
        ("429 from the gateway token limit", percent(req["rate_429_gateway"])),
        ("429 from a backend", percent(req["rate_429_backend"])),
        ("503 breaker open", percent(req["rate_503_breaker"])),
        ("403 gateway quota", percent(req["rate_403_quota"])),
        ("backend request-limit 429s while tokens were free", lockout.get("with_tokens_free")),
        ("goodput (tokens per scenario minute)", thr["goodput_tpm"]),
        ("retry amplification (attempts per request)", ret["amplification"]),
        ("time lost waiting per request (s)", ret["wait_s_per_request"]),
        ("latency p50 (s)", lat["p50"]),
        ("latency p95 (s)", lat["p95"]),
        ("end-to-end p95 incl. retries (s)", e2e["p95"]),
        ("TTFT p95, streamed requests (s)", ttft["p95"]),
        ("duration (scenario s)", summary["run"]["duration_s"]),
    ]


def render_run(summary: SummaryFile, drawn: dict[str, figures.Drawn], images: dict[str, bytes]) -> str:
    run = summary["run"]
    parts = [f"<h1>Run {html.escape(str(run['run_id']))}</h1>", _offered_short(run), _opening(summary), _run_facts(run)]
    if run["missing"]:
        items = "".join(f"<li>{html.escape(m)}</li>" for m in run["missing"])
        parts.append(f'<div class="missing"><b>Not shown, because data is missing:</b><ul>{items}</ul></div>')
    parts += ["<h2>Headline numbers</h2>", table(("measure", "value"), headline_rows(summary))]
    parts.append(_lockout_section(summary.get("lockout")))
    for name, d in drawn.items():
        parts.append(
            f"<h2>{html.escape(d.title)}</h2><figure>{img_tag(images[name], d.title)}"
            f"<figcaption>{html.escape(d.caption)} File: {name}.png</figcaption></figure>"
        )
        parts.append(_tables_after(name, summary))
    parts.append(_chargeback_section(summary["chargeback"]))
    parts.append(_cost_section(summary))
    return page_html(f"Run {run['run_id']}", "".join(parts))


def _opening(summary: Summary) -> str:
    """The scenario's question and this run's answer, first thing on the page."""
    answer = " ".join(html.escape(sentence) for sentence in summary["verdict"])
    question = summary["run"].get("question")
    if question is None:
        return f'<p class="verdict">{answer}</p>'
    return (
        f'<p class="question"><b>Question:</b> {html.escape(question)}</p>'
        f'<p class="verdict"><b>This run\'s answer:</b> {answer}</p>'
    )


def _offered_short(run: RunFacts) -> str:
    """First thing on the page when the run offered less load than its schedule planned."""
    offered = run.get("offered_load")
    if not offered or not offered.get("short"):
        return ""
    return f'<p class="missing"><b>{html.escape(offered_load_warning(offered).capitalize())}.</b></p>'


def _offered_item(offered: dict[str, Any] | None) -> str:
    if not offered or offered.get("offered_share") is None:
        return ""
    processes = offered.get("by_process") or {}
    split = ", ".join(f"{html.escape(str(n))} {fmt(p.get('offered_user_s'))}" for n, p in processes.items())
    return (
        f"<li>load offered: {percent(offered['offered_share'])} of the planned "
        f"({fmt(offered['offered_user_s'])} of {fmt(offered['planned_user_s'])} user-s)"
        + (f"; per worker: {split}" if len(processes) > 1 else "")
        + "</li>"
    )


def _run_facts(run: RunFacts) -> str:
    """What was run and how: scenario, settings changed, engine and clock, clients, and whether it was cut short."""
    scenario = run.get("scenario") or "unknown scenario"
    text = run.get("description")
    description = f": {html.escape(text)}" if text else ""
    how = "simulated (discrete events, no wall clock)" if run.get("engine") == "sim" else "live"
    if run.get("engine") != "sim":
        how += f" at time scale {fmt(run['time_scale'])} (latencies and durations are scenario time)"
    overrides = ", ".join(f"<code>{html.escape(o)}</code>" for o in run["overrides"]) or "none"
    planned = run.get("planned_duration_s")
    items = [
        f"<li>scenario <b>{html.escape(scenario)}</b>{description}</li>",
        f"<li>settings changed from the scenario file: {overrides}</li>",
        f"<li>{how}; client profile(s): {html.escape(', '.join(run['client_profiles']) or 'unknown')}</li>",
        f"<li>load ran {fmt(run['duration_s'])} scenario s"
        + (f" of {fmt(planned)} planned" if planned is not None else "")
        + "</li>",
        _offered_item(run.get("offered_load")),
    ]
    if run.get("appid_on_trust"):
        items.append(
            "<li>apps are told apart by their token's <code>appid</code> claim, taken on trust: the gateway did not "
            "validate tokens (<code>gateway.auth.jwt</code>), so a caller could have claimed another app</li>"
        )
    lost = run.get("shared_state_lost")
    if lost:
        items.append(f'<li class="missing"><b>Shared state lost:</b> {html.escape(shared_state_lost(lost))}</li>')
    cut = run.get("cut_short_s")
    if cut:
        why = f" ({html.escape(str(run['ended_by']))})" if run.get("ended_by") else ""
        items.append(
            f'<li class="missing"><b>Cut short{why}:</b> {fmt(cut)} scenario s of the planned load did not run; '
            "the numbers cover the part that did.</li>"
        )
    return f'<ul class="facts">{"".join(items)}</ul>'


def _tables_after(figure_name: str, summary: Summary) -> str:
    if figure_name == "timeline" and summary["breaker"]:
        return table(
            ("backend", "trips", "open (scenario s)"),
            ((n, b["trips"], b["open_s"]) for n, b in summary["breaker"].items()),
        )
    if figure_name == "outcomes_by":
        return _split_tables(summary)
    if figure_name == "throughput":
        per_key: tuple[tuple[Mapping[str, PerKey], str], ...] = (
            (summary["backends"], "backend"),
            (summary["apps"], "app"),
        )
        header: tuple[str, ...] = (
            "name",
            "requests",
            "request share",
            "tokens",
            "token share",
            "TPM",
            "peak TPM",
            "limit TPM",
        )
        return "".join(
            f"<h3>Per {what}</h3>"
            + table(
                header,
                (
                    (
                        n,
                        v["requests"],
                        percent(v["request_share"]),
                        v["tokens"],
                        percent(v["token_share"]),
                        v["tpm"],
                        v["peak_tpm"],
                        v["limit_tpm"],
                    )
                    for n, v in shares.items()
                ),
            )
            for shares, what in per_key
        )
    if figure_name == "retry_after":
        header = (
            "source",
            "attempts",
            "with Retry-After",
            "p50 (s)",
            "max (s)",
            "waited",
            "own backoff",
            "at once",
            "gave up",
        )
        rows = [
            (
                OUTCOME_LABELS[s],
                v["attempts"],
                v["with_retry_after"],
                v["retry_after_s"]["p50"],
                v["retry_after_s"]["max"],
                *(v["client_did"][r] for r in REACTIONS),
            )
            for s, v in summary["retry_after"].items()
        ]
        return table(header, rows)
    if figure_name == "latency":
        lat, ttft = summary["latency"], summary["ttft"]
        groups = [("latency all", lat["all"]), ("latency stream", lat["stream"])]
        groups += [("latency non-stream", lat["non_stream"])]
        groups += [(f"latency max_tokens {k}", v) for k, v in lat["by_max_tokens"].items()]
        groups += [("TTFT streams", ttft["stream"])]
        groups += [(f"TTFT streams max_tokens {k}", v) for k, v in ttft["by_max_tokens"].items()]
        rows = [(g, v["count"], v["p50"], v["p95"], v["p99"]) for g, v in groups if v["count"]]
        return table(("group", "n", "p50 (s)", "p95 (s)", "p99 (s)"), rows)
    if figure_name == "drain" and summary["drain"]:
        d = summary["drain"]
        rows = [("all", d["requests"], d["charged"], d["used"], d["charged_per_used"])]
        rows += [
            (k, v["requests"], v["charged"], v["used"], v["charged_per_used"]) for k, v in d["by_deployment"].items()
        ]
        return table(("deployment", "requests", "charged", "used", "charged / used"), rows)
    return ""


def _split_tables(summary: Summary) -> str:
    """One table per split with two or more values: attempts, outcomes by source, failures, goodput, latency."""
    header = (
        "name", "attempts", "throttled", "429 gateway", "429 backend", "503 breaker", "403 quota",
        "requests failed", "retries per request", "goodput (tokens/min)", "latency p95 (s)", "tokens",
    )  # fmt: skip
    parts = []
    splits = ((summary["by_app"], "app"), (summary["by_client_profile"], "client profile"),
              (summary["by_backend"], "backend"), (summary["by_replica"], "gateway replica"))  # fmt: skip
    for values, what in splits:
        if len(values) < 2:
            continue
        rows = (
            (
                name,
                v["attempts"],
                percent(v["rate_throttled"]),
                percent(v["rate_429_gateway"]),
                percent(v["rate_429_backend"]),
                percent(v["rate_503_breaker"]),
                percent(v["rate_403_quota"]),
                percent(v["client_failure_rate"]),
                v["retries_per_request"],
                v["goodput_tpm"],
                v["latency_p95"],
                v["tokens"]["total"],
            )
            for name, v in values.items()
        )
        parts.append(f"<h3>By {what}</h3>" + table(header, rows))
    if parts:
        parts.append(
            "<p>Shares are of each row's attempts. Requests failed and retries per request are per logical "
            "request, which can reach several backends and replicas: – per backend and per replica.</p>"
        )
    return "".join(parts)


def _lockout_section(lockout: Lockout | None) -> str:
    """A sentence and a table when backends refused requests on the request window while tokens were free."""
    if not lockout or not lockout["with_tokens_free"]:
        return ""
    rows = [
        (key, v["admitted"], v["request_limit_429s"], v["with_tokens_free"], v["mean_tokens_free"])
        for key, v in lockout["by_deployment"].items()
        if v["request_limit_429s"]
    ]
    return (
        "<h3>Request-window lockout</h3>"
        f"<p>{fmt(lockout['with_tokens_free'])} of {fmt(lockout['request_limit_429s'])} request-limit 429s from "
        f"the backends came while the token window had room for the request ({fmt(lockout['mean_tokens_free'])} "
        "tokens free on average): the 10 s request window alone refused them. While a deployment counts "
        "rejected requests toward that window (<code>count_rejected_requests</code>, AOAI's documented rule), "
        "clients that retry before it frees keep it full.</p>"
        + table(("backend/deployment", "admitted", "request-limit 429s", "with tokens free", "mean tokens free"), rows)
    )


def _chargeback_section(rows: list[ChargebackRow] | None) -> str:
    title = "<h2>Chargeback: tokens per app and model, gateway vs backends</h2>"
    if rows is None:
        return title + '<p class="missing">Needs both the gateway log and the backend log.</p>'
    header = (
        "app",
        "model",
        "gateway prompt",
        "gateway completion",
        "gateway total",
        "backend total",
        "error",
        "error %",
    )
    body = (
        (
            r["app_id"],
            r["model"],
            r["gateway_prompt_tokens"],
            r["gateway_completion_tokens"],
            r["gateway_total_tokens"],
            r["backend_total_tokens"],
            r["error"],
            r["error_pct"],
        )
        for r in rows
    )
    note = "<p>Joined on the gateway request id the backend received; error = gateway − backend usage.</p>"
    return title + note + table(header, body)


def _cost_section(summary: Summary) -> str:
    """Token share, PTU utilization and spend per backend; nothing when the run has neither figure."""
    backends, cost = summary["backends"], summary["cost"]
    utilized = any(b.get("ptu_utilization") for b in backends.values())
    if cost is None and not utilized:
        return ""
    spend: dict[str, BackendCost] = cost["backends"] if cost is not None else {}
    names = list(backends) + [n for n in spend if n not in backends]
    header: list[str] = ["backend", "token share"]
    if utilized:
        header += ["PTU utilization mean", "PTU utilization p95"]
    if cost is not None:
        unit = html.escape(str(cost["currency"]))
        header += [f"PAYG spend ({unit})", f"PTU cost ({unit})", f"total ({unit})"]
    rows = []
    for name in names:
        figures: Mapping[str, Any] = backends.get(name) or {}
        row: list[Any] = [name, percent(figures.get("token_share"))]
        if utilized:
            utilization = figures.get("ptu_utilization") or {}
            row += [_percent_of_100(utilization.get("mean")), _percent_of_100(utilization.get("p95"))]
        if cost is not None:
            priced = spend.get(name)
            figures_of = (None, None, None) if priced is None else (priced["payg"], priced["ptu"], priced["total"])
            row += [fmt(value, 4) for value in figures_of]
        rows.append(row)
    parts = ["<h2>Utilization and cost</h2>", table(header, rows)]
    if utilized:
        parts.append(
            "<p>PTU utilization: the PTU deployments' bucket level, rebuilt from the backend log (the level "
            "logged at each admission, each answer's charge corrected to its usage, a drain of 100 % per "
            "scenario minute in between) and weighted by time over the run; – for backends without PTU.</p>"
        )
    if cost is not None:
        parts.append(
            f"<p>Total {fmt(cost['total'], 4)} {unit} over {fmt(summary['run']['duration_s'])} scenario s; "
            f"effective cost <b>{fmt(cost['per_1m_tokens'], 4)} {unit} per 1M tokens</b> of goodput. "
            "PTUs are paid per hour whether used or not; pay-as-you-go per 1K prompt and completion tokens "
            "served; – for a backend without prices.</p>"
        )
    return "".join(parts)


def _percent_of_100(value: float | None) -> str:
    return percent(value / 100 if value is not None else None, digits=0)


def page_html(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>\n"
    )
