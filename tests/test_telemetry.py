"""OpenTelemetry: with an OTLP endpoint set, a short headless run sends one trace per logical request holding
its client attempts, the gateway's span and the backend's, linked by traceparent, with GenAI usage attributes
equal to records.csv and counted once; the attempts' spans carry the GenAI conventions' attributes (the lists
below are the conventions' own), every error span an `error.type`; the gateway's token metrics arrive as OTLP
metrics too. The receiver is on loopback and keeps what it is sent in memory."""

from __future__ import annotations

import os
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest
from loadgen_helpers import LOCUST, LOCUSTFILE, ROOT
from otlp_receiver import OtlpReceiver, ReceivedSpan

from harness import telemetry
from harness.records import read_records
from harness.report.load import read_json_lines

# one worker runs every test of the module (conftest.ONE_RUN_MODULES), so its one run (traced_run) is made once
pytestmark = pytest.mark.e2e

# The GenAI semantic conventions (v1.37, gen-ai-spans.md), as they list a client inference span's attributes
# (chat, text_completion) and an embeddings span's, by requirement level.
INFERENCE_REQUIRED = {"gen_ai.operation.name", "gen_ai.provider.name"}
INFERENCE_CONDITIONAL = {
    "error.type",  # if the operation ended in an error
    "gen_ai.conversation.id",
    "gen_ai.output.type",
    "gen_ai.request.choice.count",
    "gen_ai.request.model",
    "gen_ai.request.seed",
    "server.port",  # if server.address is set
}
INFERENCE_RECOMMENDED = {
    "gen_ai.request.frequency_penalty",
    "gen_ai.request.max_tokens",
    "gen_ai.request.presence_penalty",
    "gen_ai.request.stop_sequences",
    "gen_ai.request.temperature",
    "gen_ai.request.top_k",
    "gen_ai.request.top_p",
    "gen_ai.response.finish_reasons",
    "gen_ai.response.id",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "server.address",
}
EMBEDDINGS_REQUIRED = INFERENCE_REQUIRED
EMBEDDINGS_ALLOWED = EMBEDDINGS_REQUIRED | {
    "error.type",
    "gen_ai.request.model",
    "server.port",
    "gen_ai.embeddings.dimension.count",
    "gen_ai.request.encoding_formats",
    "gen_ai.usage.input_tokens",
    "server.address",
}
OPERATIONS = {"chat", "text_completion", "embeddings"}
PROVIDER = "azure.ai.openai"  # the conventions' value for Azure OpenAI
# attributes of other conventions a client span may carry besides: HTTP's status code
OTHER_CONVENTIONS = {"http.response.status_code"}
SPAN_KIND_CLIENT = 3


@pytest.fixture(scope="module")
def traced_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ReceivedSpan], dict]:
    run_dir = tmp_path_factory.mktemp("otel") / "run"
    with OtlpReceiver() as receiver:
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "200",  # export spans every 0.2 s rather than 5 s
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        }
        command = [
            LOCUST, "-f", str(LOCUSTFILE), "--headless", "--only-summary",
            "-u", "3", "-r", "3", "-t", "4s", "--scenario", str(ROOT / "scenarios" / "max-tokens-drain.yaml"),
            "--set", "run.time_scale=30", "--run-dir", str(run_dir),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=90, env=env, cwd=run_dir.parent)
        assert result.returncode == 0, result.stderr[-2000:]
        time.sleep(0.5)  # the last batches are posted as the processes exit
        with receiver.received.lock:
            return run_dir, list(receiver.received.spans), dict(receiver.received.metrics)


def test_each_logical_request_is_one_trace_with_attempts_gateway_and_backend(traced_run) -> None:
    run_dir, spans, _ = traced_run
    records = read_records(run_dir / "records.csv")
    by_id = {s.span_id: s for s in spans}
    children: dict[str, list[ReceivedSpan]] = defaultdict(list)
    for span in spans:
        children[span.parent_id].append(span)
    roots = {s.attributes[telemetry.LOGICAL_ID]: s for s in spans if s.service == "harness-loadgen" and not s.parent_id}
    attempts_of: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        attempts_of[record["logical_id"]].append(record)
    assert any(len(a) > 1 for a in attempts_of.values()), "the run should have retried something"
    # every logical request that ended is a trace (a request cut at the end of the run may have no root yet)
    assert set(roots) >= {lid for lid, a in attempts_of.items() if a[-1]["decision"] != "retry"}
    for logical_id, root in roots.items():
        attempt_spans = {s.attributes[telemetry.ATTEMPT]: s for s in children[root.span_id]}
        assert sorted(attempt_spans) == sorted(r["attempt"] for r in attempts_of[logical_id])
        for record in attempts_of[logical_id]:
            span = attempt_spans[record["attempt"]]
            assert span.trace_id == root.trace_id
            assert span.attributes.get(telemetry.GEN_AI_USAGE_INPUT_TOKENS) == record["usage_prompt"]
            assert span.attributes.get(telemetry.GEN_AI_USAGE_OUTPUT_TOKENS) == record["usage_completion"]
            assert span.attributes[telemetry.OUTCOME] == (record["error_kind"] or "success")
            gateway = [s for s in children[span.span_id] if s.service == "harness-gateway"]
            assert len(gateway) == 1 and gateway[0].trace_id == root.trace_id
            backend = [s for s in children[gateway[0].span_id] if s.service == "harness-mock"]
            assert len(backend) == 1, "the gateway's span is the backend span's parent"
            assert backend[0].attributes[telemetry.HTTP_STATUS] == record["status"]
            if record["status"] == 200:
                assert backend[0].attributes["harness.usage.output_tokens"] == record["usage_completion"]
                assert gateway[0].attributes[telemetry.BACKEND] == record["backend"]
    assert all(s.parent_id in by_id or s.service == "harness-loadgen" for s in spans)


