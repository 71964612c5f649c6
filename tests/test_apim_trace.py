"""`harness trace import` keeps the traffic that matters for throttling: requests APIM refused (a GatewayLogs
row and no LLM row), 429s whose LLM row counts no tokens, embeddings known only by their Url, logs in the
AzureDiagnostics shape, and says in one line per kind what it kept and dropped.

The logs are built here: 40 served requests (some with message rows), 3 refused with an LLM row of zero
tokens, 12 refused with no LLM row at all.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness.apim.llm_log import PRODUCTION_STATUS_COLUMN
from harness.cli import main
from harness.sim.run import simulate

START = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
BYTES_PER_TOKEN = 3.5  # the served requests' RequestSize / PromptTokens
URL = "https://apim.example.net/openai/deployments/{d}/{op}?api-version=2024-10-21"


def logs() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    llm, gateway = [], []
    for i in range(40):
        cid, when = f"cid-{i:03d}", (START + timedelta(seconds=5 * i)).isoformat()
        embeddings = i % 10 == 9
        deployment = "text-embedding-3-small" if embeddings else "gpt-4o"
        prompt = 200 + 10 * i
        llm.append({"TimeGenerated": when, "CorrelationId": cid, "DeploymentName": deployment, "ModelName": deployment,
                    "IsStreamCompletion": False, "PromptTokens": prompt, "CompletionTokens": 0 if embeddings else 100 + i,
                    "TotalTokens": prompt, "OperationName": ""})  # fmt: skip
        if i % 4 == 0:  # a logged message: a row of its own, no token counts
            llm.append({"TimeGenerated": when, "CorrelationId": cid, "DeploymentName": deployment,
                        "RequestMessages": "[...]", "SequenceNumber": 1})  # fmt: skip
        gateway.append(
            {
                "TimeGenerated": when,
                "CorrelationId": cid,
                "ApimSubscriptionId": "team-a" if i % 2 else "team-b",
                "BackendId": "aoai-1",
                "ResponseCode": 200,
                "RequestSize": int(prompt * BYTES_PER_TOKEN),
                "Url": URL.format(d=deployment, op="embeddings" if embeddings else "chat/completions"),
                "OperationId": "embeddings_create" if embeddings else "ChatCompletions_Create",
            }
        )
    for i in range(3):  # refused by the token limit after the LLM row was written: zero tokens
        cid, when = f"zero-{i}", (START + timedelta(seconds=7 * i + 1)).isoformat()
        llm.append({"TimeGenerated": when, "CorrelationId": cid, "DeploymentName": "gpt-4o", "ModelName": "gpt-4o",
                    "IsStreamCompletion": False, "PromptTokens": 0, "CompletionTokens": 0, "TotalTokens": 0})  # fmt: skip
        gateway.append({"TimeGenerated": when, "CorrelationId": cid, "ApimSubscriptionId": "team-a",
                        "ResponseCode": 429, "RequestSize": 3500, "Url": URL.format(d="gpt-4o", op="chat/completions")})  # fmt: skip
    for i in range(12):  # refused before any LLM row: only the gateway knows them
        when = (START + timedelta(seconds=11 * i + 2)).isoformat()
        gateway.append(
            {
                "TimeGenerated": when,
                "CorrelationId": f"refused-{i:02d}",
                "ApimSubscriptionId": "" if i == 0 else "team-a",
                "ResponseCode": 403 if i % 4 == 3 else 429,
                "RequestSize": 1400 + 70 * i,
                "Url": URL.format(d="gpt-4o", op="chat/completions"),
            }
        )
    gateway.append({"TimeGenerated": START.isoformat(), "CorrelationId": "status-page", "ResponseCode": 200,
                    "Url": "https://apim.example.net/status"})  # fmt: skip
    return llm, gateway


def write(tmp_path: Path, shape: str = "tables") -> tuple[Path, Path]:
    llm, gateway = logs()
    if shape == "AzureDiagnostics":
        llm = [{"Category": "GatewayLlmLogs", **{_diagnostics(k): v for k, v in row.items()}} for row in llm]
        gateway = [{"Category": "GatewayLogs", **{_diagnostics(k): v for k, v in row.items()}} for row in gateway]
        gateway.append({"Category": "WebSocketConnectionLogs", "CorrelationId": "ws-1"})
    (tmp_path / "llm.json").write_text(json.dumps(llm), encoding="utf-8")
    (tmp_path / "gateway.json").write_text("\n".join(json.dumps(r) for r in gateway) + "\n", encoding="utf-8")
    return tmp_path / "llm.json", tmp_path / "gateway.json"


def _diagnostics(column: str) -> str:
    """AzureDiagnostics' spelling: camelCase with a type suffix, a few columns kept at the top level."""
    if column in ("TimeGenerated", "CorrelationId", "Category"):
        return column
    suffix = (
        "_d" if column in ("ResponseCode", "RequestSize", "PromptTokens", "CompletionTokens", "TotalTokens") else "_s"
    )
    return column[0].lower() + column[1:] + suffix


