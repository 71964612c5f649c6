"""/metrics passes `promtool check metrics`: promtool itself when it is installed, otherwise the same rules,
written here from its linter (prometheus/client_golang, testutil/promlint). A live scrape of `harness serve`
with a PTU and a pay-as-you-go backend, a token limit and a caller dimension, driven by the openai SDK, has
every family (latency histograms, utilization, per-key gauges) populated and no problem.

Also here: the time scale is on /metrics for dashboards to divide by, exemplars are off unless asked for,
and /metrics stays bounded with 20,000 callers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import httpx
import jwt
import pytest
from gateway_helpers import gateway_stack
from openai import AzureOpenAI, RateLimitError
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from harness.clock import VirtualClock
from harness.gateway.metrics import TokenMetrics
from harness.gateway.shared_state import SharedState, SharedStateMetrics
from harness.gateway.throttle_metrics import KEYS_SHOWN, ThrottleMetrics
from harness.gateway.token_limit import TokenLimiter
from harness.scenario import load_scenario_text

# promlint's rules
UNITS = {  # unit -> base unit
    "amperes": "amperes", "bytes": "bytes", "celsius": "celsius", "grams": "grams", "joules": "joules",
    "kelvin": "kelvin", "meters": "meters", "metres": "metres", "seconds": "seconds", "volts": "volts",
    "minutes": "seconds", "hours": "seconds", "days": "seconds", "weeks": "seconds", "kelvins": "kelvin",
    "fahrenheit": "celsius", "rankine": "celsius", "inches": "meters", "yards": "meters", "miles": "meters",
    "bits": "bytes", "calories": "joules", "pounds": "grams", "ounces": "grams",
}  # fmt: skip
UNIT_PREFIXES = (
    "pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kibi", "mega", "mibi", "giga",
    "gibi", "tera", "tebi", "peta", "pebi",
)  # fmt: skip
UNIT_ABBREVIATIONS = ("s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d")
TYPES_IN_NAME = ("counter", "gauge", "summary", "histogram", "gauge_histogram")
CAMEL_CASE = re.compile(r"[a-z][A-Z]")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')


def _unit_problem(name: str) -> str | None:
    for part in name.split("_"):
        candidates = [part] + [part[len(p) :] for p in UNIT_PREFIXES if part.startswith(p)]
        for unit in candidates:
            if unit in UNITS:
                base = UNITS[unit]
                return None if part == base else f'use base unit "{base}" instead of "{part}"'
    return None


def lint(text: str) -> list[str]:
    """Problems promtool's `check metrics` reports for a text exposition, as `name: problem`."""
    types: dict[str, str] = {}
    helps: set[str] = set()
    labels: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            types[name] = kind
            labels.setdefault(name, set())
        elif line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            family = _family_of(match.group(1), types)
            labels.setdefault(family, set()).update(LABEL.findall(match.group(2) or ""))
    problems = []
    for name, kind in types.items():
        found: list[str] = []
        if name not in helps:
            found.append("no help text")
        unit = _unit_problem(name)
        if unit:
            found.append(unit)
        if kind == "counter" and not name.endswith("_total"):
            found.append('counter metrics should have "_total" suffix')
        if kind not in ("counter", "untyped") and name.endswith("_total"):
            found.append('non-counter metrics should not have "_total" suffix')
        if kind not in ("histogram", "untyped") and name.endswith("_bucket"):
            found.append('non-histogram metrics should not have "_bucket" suffix')
        for suffix in ("_count", "_sum"):
            if kind not in ("histogram", "summary", "untyped") and name.endswith(suffix):
                found.append(f'non-histogram and non-summary metrics should not have "{suffix}" suffix')
        if kind not in ("histogram", "untyped") and "le" in labels[name]:
            found.append('non-histogram metrics should not have "le" label')
        if kind not in ("summary", "untyped") and "quantile" in labels[name]:
            found.append('non-summary metrics should not have "quantile" label')
        if kind not in ("gauge", "untyped") and name.endswith("_timestamp_seconds"):
            found.append('non-gauge metrics should not have "_timestamp_seconds" suffix')
        lower = name.lower()
        for typename in TYPES_IN_NAME:
            if f"_{typename}_" in lower or lower.endswith(f"_{typename}"):
                found.append(f"metric name should not include type '{typename}'")
        if ":" in name:
            found.append("metric names should not contain ':'")
        if CAMEL_CASE.search(name):
            found.append("metric names should be written in 'snake_case' not 'camelCase'")
        if any(CAMEL_CASE.search(label) for label in labels[name]):
            found.append("label names should be written in 'snake_case' not 'camelCase'")
        for abbreviation in UNIT_ABBREVIATIONS:
            if f"_{abbreviation}_" in lower or lower.endswith(f"_{abbreviation}"):
                found.append("metric names should not contain abbreviated units")
        problems += [f"{name}: {problem}" for problem in found]
    return problems


