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

ROOT = Path(__file__).resolve().parent.parent


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
    # columns and legends name each run by its setting, the path shortened to what tells it apart
    assert [r["name"] for r in result["runs"]] == [f"tripDuration={t}" for t in ("PT10S", "PT1M", "PT2M")]
    assert "<th>tripDuration=PT10S</th><th>tripDuration=PT1M</th><th>tripDuration=PT2M</th>" in page
    assert "<td>gateway.circuit_breaker.tripDuration</td>" in page and "run 1" not in page
    for name in ("compare_timeline", "compare_latency"):
        data = (out / f"{name}.png").read_bytes()
        assert data.startswith(b"\x89PNG") and base64.b64encode(data).decode() in page
    assert f"{result['runs'][1]['summary']['requests']['attempts']:,}" in page


def test_two_different_scenarios_compare_without_collapsed_figures(tmp_path: Path) -> None:
    # hundreds of settings differ: the runs are named by their directories and a table lists the settings
    # (tests run with filterwarnings=error, so a "constrained_layout not applied" warning fails here)
    runs = [_run(tmp_path, "a", "PT10S", 1), _run(tmp_path, "b", "PT1M", 2)]
    for run_dir, name in zip(runs, ("quickstart", "ptu-spillover"), strict=True):
        (run_dir / "scenario.yaml").write_text((ROOT / "scenarios" / f"{name}.yaml").read_text())
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    result = json.loads((out / "compare.json").read_text())
    assert len(result["differing"]) > 10
    page = (out / "compare.html").read_text()
    assert "<th>a</th><th>b</th>" in page and f"Settings that differ ({len(result['differing'])})" in page
    assert "run 1" not in page
    for name in ("compare_timeline", "compare_latency"):
        assert (out / f"{name}.png").stat().st_size > 10_000


def test_compare_without_out_writes_a_new_directory_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = [_run(tmp_path, "a", "PT10S", 1), _run(tmp_path, "b", "PT1M", 2)]
    monkeypatch.chdir(tmp_path)
    pages = []
    for _ in range(2):
        assert main(["compare", *map(str, runs)]) == 0
        pages.append(Path(capsys.readouterr().out.strip()))
    assert pages[0] != pages[1] and all(p.exists() and p.name == "compare.html" for p in pages)
    assert all(p.parent.parent == Path("reports") / "comparisons" for p in pages)
    assert not (tmp_path / "comparison").exists()


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
