"""OpenTelemetry: with an OTLP endpoint set, a short headless run sends one trace per logical request holding
its client attempts, the gateway's span and the backend's, linked by traceparent, with GenAI usage attributes
equal to records.csv; the gateway's token metrics arrive as OTLP metrics too. The receiver is on loopback."""

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

pytestmark = pytest.mark.e2e


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
                assert backend[0].attributes[telemetry.GEN_AI_USAGE_OUTPUT_TOKENS] == record["usage_completion"]
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
