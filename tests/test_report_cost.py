"""PTU utilization and cost in summary.json and report.html, on a small run whose figures are worked out by hand.

The run: 120 scenario seconds (first attempt at 0, last one ends at 120). Backend `ptu` has a 3-PTU deployment
(gpt-4o) and a standard one (gpt-4o-mini); `payg` is standard only; `spare` has no prices.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from harness.clock import VirtualClock
from harness.records import RecordWriter
from harness.report.cost import bucket_level, combine, ptu_utilization, run_cost
from harness.report.html import write_report
from harness.report.load import load_run
from harness.report.summary.build import summarize
from harness.scenario import validate_scenario

T0 = 1_700_000_000.0
SCENARIO: dict[str, Any] = {
    "backends": [
        {
            "name": "ptu",
            "deployments": {"gpt-4o": {"ptu": 3, "ptu_tokens_per_minute": 1000}, "gpt-4o-mini": {"tpm": 10000}},
            "cost": {"ptu_per_hour": 2.0, "prompt_per_1k": 0.002, "completion_per_1k": 0.004, "currency": "EUR"},
        },
        {
            "name": "payg",
            "deployments": {"gpt-4o": {"tpm": 100000}},
            "cost": {"prompt_per_1k": 0.01, "completion_per_1k": 0.03, "currency": "EUR"},
        },
        {"name": "spare", "deployments": {"gpt-4o": {}}},
    ],
}
# (start s, backend, deployment, status, error kind, latency s, usage prompt, usage completion)
ATTEMPTS = [
    (0.0, "ptu", "gpt-4o", 200, None, 1.0, 100, 50),  # PTU: paid by the hour, not per token
    (5.0, "ptu", "gpt-4o-mini", 200, None, 1.0, 1000, 1000),  # standard deployment of a PTU backend
    (10.0, "payg", "gpt-4o", 200, None, 2.0, 1000, 200),
    (20.0, "payg", "gpt-4o", 429, "backend_429", 0.1, None, None),  # refused: costs nothing
    (30.0, "payg", "gpt-4o", 200, None, 3.0, 2000, 400),
    (100.0, "spare", "gpt-4o", 200, None, 20.0, 500, 100),  # ends at 120: the run's duration
]
# The log rows of ptu/gpt-4o, in the order the mock wrote them (at each request's end, so not in time order):
# (t, utilization after the admission decision, estimate charged, usage total tokens, duration s, status).
# Its capacity is 3 PTUs x 1000 tokens per minute: 1 % is 30 tokens.
PTU_ROWS = [
    (0.0, 30.0, 900, 150, 1.0, 200),  # charged 30 %; corrected at 1 s by (150 - 900) / 30 = -25 %
    (60.0, 120.0, 3600, 1200, 70.0, 200),  # corrected at 130 s, after the run
    (61.0, 120.0 - 100 / 60, 0, None, 0.1, 429),  # refused (over 100 %): the level as it stood
    (6.0, 50.0, 1500, 300, 3.0, 200),  # the bucket was empty again; corrected at 9 s by -40 %
]

DURATION_S = 120.0
# PTU: 3 PTUs x 2.0 EUR x 120/3600 h; PAYG on ptu: only gpt-4o-mini: 1000/1000 x 0.002 + 1000/1000 x 0.004
PTU_COST = 3 * 2.0 * DURATION_S / 3600
PTU_PAYG = 1.0 * 0.002 + 1.0 * 0.004
# payg: (1000 + 2000)/1000 x 0.01 + (200 + 400)/1000 x 0.03
PAYG_PAYG = 3.0 * 0.01 + 0.6 * 0.03
GOODPUT = 150 + 2000 + 1200 + 2400 + 600
# Level of ptu/gpt-4o, draining 100 % per 60 s between events:
#   0-1 s: 30 -> 28.33, then -25 %: 3.33 -> 0 by 3 s (area 29.17 + 3.33 = 32.5); 3-6 s: 0;
#   6-9 s: 50 -> 45 (142.5), then -40 %: 5 -> 0 by 12 s (7.5); 12-60 s: 0; 60-120 s: 120 -> 20 (4200)
UTILIZATION_MEAN = (32.5 + 142.5 + 7.5 + 4200) / DURATION_S  # 36.52
# without the corrections (no scenario.yaml, so no capacity): 0-6 s: 30 -> 20 (150); 6-36 s: 50 -> 0 (750)
UNCORRECTED_MEAN = (150 + 750 + 4200) / DURATION_S  # 42.5
# above x only on 60-120 s (the rest stays <= 50): 0.6 x (120 - x) s = 5 % of 120 s -> x = 110
UTILIZATION_P95 = 110.0


def write_run(run_dir: Path, scenario: dict[str, Any] = SCENARIO, with_ptu_log: bool = True) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    with RecordWriter(run_dir / "records.csv", VirtualClock()) as writer:
        for i, (start, backend, deployment, status, kind, latency, prompt, completion) in enumerate(ATTEMPTS):
            writer.write(
                {
                    "run_id": "cost",
                    "t_scenario": T0 + start,
                    "app_id": "app",
                    "client_profile": "none",
                    "logical_id": f"L{i}",
                    "attempt": 1,
                    "operation": "chat",
                    "deployment": deployment,
                    "stream": False,
                    "status": status,
                    "error_kind": kind,
                    "backend": backend,
                    "latency_s": latency,
                    "usage_prompt": prompt,
                    "usage_completion": completion,
                    "usage_total": None if prompt is None else prompt + completion,
                    "decision": "success" if status == 200 else "give_up",
                }
            )
    rows = [
        {
            "t": T0 + start,
            "backend": backend,
            "deployment": deployment,
            "model": deployment,
            "stream": False,
            "status": status,
            "decision": "ok" if status == 200 else "rate_limited_tokens",
            "estimate_charged": 0,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": None if prompt is None else prompt + completion,
            "utilization": None,  # the mock logs a utilization for PTU deployments only
        }
        for start, backend, deployment, status, _, _, prompt, completion in ATTEMPTS
        if not (backend == "ptu" and deployment == "gpt-4o")
    ]
    if with_ptu_log:
        rows += [
            {
                "t": T0 + t,
                "backend": "ptu",
                "deployment": "gpt-4o",
                "model": "gpt-4o",
                "status": status,
                "estimate_charged": charged,
                "total_tokens": used,
                "utilization": u,
                "duration_s": duration,
            }
            for t, u, charged, used, duration, status in PTU_ROWS
        ]
    (run_dir / "backend.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (run_dir / "scenario.yaml").write_text(yaml.safe_dump(scenario), encoding="utf-8")
    (run_dir / "run.json").write_text(json.dumps({"run_id": "cost", "time_scale": 1}), encoding="utf-8")
    return run_dir


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    run_dir = write_run(tmp_path_factory.mktemp("cost"))
    page = write_report(run_dir).read_text(encoding="utf-8")
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8")), page


def test_the_run_lasts_what_the_hand_computation_assumes(reported: Any) -> None:
    summary, _ = reported
    assert summary["run"]["duration_s"] == pytest.approx(DURATION_S)
    assert summary["throughput"]["goodput_tokens"] == pytest.approx(GOODPUT)


def test_ptu_cost_is_per_ptu_hour_over_the_run_and_payg_per_token_of_standard_deployments(reported: Any) -> None:
    summary, _ = reported
    cost = summary["cost"]
    assert cost["currency"] == "EUR"
    assert cost["backends"]["ptu"] == pytest.approx(
        {"ptu": PTU_COST, "payg": PTU_PAYG, "total": PTU_COST + PTU_PAYG}, rel=1e-12
    )
    assert cost["backends"]["payg"] == pytest.approx({"ptu": 0.0, "payg": PAYG_PAYG, "total": PAYG_PAYG}, rel=1e-12)
    assert cost["backends"]["spare"] == {"ptu": None, "payg": None, "total": None}  # unpriced, not free
    total = PTU_COST + PTU_PAYG + PAYG_PAYG
    assert cost["total"] == pytest.approx(total, rel=1e-12)
    assert cost["per_1m_tokens"] == pytest.approx(total / GOODPUT * 1e6, rel=1e-12)
    assert cost["per_1m_tokens"] == pytest.approx(40.0)  # 0.254 EUR for 6,350 tokens


def test_ptu_utilization_is_time_weighted_rebuilding_the_bucket_between_decisions(reported: Any) -> None:
    summary, _ = reported
    backends = summary["backends"]
    assert backends["ptu"]["ptu_utilization"] == pytest.approx({"mean": UTILIZATION_MEAN, "p95": UTILIZATION_P95})
    assert backends["payg"]["ptu_utilization"] is None
    assert backends["spare"]["ptu_utilization"] is None
    assert backends["ptu"]["token_share"] == pytest.approx(2150 / GOODPUT)


def test_summary_keys_read_as_dotted_paths(reported: Any) -> None:
    # `harness sweep --objective` style paths: plain names, numbers or None at the leaves
    summary, _ = reported

    def leaves(node: Any, path: str) -> dict[str, Any]:
        if isinstance(node, dict):
            return {k: v for key, value in node.items() for k, v in leaves(value, f"{path}.{key}").items()}
        return {path.lstrip("."): node}

    flat = leaves({"backends": summary["backends"], "cost": summary["cost"]}, "")
    assert flat["backends.ptu.ptu_utilization.mean"] == pytest.approx(UTILIZATION_MEAN)
    assert flat["backends.ptu.ptu_utilization.p95"] == pytest.approx(UTILIZATION_P95)
    assert flat["cost.per_1m_tokens"] == pytest.approx(40.0)
    assert flat["cost.backends.payg.payg"] == pytest.approx(PAYG_PAYG)


def test_report_shows_utilization_and_cost_per_backend(reported: Any) -> None:
    _, page = reported
    section = page[page.index("<h2>Utilization and cost</h2>") :]
    assert "<th>PTU utilization mean</th>" in section and "<th>PAYG spend (EUR)</th>" in section
    # token share 0.339, utilization 36.5 % mean and 110 % p95, then spend: every rate as a percentage
    row = "<tr><td>ptu</td><td>33.9 %</td><td>37 %</td><td>110 %</td><td>0.006</td><td>0.2</td><td>0.206</td></tr>"
    assert row in section
    assert "<tr><td>spare</td><td>9.4 %</td><td>–</td><td>–</td><td>–</td><td>–</td><td>–</td></tr>" in section
    assert "<b>40 EUR per 1M tokens</b>" in section


def test_without_prices_the_cost_is_none_and_the_report_shows_utilization_only(tmp_path: Path) -> None:
    unpriced = {"backends": [{k: v for k, v in b.items() if k != "cost"} for b in SCENARIO["backends"]]}
    run_dir = write_run(tmp_path / "unpriced", scenario=unpriced)
    page = write_report(run_dir).read_text(encoding="utf-8")
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["cost"] is None
    assert summary["backends"]["ptu"]["ptu_utilization"]["mean"] == pytest.approx(UTILIZATION_MEAN)
    assert "<h2>Utilization and cost</h2>" in page
    assert "spend" not in page and "per 1M tokens" not in page


def test_nothing_to_show_means_no_section(tmp_path: Path) -> None:
    unpriced = {"backends": [{k: v for k, v in b.items() if k != "cost"} for b in SCENARIO["backends"]]}
    run_dir = write_run(tmp_path / "bare", scenario=unpriced, with_ptu_log=False)
    page = write_report(run_dir).read_text(encoding="utf-8")
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["cost"] is None
    assert all(b["ptu_utilization"] is None for b in summary["backends"].values())
    assert "Utilization and cost" not in page


def test_a_run_without_scenario_has_no_cost_but_keeps_its_utilization(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "noscenario")
    (run_dir / "scenario.yaml").unlink()
    summary = summarize(load_run(run_dir))
    assert summary["cost"] is None
    # no capacity, so the corrections cannot be placed: the level only drains between decisions
    assert summary["backends"]["ptu"]["ptu_utilization"] == pytest.approx(
        {"mean": UNCORRECTED_MEAN, "p95": UTILIZATION_P95}
    )


def _log(rows: list[tuple[float, str, str, float | None]]) -> pd.DataFrame:
    """Backend log rows of refused requests (no corrections): (t, backend, deployment, utilization)."""
    log = pd.DataFrame(rows, columns=["t", "backend", "deployment", "utilization"])
    return log.assign(status=429.0, estimate_charged=0.0, total_tokens=np.nan, duration_s=0.1)


def test_several_ptu_deployments_are_weighted_by_capacity_and_an_idle_one_counts_as_empty() -> None:
    scenario = validate_scenario(
        {
            "backends": [
                {
                    "name": "b",
                    "deployments": {
                        "gpt-4o": {"ptu": 1, "ptu_tokens_per_minute": 1000},
                        "large": {"ptu": 3, "ptu_tokens_per_minute": 1000},
                    },
                }
            ]
        }
    )
    # gpt-4o at 60 % at 0 s drains to 0 by 36 s: its own mean over 120 s is 1080 / 120 = 9 %; `large` never asked
    log = _log([(T0, "b", "gpt-4o", 60.0)])
    figures = ptu_utilization(log, scenario, T0, 120.0)["b"]
    assert figures["mean"] == pytest.approx(9.0 / 4)  # gpt-4o holds a quarter of the capacity
    # the backend's level: 15 % -> 0 over 36 s; above x for 36 (15 - x) / 15 s = 6 s -> x = 12.5
    assert figures["p95"] == pytest.approx(12.5)
    # without the scenario: no capacities, and the idle deployment is unknown
    assert ptu_utilization(log, None, T0, 120.0)["b"]["mean"] == pytest.approx(9.0)


NONE = (np.zeros(0), np.zeros(0))


def test_levels_of_two_deployments_add_between_their_decisions() -> None:
    a = bucket_level((np.array([0.0, 30.0]), np.array([100.0, 10.0])), NONE, end=60.0)  # 100 -> 50; 10 -> 0 at 36 s
    b = bucket_level((np.array([10.0]), np.array([60.0])), NONE, end=60.0)  # 0 until 10 s, 60 -> 0 at 46 s
    assert a.mean() == pytest.approx((30 * 75 + 6 * 5) / 60.0)
    level = combine({"a": a, "b": b}, {"a": 1.0, "b": 3.0}, end=60.0)
    assert level.mean() == pytest.approx((a.mean() + 3 * b.mean()) / 4)
    assert level.time_above(0.0) == pytest.approx(46.0)  # b empties last, at 46 s
    # the highest: at 10 s, a has drained to 100 - 100/6 and b starts at 60
    assert level.quantile(1.0) == pytest.approx((100 - 100 / 6 + 3 * 60) / 4)


def test_a_correction_lowers_the_level_until_the_next_decision_and_never_below_zero() -> None:
    corrections = (np.array([3.0, 4.0]), np.array([-10.0, -50.0]))
    level = bucket_level((np.array([0.0, 10.0]), np.array([20.0, 40.0])), corrections, end=20.0)
    # 0-3 s: 20 -> 15; 3 s: 5; 4 s: 3.33 - 50 -> 0; 10 s: 40 (the logged level) -> 23.33 at 20 s
    area = 3 * 17.5 + 1 * (5 + 5 - 100 / 60) / 2 + 10 * (40 + 40 - 100 / 6) / 2
    assert level.mean() == pytest.approx(area / 20.0)
    assert level.time_above(20.0) == pytest.approx(10.0)


def test_decisions_before_the_first_attempt_and_after_the_end() -> None:
    # a decision 6 s before the window (its level carried in, drained by 10 %) and one after it (ignored)
    level = bucket_level((np.array([-6.0, 30.0]), np.array([40.0, 90.0])), NONE, end=12.0)
    assert level.edges[0] == 0.0 and level.edges[-1] == 12.0
    assert level.mean() == pytest.approx((30 + 10) / 2)
    assert level.mean() == pytest.approx(level.quantile(0.5))  # linear from 30 to 10


def test_a_ptu_deployment_that_starts_full_drains_from_its_initial_level() -> None:
    scenario = validate_scenario(
        {
            "backends": [
                {
                    "name": "b",
                    "deployments": {
                        "gpt-4o": {"ptu": 1, "ptu_tokens_per_minute": 1000, "ptu_initial_utilization": 60},
                        "idle": {"ptu": 1, "ptu_tokens_per_minute": 1000, "ptu_initial_utilization": 100},
                    },
                }
            ]
        }
    )
    # gpt-4o: 60 % at 0 s drains to 60 - 100/3 % by 20 s, then the logged 80 % at 20 s drains to 0 by 68 s;
    # idle: 100 % drains to 0 by 60 s. Each holds half the capacity.
    log = _log([(T0 + 20, "b", "gpt-4o", 80.0)])
    figures = ptu_utilization(log, scenario, T0, 120.0)["b"]
    gpt_4o = (20 * (60 + 60 - 100 / 3) / 2 + 48 * 40) / 120
    assert figures["mean"] == pytest.approx((gpt_4o + 60 * 50 / 120) / 2)
    level = bucket_level((np.array([10.0]), np.array([50.0])), NONE, end=20.0, initial=30.0)
    assert level.mean() == pytest.approx((10 * (30 + 30 - 100 / 6) / 2 + 10 * (50 + 50 - 100 / 6) / 2) / 20)


def test_a_log_without_utilization_gives_no_figure() -> None:
    assert ptu_utilization(_log([(T0 + 1, "b", "d", None)]), None, T0, 60.0) == {}


def test_a_v1_request_naming_the_model_is_priced_by_the_deployment_that_serves_it() -> None:
    scenario = validate_scenario(
        {
            "backends": [
                {
                    "name": "b",
                    "deployments": {
                        "provisioned": {"model": "gpt-4o", "ptu": 2},
                        "standard": {"model": "gpt-4o"},
                    },
                    "cost": {"ptu_per_hour": 3.0, "prompt_per_1k": 1.0, "completion_per_1k": 2.0},
                }
            ],
            "workload": {"mixes": [{"deployment": "standard"}]},
        }
    )
    served = pd.DataFrame(
        {
            "backend": ["b", "b", "b", "other"],
            # the v1 route names the model: the mock serves it from the first deployment of gpt-4o (PTU)
            "deployment": ["gpt-4o", "standard", "provisioned", "standard"],
            "usage_prompt": [1000.0, 2000.0, 4000.0, 8000.0],
            "usage_completion": [100.0, 500.0, 400.0, 800.0],
        }
    )
    cost = run_cost(scenario, served, span=1800.0, goodput_tokens=10_000.0)
    assert cost is not None
    # PTU: 2 PTUs x 3.0 x 0.5 h; PAYG: only `standard` on b: 2 x 1.0 + 0.5 x 2.0
    assert cost["backends"]["b"] == pytest.approx({"ptu": 3.0, "payg": 3.0, "total": 6.0})
    assert cost["total"] == pytest.approx(6.0) and cost["currency"] == "USD"
    assert cost["per_1m_tokens"] == pytest.approx(600.0)
    assert run_cost(scenario, served, span=1800.0, goodput_tokens=0.0)["per_1m_tokens"] is None  # type: ignore[index]
