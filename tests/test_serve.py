"""`harness serve --only mock` as a subprocess: ready lines, scaled time, log flushing, clean stop, errors."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import run_harness

pytestmark = pytest.mark.e2e

API = "?api-version=2024-10-21"
TWO_MOCKS_AND_A_REAL_ONE = """
backends:
  - {name: east, region: East US, deployments: {gpt-4o: {latency: {ttft: 0, per_token: 0}}, emb: {model: text-embedding-3-small}}}
  - {name: west, region: West Europe, deployments: {gpt-4o: {latency: {ttft: 0, per_token: 0}}}}
  - {name: real, url: "https://example.invalid", deployments: {gpt-4o: {}}}
"""


def chat(url: str, **body: object) -> httpx.Response:
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return httpx.post(f"{url}/openai/deployments/gpt-4o/chat/completions{API}", json=body, timeout=10)


def test_ready_lines_on_stdout_and_in_the_ready_file(serve_stack) -> None:
    stack = serve_stack(TWO_MOCKS_AND_A_REAL_ONE)
    stdout_lines = [json.loads(line) for line in stack.stdout.splitlines()]
    assert stdout_lines == stack.ready
    assert [line["name"] for line in stack.ready] == ["east", "west"]  # the one with a url is not started
    east = stack.server("east")
    assert east == {
        "role": "mock",
        "name": "east",
        "url": east["url"],
        "region": "East US",
        "deployments": ["gpt-4o", "emb"],
    }
    assert east["url"].startswith("http://127.0.0.1:")
    assert stack.url("east") != stack.url("west")
    for line in stack.ready:  # every announced server already listens
        assert chat(line["url"], max_tokens=3).headers["x-ms-region"] == line["region"]
    assert not list(stack.ready_file.parent.glob(".*.tmp"))  # written by rename, no temp left behind


def test_sigterm_stops_cleanly_with_the_log_complete(serve_stack) -> None:
    scenario = """
backends:
  - name: east
    deployments:
      gpt-4o: {tpm: 1000000, latency: {ttft: 0, per_token: 0}}
      slow: {model: gpt-4o, latency: {ttft: 0.3, per_token: 0.03}, completion_tokens: 20}
"""
    stack = serve_stack(scenario)
    url = stack.url("east")
    with httpx.Client(timeout=10) as client:
        for _ in range(40):
            client.post(
                f"{url}/openai/deployments/gpt-4o/chat/completions{API}",
                json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3},
            )
    streamed: list[str] = []
    started = threading.Event()

    def stream() -> None:
        body = {"messages": [{"role": "user", "content": "Hi"}], "stream": True}
        with httpx.stream("POST", f"{url}/openai/deployments/slow/chat/completions{API}", json=body, timeout=10) as r:
            started.set()
            streamed.extend(line for line in r.iter_lines() if line)

    reader = threading.Thread(target=stream)
    reader.start()
    assert started.wait(10)
    assert stack.stop(signal.SIGTERM) == 0  # while the stream is still being generated
    reader.join(10)
    assert streamed[-1] == "data: [DONE]"  # the open stream was allowed to finish
    rows = stack.log_rows()
    assert len(rows) == 41
    assert rows[-1]["deployment"] == "slow" and rows[-1]["completion_tokens"] == 20
    assert "Traceback" not in stack.stderr


def test_ctrl_c_also_exits_0(serve_stack) -> None:
    stack = serve_stack("backends: [{name: east}]")
    assert stack.stop(signal.SIGINT) == 0


def test_log_is_flushed_within_a_second_while_running(serve_stack) -> None:
    stack = serve_stack("backends: [{name: east, deployments: {gpt-4o: {latency: {ttft: 0, per_token: 0}}}}]")
    assert chat(stack.url("east"), max_tokens=2).status_code == 200
    deadline = time.monotonic() + 3.0
    while not stack.log_rows() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(stack.log_rows()) == 1
    assert stack.proc.poll() is None


@pytest.mark.serial  # the logged duration within 25 wall ms of the scenario's
def test_latency_runs_in_scenario_time_compressed_by_the_time_scale(serve_stack) -> None:
    scenario = """