def run_import(tmp_path: Path, llm: Path, gateway: Path | None, out: str = "out") -> int:
    args = ["trace", "import", "--llm-log", str(llm), "--out-dir", str(tmp_path / out)]
    return main(args + (["--gateway-log", str(gateway)] if gateway else []))


def trace(tmp_path: Path, out: str = "out") -> list[dict[str, str]]:
    with (tmp_path / out / "trace.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_refused_requests_are_replayed_and_marked_refused_in_production(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_import(tmp_path, *write(tmp_path)) == 0
    out = capsys.readouterr().out
    rows = trace(tmp_path)
    refused = [r for r in rows if r[PRODUCTION_STATUS_COLUMN] not in ("", "200")]
    assert len(rows) == 55 and len(refused) == 15  # 40 served + 3 zero-token 429s + 12 with no LLM row
    assert sorted(r[PRODUCTION_STATUS_COLUMN] for r in refused).count("403") == 3
    assert "kept 55 of 56 requests (40 from the LLM log, 12 refused in production with no LLM log row, sized from " \
           "RequestSize, 3 refused in production (429), tokens estimated)" in out  # fmt: skip
    dropped = [line for line in out.splitlines() if "dropped" in line]
    assert len(dropped) == 1 and "10 message rows" in dropped[0]
    assert "1 gateway log rows answered without an LLM log row" in dropped[0]
    # each is sent in the replay
    run_dir = simulate(str(tmp_path / "out" / "scenario.yaml"), [], tmp_path / "run", report=False)
    with (run_dir / "records.csv").open(encoding="utf-8", newline="") as handle:
        sent = [r for r in csv.DictReader(handle) if r["attempt"] == "1"]
    assert len(sent) == 55


def test_refused_requests_carry_a_real_token_estimate(tmp_path: Path) -> None:
    assert run_import(tmp_path, *write(tmp_path)) == 0
    rows = {(r["offset_s"], r[PRODUCTION_STATUS_COLUMN]): r for r in trace(tmp_path)}
    refused = [r for (_, status), r in rows.items() if status not in ("", "200")]
    served_chat = [r for (_, status), r in rows.items() if status == "200" and r["operation"] == "chat"]
    completions = sorted(int(r["max_tokens"]) for r in served_chat)
    for row in refused:
        assert int(row["max_tokens"]) == completions[(len(completions) - 1) // 2]  # the served median
    sizes = {3500: 1000} | {1400 + 70 * i: round((1400 + 70 * i) / BYTES_PER_TOKEN) for i in range(12)}
    assert sorted(int(r["prompt_tokens"]) for r in refused) == sorted([1000, 1000, *sizes.values()])


def test_embeddings_are_recognised_from_the_url_and_operation_id(tmp_path: Path) -> None:
    assert run_import(tmp_path, *write(tmp_path)) == 0
    embeddings = [r for r in trace(tmp_path) if r["deployment"] == "text-embedding-3-small"]
    assert len(embeddings) == 4 and {r["operation"] for r in embeddings} == {"embeddings"}
    assert {r["max_tokens"] for r in embeddings} == {""}


def test_the_azure_diagnostics_shape_reads_like_the_resource_specific_tables(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert run_import(tmp_path, *write(tmp_path / "a"), out="tables") == 0
    assert run_import(tmp_path, *write(tmp_path / "b", "AzureDiagnostics"), out="diagnostics") == 0
    assert trace(tmp_path, "tables") == trace(tmp_path, "diagnostics")


def test_without_a_gateway_log_and_without_subscriptions_the_import_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    llm, _ = write(tmp_path)
    assert run_import(tmp_path, llm, None) == 0
    rows = trace(tmp_path)
    assert {r["app"] for r in rows} == {"no-subscription"}
    assert PRODUCTION_STATUS_COLUMN not in rows[0]  # nothing known to be refused without the gateway log
    assert "3 no tokens counted (refused?), sized like their peers" in capsys.readouterr().out
    assert all(int(r["prompt_tokens"]) >= 200 for r in rows)  # never a prompt of 0 tokens
    assert all(int(r["max_tokens"]) > 1 for r in rows if r["operation"] == "chat")


def test_a_gateway_log_without_correlation_ids_is_one_line_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    llm, _ = write(tmp_path)
    gateway = tmp_path / "gateway.csv"
    gateway.write_text("TimeGenerated,ResponseCode\n2026-11-24T14:00:00Z,429\n", encoding="utf-8")
    assert run_import(tmp_path, llm, gateway) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"harness trace: error: {gateway}:2: no CorrelationId: the gateway log is joined to the LLM log on it"
    ]