def _family_of(sample: str, types: dict[str, str]) -> str:
    if sample in types:
        return sample
    for suffix in ("_bucket", "_count", "_sum"):
        if sample.endswith(suffix) and types.get(sample.removesuffix(suffix)) in ("histogram", "summary"):
            return sample.removesuffix(suffix)
    raise AssertionError(f"sample {sample} has no # TYPE line")


def check_metrics(text: str) -> list[str]:
    """promtool's verdict when promtool is installed, else the rules above."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return lint(text)
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def test_the_rules_find_what_promtool_finds() -> None:
    bad = """# HELP gateway_counter_keys_evicted_total x
# TYPE gateway_counter_keys_evicted_total counter
gateway_counter_keys_evicted_total 1.0
# HELP gateway_requests x
# TYPE gateway_requests counter
gateway_requests 1.0
# TYPE gateway_latency_milliseconds gauge
gateway_latency_milliseconds{le="1"} 1.0
# HELP gateway_wait_s x
# TYPE gateway_wait_s gauge
gateway_wait_s{backendName="a"} 1.0
# HELP gateway_keys_count x
# TYPE gateway_keys_count gauge
gateway_keys_count 1.0
"""
    problems = lint(bad)
    assert problems == [
        "gateway_counter_keys_evicted_total: metric name should not include type 'counter'",
        'gateway_requests: counter metrics should have "_total" suffix',
        "gateway_latency_milliseconds: no help text",
        'gateway_latency_milliseconds: use base unit "seconds" instead of "milliseconds"',
        'gateway_latency_milliseconds: non-histogram metrics should not have "le" label',
        "gateway_wait_s: label names should be written in 'snake_case' not 'camelCase'",
        "gateway_wait_s: metric names should not contain abbreviated units",
        'gateway_keys_count: non-histogram and non-summary metrics should not have "_count" suffix',
    ]


SIGNING_KEY = "a-signing-key-the-gateway-never-verifies"
SCENARIO = """
run: {time_scale: 10}
backends:
  - name: ptu
    deployments: {gpt-4o: {ptu: 1, ptu_tokens_per_minute: 6000, latency: {ttft: 0.05, per_token: 0.01}}}
  - name: payg
    deployments: {gpt-4o: {tpm: 100000, latency: {ttft: 0.05, per_token: 0.01}}}
gateway:
  pool:
    members: [{backend: ptu, priority: 1}, {backend: payg, priority: 2}]
  circuit_breaker:
    failureCondition: {count: 1, interval: PT1M, statusCodeRanges: [{min: 429, max: 429}]}
    tripDuration: PT30S
    acceptRetryAfter: true
  token_limit: {tokens-per-minute: 150}
  metrics: {dimensions: [model, app_id, backend]}