def test_the_gateways_token_metrics_arrive_as_otlp_metrics(traced_run) -> None:
    run_dir, _, metrics = traced_run
    points = metrics.get(telemetry.GATEWAY_TOKENS)
    assert points, "no gateway token metric received"
    log = read_json_lines(run_dir / "gateway.jsonl", None, [])
    answered = log[(log["kind"] == "request") & (log["status"] == 200)]
    # a cumulative counter: the last point of each series holds its total
    last: dict[tuple, float] = {}
    for attributes, value in points:
        last[tuple(sorted(attributes.items()))] = value
    total_input = sum(v for k, v in last.items() if dict(k)[telemetry.GEN_AI_TOKEN_TYPE] == "input")
    total_output = sum(v for k, v in last.items() if dict(k)[telemetry.GEN_AI_TOKEN_TYPE] == "output")
    assert total_input == answered["prompt_tokens"].sum()
    assert total_output == answered["completion_tokens"].sum()


def _attempt_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if s.service == "harness-loadgen" and s.kind == SPAN_KIND_CLIENT]


def test_attempt_spans_carry_the_genai_conventions_attributes_and_no_others(traced_run) -> None:
    run_dir, spans, _ = traced_run
    records = {r["request_id"]: r for r in read_records(run_dir / "records.csv")}
    attempts = _attempt_spans(spans)
    assert len(attempts) == len(records)
    answered = errors = 0
    for span in attempts:
        attributes = span.attributes
        record = records[f"{attributes[telemetry.LOGICAL_ID]}:{attributes[telemetry.ATTEMPT]}"]
        operation = attributes["gen_ai.operation.name"]
        assert operation in OPERATIONS and attributes["gen_ai.provider.name"] == PROVIDER
        assert span.name == f"{operation} {attributes['gen_ai.request.model']}"
        if operation == "embeddings":
            required, allowed = EMBEDDINGS_REQUIRED, EMBEDDINGS_ALLOWED
        else:
            required = INFERENCE_REQUIRED
            allowed = INFERENCE_REQUIRED | INFERENCE_CONDITIONAL | INFERENCE_RECOMMENDED
        conventional = {k for k in attributes if not k.startswith("harness.")}
        assert required <= conventional and conventional - allowed - OTHER_CONVENTIONS == set(), span.name
        # server.port if server.address is set; both name the gateway the load generator called
        assert attributes["server.address"] == "127.0.0.1" and isinstance(attributes["server.port"], int)
        if record["error_kind"]:
            errors += 1
            assert span.error and attributes["error.type"] == record["error_kind"]
        else:
            assert not span.error and "error.type" not in attributes
        if record["status"] == 200 and not record["error_kind"]:
            answered += 1
            assert attributes["gen_ai.response.id"] and attributes["gen_ai.response.model"]
            if operation != "embeddings":
                assert attributes["gen_ai.response.finish_reasons"]
    assert answered and errors, "the run should have both answers and refusals"


def test_every_error_span_of_every_service_says_its_error_type(traced_run) -> None:
    _, spans, _ = traced_run
    error_spans = [s for s in spans if s.error]
    assert {s.service for s in error_spans} == {"harness-loadgen", "harness-gateway", "harness-mock"}
    assert all(s.attributes.get("error.type") for s in error_spans)
    # server spans say which address they were called on
    for span in spans:
        if span.service != "harness-loadgen":
            assert span.attributes["server.address"] == "127.0.0.1" and span.attributes["server.port"] > 0


def test_usage_summed_over_every_span_of_the_run_equals_records_csv(traced_run) -> None:
    run_dir, spans, _ = traced_run
    records = read_records(run_dir / "records.csv")
    recorded = sum((r["usage_prompt"] or 0) + (r["usage_completion"] or 0) for r in records)
    counted = sum(
        s.attributes.get(telemetry.GEN_AI_USAGE_INPUT_TOKENS, 0)
        + s.attributes.get(telemetry.GEN_AI_USAGE_OUTPUT_TOKENS, 0)
        for s in spans
    )
    assert recorded > 0 and counted == recorded
    # only the attempts' client spans carry usage: the root, the gateway's and the backend's spans do not
    holders = {(s.service, s.kind) for s in spans if telemetry.GEN_AI_USAGE_INPUT_TOKENS in s.attributes}
    assert holders == {("harness-loadgen", SPAN_KIND_CLIENT)}
    # the servers' own counts stay, under the harness's names
    assert any("harness.usage.input_tokens" in s.attributes for s in spans if s.service == "harness-gateway")
