"""Loadgen units: stage plan and pacing, trace replay, prompts of exact size, credentials, light start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.scenario.workload import App, Stage, Trace, Workload
from harness.tokens import count_chat_tokens, count_text_tokens
from harness.workload.prompts import chat_messages, text_of_tokens
from harness.workload.requests import RequestPlan, auth_headers, replay_request, unsigned_token
from harness.workload.shape import StagePlan, pacing_wait
from harness.workload.trace import TraceRow, load_trace, parse_trace_text


def test_stage_plan_follows_scenario_time() -> None:
    plan = StagePlan([Stage(duration=30, users=2), Stage(duration=60, users=8, spawn_rate=2, rate=4)])
    first, second = plan.at(0), plan.at(30)
    assert first is not None and (first.users, first.spawn_rate, first.rate) == (2, 2.0, None)
    assert second is not None and (second.users, second.spawn_rate, second.rate) == (8, 2.0, 4.0)
    assert plan.at(89.9) is not None and plan.at(90) is None
    assert plan.total_s == 90


def test_pacing_gives_the_target_rate_across_users() -> None:
    # 8 users at 4 requests/s: each user starts one request every 2 s
    assert pacing_wait(4.0, 8, 0.0) == 2.0
    assert pacing_wait(4.0, 8, 0.5) == 1.5
    assert pacing_wait(4.0, 8, 3.0) == 0.0  # late: go at once
    assert pacing_wait(None, 8, 0.0) == 0.0


def test_trace_csv_and_json_lines_replay_in_time_order(tmp_path: Path) -> None:
    csv_text = (
        "offset_s,app,operation,prompt_tokens,max_tokens,stream\n5,b,embeddings,30,,false\n1,a,chat,20,100,true\n"
    )
    rows = parse_trace_text(csv_text, "t.csv")
    assert [(r.offset_s, r.app, r.operation, r.max_tokens, r.stream) for r in rows] == [
        (1.0, "a", "chat", 100, True),
        (5.0, "b", "embeddings", None, False),
    ]
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"t": 2, "app": "a", "operation": "completions", "prompt_tokens": 9, "stream": true}\n')
    (row,) = load_trace(jsonl)
    assert (row.offset_s, row.operation, row.prompt_tokens, row.stream) == (2.0, "completions", 9, True)


def test_bad_trace_row_names_file_and_line() -> None:
    with pytest.raises(ScenarioError, match=r"t.csv:3: operation must be one of"):
        parse_trace_text("offset_s,app,operation\n1,a,chat\n2,a,images\n", "t.csv")
    with pytest.raises(ScenarioError, match=r"t.csv:2: offset_s must be a number"):
        parse_trace_text("offset_s,app\nsoon,a\n", "t.csv")


def test_trace_row_of_an_unknown_app_names_file_and_line() -> None:
    text = "offset_s,app,operation\n1,a,chat\n2,,chat\n3,typo,chat\n"
    with pytest.raises(ScenarioError, match=r"^t.csv:4: app 'typo' is not one of the workload's apps \(a, b\)$"):
        parse_trace_text(text, "t.csv", apps=["a", "b"])
    assert [r.app for r in parse_trace_text(text, "t.csv")] == ["a", "", "typo"]  # no apps given: no check


def test_trace_row_of_an_unknown_deployment_names_file_and_line() -> None:
    text = "offset_s,app,deployment\n1,a,gpt-4o\n2,a,gpt-5\n"
    with pytest.raises(ScenarioError, match=r"^t.csv:3: deployment 'gpt-5' is not one the backends have \(gpt-4o\)$"):
        parse_trace_text(text, "t.csv", deployments={"gpt-4o"})
    assert [r.deployment for r in parse_trace_text(text, "t.csv")] == ["gpt-4o", "gpt-5"]  # none given: no check


def test_trace_rows_become_requests_of_the_workloads_apps() -> None:
    workload = Workload(
        apps=[App(id="a"), App(id="b", client_profile="none")], trace=Trace(file="t.csv", deployment="gpt-4o")
    )
    chat = replay_request(TraceRow(1.0, "b", "chat", 40, 64, True, deployment="gpt-35"), workload)
    assert chat.app is workload.apps[1] and chat.app.client_profile == "none"
    assert (chat.operation, chat.deployment, chat.prompt_tokens, chat.max_tokens, chat.stream) == (
        "chat",
        "gpt-35",
        40,
        64,
        True,
    )
    assert chat.request_type == "chat stream"
    # an embeddings row sends (and records) neither max_tokens nor stream, whatever the trace says
    embeddings = replay_request(TraceRow(2.0, "", "embeddings", 30, 50, True), workload)
    assert embeddings.app is workload.apps[0] and embeddings.deployment == "gpt-4o"
    assert (embeddings.max_tokens, embeddings.stream, embeddings.request_type) == (None, False, "embeddings")
    assert "max_tokens" not in embeddings.body("deployments") and "stream" not in embeddings.body("deployments")


@pytest.mark.parametrize("tokens", [1, 7, 50, 333, 2000])
def test_prompts_have_the_exact_token_count(tokens: int) -> None:
    assert count_text_tokens(text_of_tokens(tokens, "gpt-4o"), "gpt-4o") == tokens
    if tokens > 10:
        assert count_chat_tokens(chat_messages(tokens, "gpt-4o"), "gpt-4o") == tokens


def test_request_body_and_route() -> None:
    plan = RequestPlan(App(id="a"), "chat", "chat", "gpt-4o", 40, 64, True, include_usage=True)
    body = plan.body("v1")
    assert body["model"] == "gpt-4o" and body["max_tokens"] == 64
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert plan.path("2024-10-21", "v1") == "/openai/v1/chat/completions"
    assert plan.request_type == "chat stream"
    assert plan.counted_prompt_tokens(body) == 40
    embeddings = RequestPlan(App(id="a"), "emb", "embeddings", "gpt-4o", 10, None, False)
    assert set(embeddings.body("deployments")) == {"input"}


def test_credentials_carry_the_appid_claim() -> None:
    import jwt

    headers = auth_headers(App(id="team-a", appid="1111-2222"), api_key="k", bearer=None)
    assert headers["api-key"] == "k"
    token = headers["authorization"].removeprefix("Bearer ")
    assert jwt.decode(token, options={"verify_signature": False})["appid"] == "1111-2222"
    assert auth_headers(App(id="a"), None, bearer="real")["authorization"] == "Bearer real"
    assert unsigned_token({"appid": "x"}).endswith(".")


def test_locust_start_up_does_not_import_pandas(tmp_path: Path) -> None:
    # the report package summarizes at the end of a run; a Locust process must not pay for pandas to start
    code = "import sys, harness.loadgen.plugin; print(sorted(m for m in ('pandas', 'matplotlib') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