"""


@pytest.mark.e2e
def test_a_live_scrape_passes_promtool_check_metrics(serve_stack: Callable[..., Any]) -> None:
    stack = serve_stack(SCENARIO, only=None)
    url = stack.url("gateway")
    statuses = []
    for app in ("app-1", "app-2", "app-3"):
        token = jwt.encode({"appid": app}, SIGNING_KEY, algorithm="HS256")
        client = AzureOpenAI(azure_endpoint=url, azure_ad_token=token, api_version="2024-10-21", max_retries=0)
        for _ in range(3):
            try:
                client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "Hello " * 40}], max_tokens=40
                )
                statuses.append(200)
            except RateLimitError:
                statuses.append(429)  # the token limit: the per-key gauges and throttling families fill too
    assert 200 in statuses and 429 in statuses
    text = httpx.get(f"{url}/metrics", timeout=10).text
    assert check_metrics(text) == []
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name in ("gateway_added_duration_seconds", "gateway_backend_duration_seconds"):
        assert families[name].type == "histogram" and families[name].samples
    assert families["gateway_time_scale"].samples[0].value == 10
    utilization = families["gateway_backend_utilization_ratio"].samples
    assert [s.labels for s in utilization] == [{"deployment": "gpt-4o", "backend": "ptu"}]
    assert 0 < utilization[0].value < 5
    assert families["gateway_rate_limit_key_remaining_tokens"].samples
    assert "# {" not in text  # no exemplars unless the scenario asks for them


EXEMPLARS = """
backends: [{name: east, deployments: {gpt-4o: {latency: {ttft: 0, per_token: 0}}}}]
gateway: {metrics: {exemplars: true}}
"""


@pytest.mark.parametrize("exemplars", [False, True])
async def test_exemplars_only_when_asked_for_in_openmetrics(exemplars: bool) -> None:
    stack = gateway_stack(EXEMPLARS if exemplars else EXEMPLARS.replace("exemplars: true", "exemplars: false"))
    try:
        answer = await stack.chat()
        request_id = answer.headers["x-gateway-request-id"]
        openmetrics = await stack.client.get("/metrics", headers={"accept": "application/openmetrics-text"})
        plain = await stack.client.get("/metrics")
    finally:
        await stack.aclose()
    assert "# {" not in plain.text  # the classic text format never carries them
    if exemplars:
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
        assert f'# {{gateway_request_id="{request_id}"}}' in openmetrics.text
    else:
        assert openmetrics.text == plain.text or "# {" not in openmetrics.text


def test_twenty_thousand_callers_keep_metrics_bounded_and_totals_exact() -> None:
    """The scrape that was 10.4 MB with 20,000 callers: caller label values and key gauges are capped."""
    scenario = load_scenario_text(
        "backends: [{name: east}]\n"
        "gateway: {token_limit: {counter-key: 'header:x-caller', tokens-per-minute: 1000}, "
        "metrics: {dimensions: [model, app_id, backend, 'header:x-caller']}}"
    )
    clock = VirtualClock()
    config = scenario.gateway
    assert config.token_limit is not None
    limiter = TokenLimiter(config.token_limit, clock)
    metrics = TokenMetrics(config.metrics.dimensions, clock, config.metrics.max_series)
    metrics.registry.register(ThrottleMetrics({}, limiter, clock, config.metrics.keys_shown))
    callers = 20_000
    for i in range(callers):
        key = f"caller-{i:05d}"
        limiter.settle(limiter.admit(key, 10 + i % 50), 10 + i % 50)
        metrics.record({"model": "gpt-4o", "app_id": f"app-{i}", "backend": "east", "header:x-caller": key}, 10, 5)
    text = metrics.exposition().decode()
    size = len(text.encode())
    assert size < 500_000, f"/metrics is {size} bytes with {callers} callers"
    families = {family.name: family for family in text_string_to_metric_families(text)}
    apps = {s.labels["app_id"] for s in families["gateway_prompt_tokens"].samples if s.name.endswith("_total")}
    assert len(apps) == config.metrics.max_series + 1 and "other" in apps
    assert sum(s.value for s in families["gateway_prompt_tokens"].samples if s.name.endswith("_total")) == 10 * callers
    keys = families["gateway_rate_limit_key_remaining_tokens"].samples
    assert len(keys) == KEYS_SHOWN
    # the keys shown are those nearest their limit: the KEYS_SHOWN smallest of every key's tokens left
    left = sorted(tokens for _, tokens, _ in limiter.remaining_by_key(callers) if tokens is not None)
    assert len(left) == len(limiter) and sorted(s.value for s in keys) == left[:KEYS_SHOWN]
    assert check_metrics(text) == []


def test_the_shared_state_families_pass_too() -> None:
    """The Redis families show only with replicas sharing state: linted here from their collector."""
    registry = CollectorRegistry(auto_describe=False)
    shared = SimpleNamespace(up=False, fallbacks=Counter({"token_admission": 3}), losses=1)
    registry.register(SharedStateMetrics(cast(SharedState, shared)))
    text = generate_latest(registry).decode()
    assert "gateway_shared_state_fallbacks_total" in text and check_metrics(text) == []