run: {time_scale: 20}
backends: [{name: east, deployments: {gpt-4o: {latency: {ttft: 4.0, per_token: 0}, completion_tokens: 5}}}]
"""
    stack = serve_stack(scenario)
    began = time.monotonic()
    response = chat(stack.url("east"))
    wall = time.monotonic() - began
    assert response.status_code == 200
    assert 0.15 <= wall < 1.5  # 4 scenario seconds at 20x is 0.2 wall seconds
    stack.stop()
    assert stack.log_rows()[0]["duration_s"] == pytest.approx(4.0, abs=0.5)


def test_a_fixed_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        scenario = tmp_path / "s.yaml"
        scenario.write_text(f"backends: [{{name: east}}, {{name: west, port: {port}}}]")
        result = run_harness(["serve", "--scenario", str(scenario), "--only", "mock"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"harness serve: error: backend west: cannot listen on 127.0.0.1:{port}: the port is already in use"
    )
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # nothing announced


def test_a_bad_scenario_is_a_one_line_error(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("backends: [{name: east, deployments: {gpt-4o: {tpm: -5}}}]")
    result = run_harness(["serve", "--scenario", str(scenario), "--only", "mock"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"harness serve: error: {scenario}: backends[0].deployments.gpt-4o.tpm: must be a positive integer"
    ]


def test_only_gateway_needs_a_url_for_every_backend(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("backends: [{name: east, url: 'http://127.0.0.1:9'}, {name: west}]")
    result = run_harness(["serve", "--scenario", str(scenario), "--only", "gateway"], cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "backends[1] (west)" in lines[0] and "url" in lines[0]


def test_without_only_the_gateway_is_started_in_front_of_the_mocks(serve_stack) -> None:
    scenario = "backends: [{name: east, deployments: {gpt-4o: {latency: {ttft: 0, per_token: 0}}}}]"
    stack = serve_stack(scenario, only=None)
    assert [line["role"] for line in stack.ready] == ["mock", "gateway"]
    gateway = stack.server("gateway")
    assert gateway["backends"] == ["east"] and gateway["url"] != stack.url("east")
    assert chat(gateway["url"], max_tokens=3).status_code == 200
    assert stack.stop() == 0
    assert len(stack.log_rows("backend.jsonl")) == 1
    assert any(row.get("kind") == "request" for row in stack.log_rows("gateway.jsonl"))


def test_idle_keep_alive_connections_stay_usable_and_headers_go_out_once(serve_stack) -> None:
    """A pooled connection left idle longer than uvicorn's default 5 s still works, to the mock and through
    the gateway; a relayed answer carries one `date` and one `server` header, not the backend's as well.
    (The keep-alive setting is 240 s; waiting a full minute here would only slow the suite down.)"""
    import http.client

    scenario = "backends: [{name: east, deployments: {gpt-4o: {latency: {ttft: 0, per_token: 0}}}}]"
    stack = serve_stack(scenario, only=None)
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
    path = f"/openai/deployments/gpt-4o/chat/completions{API}"
    connections = []
    for name in ("east", "gateway"):
        url = httpx.URL(stack.url(name) if name != "gateway" else stack.server("gateway")["url"])
        connection = http.client.HTTPConnection(url.host, url.port, timeout=10)
        connection.request("POST", path, body, {"content-type": "application/json"})
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 200
        if name == "gateway":
            assert len(answer.headers.get_all("date") or []) == 1
            assert len(answer.headers.get_all("server") or []) == 1
        connections.append(connection)
    time.sleep(6.5)  # idle past uvicorn's default keep-alive timeout
    for connection in connections:
        connection.request("POST", path, body, {"content-type": "application/json"})  # the same socket
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 200
        connection.close()


def test_a_server_does_not_check_the_workload_it_does_not_send(serve_stack) -> None:
    """`--only mock` serves its deployments even when the scenario's workload names one another process
    serves; loading the scenario to send that workload still refuses it, with the path."""
    from harness.errors import ScenarioError
    from harness.scenario import load_scenario_text

    scenario = (
        "backends: [{name: east, deployments: {gpt-4o: {latency: {ttft: 0, per_token: 0}}}}]\n"
        "workload: {mixes: [{deployment: served-elsewhere}]}\n"
    )
    stack = serve_stack(scenario)
    assert chat(stack.url("east"), max_tokens=3).status_code == 200
    with pytest.raises(ScenarioError, match=r"workload\.mixes\[0\]\.deployment: unknown deployment 'served-elsewhere'"):
        load_scenario_text(scenario)
