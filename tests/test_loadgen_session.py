"""One logical request over real loopback HTTP: streams read as they arrive, truncation, counted usage, retries."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from harness.clock import ScaledClock
from harness.loadgen.transport import Transport
from harness.scenario.workload import App
from harness.workload.requests import RequestPlan
from harness.workload.session import RunSettings, execute


class Scripted(BaseHTTPRequestHandler):
    """Answers each POST with the next scripted reply: ("sse", events, done) or (status, headers)."""

    protocol_version = "HTTP/1.1"
    script: ClassVar[list[Any]] = []
    seen: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        reply = type(self).script.pop(0)
        if reply[0] == "sse":
            _, events, done = reply
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for event in events:
                self._chunk(f"data: {json.dumps(event)}\n\n".encode())
                time.sleep(0.05)
            if done:
                self._chunk(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            self.close_connection = True
            return
        status, headers = reply
        body = (
            b'{"error": {"code": "429", "message": "slow down"}}'
            if status >= 400
            else b'{"usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}'
        )
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Scripted.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def delta(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}}], "usage": None}


def send(url: str, plan: RequestPlan, profile: str = "openai-python", scale: float = 1.0) -> tuple[Any, list[dict]]:
    clock = ScaledClock(scale)
    settings = RunSettings(run_id="t", clock=clock, client_profile=profile)
    transport = Transport(url, clock, timeout_s=30)
    records: list[dict] = []
    try:
        outcome = execute(plan, "u1", 1, transport, settings, random.Random(0), records.append)
    finally:
        transport.close()
    return outcome, records


STREAM = RequestPlan(App(id="a"), "chat", "chat", "gpt-4o", 30, 50, True, include_usage=False)


def test_stream_timings_and_counted_usage(server: str) -> None:
    Scripted.script = [
        ("sse", [{"choices": [], "prompt_filter_results": []}, delta("Hello"), delta(" world"), delta("!")], True)
    ]
    outcome, (record,) = send(server, STREAM)
    assert outcome.error_kind == "" and record["decision"] == "success"
    assert 0.04 <= record["ttft_s"] < 0.5  # the first content chunk came ~0.05 s in, not at the end
    assert 0.03 <= record["inter_token_s"] < 0.2
    assert record["latency_s"] >= record["ttft_s"] + 0.08
    assert record["usage_source"] == "counted_deltas" and record["usage_completion"] == 3  # "Hello", " world", "!"
    assert Scripted.seen[0]["x-stainless-retry-count"] == "0"


def test_stream_without_done_or_finish_reason_is_a_truncated_stream(server: str) -> None:
    Scripted.script = [("sse", [delta("Hel"), delta("lo")], False)]
    outcome, (record,) = send(server, STREAM)
    assert outcome.error_kind == "truncated_stream"
    assert record["error_kind"] == "truncated_stream" and record["decision"] == "fail"
    assert outcome.failure == "truncated stream (cut, or ended with neither [DONE] nor a finish_reason)"


def test_retry_after_is_waited_in_scenario_time_and_every_attempt_recorded(server: str) -> None:
    Scripted.script = [(429, {"retry-after": "5", "policy-id": "DeploymentRatelimit-Requests"}), (200, {})]
    plan = RequestPlan(App(id="a"), "chat", "chat", "gpt-4o", 30, 50, False)
    started = time.monotonic()
    outcome, records = send(server, plan, scale=50.0)  # 5 scenario seconds = 0.1 wall seconds
    assert time.monotonic() - started < 2.0
    assert outcome.attempts == 2 and outcome.error_kind == ""
    assert [r["decision"] for r in records] == ["retry", "success"]
    assert records[0]["retry_wait_s"] == 5.0 and records[0]["retry_wait_source"] == "retry-after"
    assert records[0]["error_kind"] == "backend_429" and records[0]["policy_id"] == "DeploymentRatelimit-Requests"
    assert records[1]["usage_total"] == 7 and records[1]["usage_source"] == "body"
    assert [h["x-stainless-retry-count"] for h in Scripted.seen] == ["0", "1"]
    assert outcome.latency_s >= 5.0


def test_one_day_retry_after_through_each_profile(server: str) -> None:
    plan = RequestPlan(App(id="a"), "chat", "chat", "gpt-4o", 30, 50, False)
    day = (429, {"retry-after": "86400"})
    attempts = {}
    for profile in ("openai-python", "openai-python-legacy", "none"):
        Scripted.script = [day, day, day]
        outcome, _ = send(server, plan, profile=profile, scale=100.0)
        attempts[profile] = outcome.attempts
    assert attempts == {"openai-python": 1, "openai-python-legacy": 3, "none": 1}


def test_connection_refused_is_a_connection_error() -> None:
    plan = RequestPlan(App(id="a"), "chat", "chat", "gpt-4o", 30, 50, False)
    outcome, records = send("http://127.0.0.1:9", plan, profile="none")
    assert outcome.error_kind == "connection" and records[0]["status"] == 0
