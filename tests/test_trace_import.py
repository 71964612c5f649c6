"""`harness trace import`: APIM's LLM logs (Log Analytics exports) -> a trace and a scenario that replay them.

The export in tests/data/apim-logs is synthetic, written by the project: 60 requests over ten minutes.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import main
from harness.sim.run import simulate

DATA = Path(__file__).parent / "data" / "apim-logs"
LLM_LOG, GATEWAY_LOG = DATA / "ApiManagementGatewayLlmLog.csv", DATA / "ApiManagementGatewayLogs.json"


def exported_rows() -> list[dict[str, str]]:
    with LLM_LOG.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def export_time(text: str) -> datetime:
    return datetime.strptime(text, "%m/%d/%Y, %I:%M:%S.%f %p").replace(tzinfo=UTC)


def run_import(out: Path, *extra: str, llm: Path = LLM_LOG, gateway: Path | None = GATEWAY_LOG) -> int:
    args = ["trace", "import", "--llm-log", str(llm), "--out-dir", str(out), *extra]
    return main(args + (["--gateway-log", str(gateway)] if gateway else []))


def read_trace(out: Path) -> list[dict[str, str]]:
    with (out / "trace.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("rate", [1.0, 4.0])
def test_replay_sends_every_row_once_at_its_offset_with_its_deployment_and_stream_flag(
    tmp_path: Path, rate: float
) -> None:
    out = tmp_path / "replay"
    assert run_import(out, "--rate", str(rate)) == 0
    run_dir = simulate(str(out / "scenario.yaml"), [], tmp_path / "run", report=False)
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    with (run_dir / "records.csv").open(encoding="utf-8", newline="") as handle:
        sent = sorted((r for r in csv.DictReader(handle) if r["attempt"] == "1"), key=lambda r: float(r["t_scenario"]))
    exported = sorted(exported_rows(), key=lambda r: export_time(r["TimeGenerated [UTC]"]))
    assert len(sent) == len(exported) == 60  # every row once
    first = export_time(exported[0]["TimeGenerated [UTC]"])
    joined = {row["CorrelationId"]: row for row in json.loads(GATEWAY_LOG.read_text(encoding="utf-8"))}
    for row, record in zip(exported, sent, strict=True):
        offset = (export_time(row["TimeGenerated [UTC]"]) - first).total_seconds() / rate
        assert float(record["t_scenario"]) - info["load_started_at"] == pytest.approx(offset, abs=0.002)
        assert record["deployment"] == row["DeploymentName"]
        assert record["stream"] == row["IsStreamCompletion"]
        assert record["app_id"] == joined[row["CorrelationId"]]["ApimSubscriptionId"]


def test_the_scenario_has_a_backend_per_backend_id_and_a_deployment_per_name(tmp_path: Path) -> None:
    assert run_import(tmp_path / "out") == 0
    scenario = yaml.safe_load((tmp_path / "out" / "scenario.yaml").read_text(encoding="utf-8"))
    assert [b["name"] for b in scenario["backends"]] == ["openai-east", "openai-sweden"]
    assert set(scenario["backends"][0]["deployments"]) == {"gpt-4o", "gpt-4o-mini"}
    assert {a["id"] for a in scenario["workload"]["apps"]} == {"6f1c2b8e-sub-finance", "b93d77a0-sub-support"}
    assert scenario["workload"]["trace"]["file"] == "trace.csv"


def test_max_tokens_follows_the_stated_rule(tmp_path: Path) -> None:
    completions = sorted(int(r["CompletionTokens"]) for r in exported_rows())
    assert run_import(tmp_path / "factor", "--max-tokens", "completion:1.5") == 0
    factor = sorted(int(r["max_tokens"]) for r in read_trace(tmp_path / "factor"))
    assert factor == sorted(max(1, -(-c * 3 // 2)) for c in completions)
    assert run_import(tmp_path / "fixed", "--max-tokens", "fixed:800") == 0
    assert {r["max_tokens"] for r in read_trace(tmp_path / "fixed")} == {"800"}
    assert run_import(tmp_path / "unset", "--max-tokens", "unset") == 0
    assert {r["max_tokens"] for r in read_trace(tmp_path / "unset")} == {""}


def test_window_and_anonymised_apps(tmp_path: Path) -> None:
    assert (
        run_import(tmp_path / "w", "--from", "2026-11-24T14:02:00Z", "--to", "2026-11-24T14:05:00Z", "--anonymise") == 0
    )
    kept = [
        r for r in exported_rows()
        if datetime(2026, 11, 24, 14, 2, tzinfo=UTC) <= export_time(r["TimeGenerated [UTC]"])
        < datetime(2026, 11, 24, 14, 5, tzinfo=UTC)
    ]  # fmt: skip
    rows = read_trace(tmp_path / "w")
    assert len(rows) == len(kept) > 0
    assert {r["app"] for r in rows} <= {"app-1", "app-2"}


def test_bad_rows_are_summed_up_in_one_line_by_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = LLM_LOG.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].replace(",true,", ",maybe,").replace(",false,", ",maybe,")
    fields = lines[5].split(",")
    fields[6] = "lots"  # PromptTokens (the time holds one comma, so the fields shift by one)
    lines[5] = ",".join(fields)
    bad = tmp_path / "llm.csv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run_import(tmp_path / "out", llm=bad) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # no line per row
    assert "harness trace import: kept 58 of 60 requests (58 from the LLM log)" in captured.out
    assert (
        f"harness trace import: dropped 2 rows: 1 bad IsStreamCompletion (first at {bad}:4); "
        f"1 bad PromptTokens (first at {bad}:6)"
    ) in captured.out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not a JSON object"),
        ('{"tables": [{"columns": [{"name": "TimeGenerated"}], "rows": [["a", "b"]]}]}', "needs 1 values"),
        ("[1, 2]", "row 1: not a JSON object"),
    ],
)
def test_unreadable_exports_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    bad = tmp_path / "llm.json"
    bad.write_text(text, encoding="utf-8")
    assert run_import(tmp_path / "out", llm=bad, gateway=None) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "out" / "trace.csv").exists()


def test_the_query_api_shape_reads_like_the_csv(tmp_path: Path) -> None:
    rows = exported_rows()
    columns = list(rows[0])
    table: dict[str, Any] = {
        "tables": [
            {"columns": [{"name": c.replace(" [UTC]", "")} for c in columns],
             "rows": [[r[c] for c in columns] for r in rows]}
        ]
    }  # fmt: skip
    (tmp_path / "llm.json").write_text(json.dumps(table), encoding="utf-8")
    assert run_import(tmp_path / "a", llm=tmp_path / "llm.json") == 0
    assert run_import(tmp_path / "b") == 0
    assert read_trace(tmp_path / "a") == read_trace(tmp_path / "b")


def test_the_shipped_replay_scenario_is_the_imported_trace_at_four_times(tmp_path: Path) -> None:
    assert run_import(tmp_path / "x4", "--rate", "4") == 0
    shipped = Path(__file__).resolve().parents[1] / "scenarios" / "traces" / "apim-llm-log-x4.csv"
    assert (tmp_path / "x4" / "trace.csv").read_text(encoding="utf-8") == shipped.read_text(encoding="utf-8")
