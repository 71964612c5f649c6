"""`harness compare`: headline numbers side by side, overlaid figures, the differing setting named."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml
from test_report_metrics import write_synthetic_run

from harness.cli import main
from harness.report.compare import flatten


def _run(root: Path, name: str, trip: str, seed: int) -> Path:
    run_dir = root / name
    write_synthetic_run(run_dir, seed=seed)
    scenario = yaml.safe_load((run_dir / "scenario.yaml").read_text())
    scenario["run"]["name"] = name  # differs, but is not a setting
    scenario["gateway"]["circuit_breaker"] = {"tripDuration": trip}
    (run_dir / "scenario.yaml").write_text(yaml.safe_dump(scenario))
    info = {"run_id": name, "overrides": [f"gateway.circuit_breaker.tripDuration={trip}"]}
    (run_dir / "run.json").write_text(json.dumps(info))
    return run_dir


def test_compare_names_the_differing_setting_and_puts_numbers_side_by_side(tmp_path: Path) -> None:
    runs = [_run(tmp_path, "a", "PT10S", 1), _run(tmp_path, "b", "PT1M", 2), _run(tmp_path, "c", "PT2M", 3)]
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    result = json.loads((out / "compare.json").read_text())
    assert result["differing"] == ["gateway.circuit_breaker.tripDuration"]
    labels = [r["label"] for r in result["runs"]]
    assert labels == [f"gateway.circuit_breaker.tripDuration={t}" for t in ("PT10S", "PT1M", "PT2M")]
    for run_dir, entry in zip(runs, result["runs"], strict=True):
        assert main(["report", str(run_dir)]) == 0
        alone = json.loads((run_dir / "summary.json").read_text())
        assert entry["summary"]["requests"] == alone["requests"]
        assert entry["summary"]["throughput"] == alone["throughput"]
    # the runs were built from different seeds, so the table must show different numbers
    assert len({r["summary"]["requests"]["attempts"] for r in result["runs"]}) == 3
    page = (out / "compare.html").read_text()
    for label in labels:
        assert label in page
    for name in ("compare_timeline", "compare_latency"):
        data = (out / f"{name}.png").read_bytes()
        assert data.startswith(b"\x89PNG") and base64.b64encode(data).decode() in page
    assert f"{result['runs'][1]['summary']['requests']['attempts']:,}" in page


def test_compare_needs_two_runs(tmp_path: Path, capsys) -> None:
    assert main(["compare", str(tmp_path)]) == 2
    assert "at least two run directories" in capsys.readouterr().err


def test_flatten_spells_paths_like_overrides() -> None:
    data = {"gateway": {"circuit_breaker": {"failureCondition": {"statusCodeRanges": [{"min": 429, "max": 429}]}}}}
    assert flatten(data) == {
        "gateway.circuit_breaker.failureCondition.statusCodeRanges[0].min": 429,
        "gateway.circuit_breaker.failureCondition.statusCodeRanges[0].max": 429,
    }


def _summary(rate_429: float, goodput: float) -> dict:
    return {"requests": {"rate_429": rate_429}, "throughput": {"goodput_tpm": goodput}}


def test_fidelity_holds_within_2_points_of_429_rate_and_5_percent_of_goodput() -> None:
    from harness.report.compare import fidelity

    reference = _summary(0.20, 10_000.0)
    assert fidelity(reference, _summary(0.219, 10_490.0))["holds"]
    assert fidelity(reference, _summary(0.181, 9_510.0))["holds"]
    assert not fidelity(reference, _summary(0.225, 10_000.0))["holds"]
    assert not fidelity(reference, _summary(0.20, 9_400.0))["holds"]
    result = fidelity(reference, _summary(0.25, 11_000.0))
    assert result["rate_429_diff_pp"] == pytest.approx(5.0) and result["goodput_diff_pct"] == pytest.approx(10.0)
