"""`harness compare` finishes the thought: a per-backend split, each run's verdict, runs named by what sets them
apart (never "run 1 / run 2")."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.report.compare import short_paths
from harness.report.units import percent
from harness.sim import simulate

BREAKER = "scenarios/breaker-trip-duration.yaml"
TRIPS = ("PT30S", "PT1M")


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    root = tmp_path_factory.mktemp("compare")
    runs = [
        simulate(BREAKER, ["run.duration=120", f"gateway.circuit_breaker.tripDuration={trip}"], root / trip)
        for trip in TRIPS
    ]
    out = root / "cmp"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    return json.loads((out / "compare.json").read_text()), (out / "compare.html").read_text()


def _row(page: str, backend: str, measure: str) -> list[str]:
    start = page.index(f"<tr><td>{backend}</td><td>{html.escape(measure)}</td>")
    cells = page[start : page.index("</tr>", start)].split("<td>")[3:]
    return [cell.removesuffix("</td>") for cell in cells]


def test_the_per_backend_split_gives_each_runs_own_figures(compared: tuple[dict[str, Any], str]) -> None:
    result, page = compared
    assert "<h2>By backend</h2>" in page
    for backend in ("primary", "secondary"):
        attempts = [r["summary"]["by_backend"][backend]["attempts"] for r in result["runs"]]
        assert _row(page, backend, "attempts") == [f"{a:,}" for a in attempts]
        shares = [percent(r["summary"]["backends"][backend]["token_share"]) for r in result["runs"]]
        assert _row(page, backend, "token share") == shares
        trips = [(r["summary"]["breaker"].get(backend) or {}).get("trips", 0) for r in result["runs"]]
        assert _row(page, backend, "breaker trips") == [f"{t:,}" for t in trips]
    # the longer trip keeps the PTU primary out longer: fewer of its attempts, in this very table
    assert (
        result["runs"][0]["summary"]["by_backend"]["primary"]["attempts"]
        != (result["runs"][1]["summary"]["by_backend"]["primary"]["attempts"])
    )


def test_each_run_has_its_verdict_under_its_name(compared: tuple[dict[str, Any], str]) -> None:
    result, page = compared
    assert "<h2>Verdict per run</h2>" in page
    for run, trip in zip(result["runs"], TRIPS, strict=True):
        assert run["name"] == f"tripDuration={trip}"
        sentences = run["verdict"]
        assert sentences == run["summary"]["verdict"] and len(sentences) >= 2
        block = page[page.index(f"<h3>{run['name']}</h3>") :]
        assert " ".join(html.escape(s) for s in sentences) in block.split("</p>")[0]
        # the run against the scenario's own 1 % limit, with its own setting
        assert sentences[-1].startswith(
            f"Against the scenario's own limits with gateway.circuit_breaker.tripDuration={trip}"
        )


def test_runs_of_different_engines_are_named_by_it(tmp_path: Path) -> None:
    runs = [simulate(BREAKER, ["run.duration=30"], tmp_path / name) for name in ("x", "y")]
    info = json.loads((runs[1] / "run.json").read_text())
    (runs[1] / "run.json").write_text(json.dumps({**info, "engine": "live"}))
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    result = json.loads((out / "compare.json").read_text())
    assert [r["name"] for r in result["runs"]] == ["engine=sim", "engine=live"]


def test_short_paths_keep_just_enough_of_each_path_to_tell_them_apart() -> None:
    paths = ["gateway.circuit_breaker.tripDuration", "run.time_scale", "backends[0].tpm", "backends[1].tpm"]
    assert short_paths(paths) == {
        "gateway.circuit_breaker.tripDuration": "tripDuration",
        "run.time_scale": "time_scale",
        "backends[0].tpm": "backends[0].tpm",
        "backends[1].tpm": "backends[1].tpm",
    }
    assert short_paths(["a.x.tpm", "b.x.tpm"]) == {"a.x.tpm": "a.x.tpm", "b.x.tpm": "b.x.tpm"}
