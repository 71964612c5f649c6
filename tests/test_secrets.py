"""Nothing secret is written: a real short run (headless Locust, embedded mock pool and gateway) with subscription
keys, validate-jwt, a backend key given with --set and a run key given with --api-key; every file of the run
directory, its report and a /metrics scrape taken during the run are searched for each secret and for any token."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from harness.records import read_records
from harness.workload.rundir import REDACTED, is_redacted, redact_override, write_run_json, write_scenario_copy

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
LOCUST = str(Path(sys.executable).with_name("locust"))
RUN_TIMEOUT_S = 90

BACKEND_KEY = "backend-key-7f3a91c2d4e5"
RUN_API_KEY = "run-api-key-0b8e6d5c4a39"
SUBSCRIPTION_KEYS = {"team-a": "sub-key-a-5e1f0c9b8d7a", "team-b": "sub-key-b-4c2a9e8f7b61"}
SIGNING_SECRET = "jwt-signing-secret-3d9c1b7a5e2f80a4c6d8"
SECRETS = (BACKEND_KEY, RUN_API_KEY, *SUBSCRIPTION_KEYS.values(), SIGNING_SECRET)
JWT_PREFIX = "eyJ"  # every JWT starts with a base64 '{"'
EMBEDDED_IMAGE = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")  # report.html's figures

SCENARIO = f"""
run: {{duration: 60, time_scale: 20, seed: 1}}
backends:
  - name: east
    deployments: {{gpt-4o: {{tpm: 1000000, latency: {{ttft: 0.05, per_token: 0.001}}}}}}
gateway:
  auth:
    subscriptions:
      - {{id: team-a, key: {SUBSCRIPTION_KEYS["team-a"]}}}
      - {{id: team-b, key: {SUBSCRIPTION_KEYS["team-b"]}}}
    jwt: {{signing-secret: {SIGNING_SECRET}, audiences: [api://aoai]}}
  token_limit: {{tokens-per-minute: 1000000, counter-key: subscription}}
  metrics: {{dimensions: [subscription, app_id, model]}}
workload:
  users: 4
  think_time: 0.5
  apps:
    - {{id: app-a, subscription_key: {SUBSCRIPTION_KEYS["team-a"]}}}
    - {{id: app-b, subscription_key: {SUBSCRIPTION_KEYS["team-b"]}}}
  mixes: [{{deployment: gpt-4o, prompt_tokens: 30, max_tokens: 10, stream_share: 0.5}}]
"""


def _wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _host(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "run.json").read_text())["host"]
    except (OSError, ValueError, KeyError):
        return None


def _records_so_far(run_dir: Path) -> bool:
    path = run_dir / "records.csv"
    return path.exists() and path.read_text().count("\n") > 10


def test_no_secret_reaches_any_file_of_a_run_or_the_metrics(tmp_path: Path) -> None:
    scenario = tmp_path / "secrets.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    run_dir = tmp_path / "run"
    command = [
        LOCUST, "-f", str(ROOT / "locustfiles" / "gateway.py"), "--headless", "-t", "5s",
        "--scenario", str(scenario), "--set", f"backends[0].api_key={BACKEND_KEY}", "--api-key", RUN_API_KEY,
        "--run-dir", str(run_dir), "--csv", str(run_dir / "locust"), "--json-file", str(run_dir / "locust"),
        "--only-summary",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        host = _wait_for(lambda: _host(run_dir), 60, "the embedded stack")
        _wait_for(lambda: _records_so_far(run_dir), 30, "the first records")
        scrape = httpx.get(f"{host}/metrics", timeout=10).text
        _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr[-2000:]

    # the run really used every secret: keyed, signed and admitted
    records = read_records(run_dir / "records.csv")
    assert len(records) > 20 and {r["status"] for r in records} == {200}
    assert 'subscription="team-a"' in scrape and 'subscription="team-b"' in scrape
    rows = [json.loads(line) for line in (run_dir / "gateway.jsonl").read_text().splitlines()]
    assert {r["counter_key"] for r in rows if r["kind"] == "request"} == {"team-a", "team-b"}
    report = subprocess.run(
        [sys.executable, "-m", "harness.cli", "report", str(run_dir)], capture_output=True, text=True, timeout=120
    )
    assert report.returncode == 0, report.stderr[-2000:]

    files = [path for path in run_dir.rglob("*") if path.is_file()]
    assert {"records.csv", "run.json", "scenario.yaml", "gateway.jsonl", "backend.jsonl", "report.html"} <= {
        path.name for path in files
    }
    for path in files:
        content = path.read_bytes().decode("utf-8", errors="replace")
        for secret in SECRETS:
            assert secret not in content, f"{path.name} holds a secret"
        if path.suffix == ".png":
            continue  # compressed pixels hold any three bytes by chance; a token would be text
        # an embedded figure's base64 can hold the three letters by chance (about once per 260,000 characters)
        text = EMBEDDED_IMAGE.sub("", content)
        assert JWT_PREFIX not in text, f"{path.name} holds a token"
    for secret in SECRETS:
        assert secret not in scrape
    assert JWT_PREFIX not in scrape
    # the copy says where the secrets were
    copy = yaml.safe_load((run_dir / "scenario.yaml").read_text())
    assert is_redacted(copy["backends"][0]["api_key"])
    assert is_redacted(copy["gateway"]["auth"]["jwt"]["signing-secret"])
    # -t 5s at time scale 20 is 100 scenario s, longer than the scenario's 60: the stretch is an override too
    overrides = json.loads((run_dir / "run.json").read_text())["overrides"]
    assert overrides == [f"backends[0].api_key={REDACTED}", "run.duration=100.0"]


def test_secrets_inside_a_structured_override_are_redacted_too(tmp_path: Path) -> None:
    override = f"gateway.auth={{subscriptions: [{{id: t, key: {SUBSCRIPTION_KEYS['team-a']}}}]}}"
    assert SUBSCRIPTION_KEYS["team-a"] not in redact_override(override)
    assert redact_override(override).startswith("gateway.auth={subscriptions: [{id: t, key: '***'}]}")
    scenario = tmp_path / "s.yaml"
    scenario.write_text("# a comment kept when there is nothing to hide\nrun: {seed: 1}\n", encoding="utf-8")
    write_scenario_copy(tmp_path, str(scenario), [])
    assert (tmp_path / "scenario.yaml").read_text() == scenario.read_text()
    write_scenario_copy(tmp_path, str(scenario), [override])
    written = (tmp_path / "scenario.yaml").read_text()
    assert SUBSCRIPTION_KEYS["team-a"] not in written and "# secrets written as placeholders ***" in written
    write_run_json(tmp_path, {"overrides": [override, "run.seed=2"]})
    saved = json.loads((tmp_path / "run.json").read_text())["overrides"]
    assert SUBSCRIPTION_KEYS["team-a"] not in json.dumps(saved) and saved[1] == "run.seed=2"
