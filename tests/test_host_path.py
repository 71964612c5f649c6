"""`--host` with the API's own `/openai` prefix on it is the endpoint before it; another path is named in the
error, not blamed on the deployment. Against a real server on loopback that serves AOAI's routes only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from quirky_backend import PIECES, LoopbackServers, QuirkyBackend

from harness.aoai.routes import endpoint_base
from harness.clock import RealClock
from harness.errors import UsageError
from harness.loadgen.preflight import check_target
from harness.loadgen.transport import Transport
from harness.scenario import load_scenario_text
from harness.workload.session import RunSettings

SCENARIO = load_scenario_text(
    "backends: [{name: east, deployments: {gpt-4o: {}}}]\n"
    "workload: {mixes: [{name: chat, deployment: gpt-4o, stream_share: 0}]}\n"
)
PATH = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
BODY = b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}'


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with LoopbackServers(lifetime=60) as servers:
        yield servers.start(QuirkyBackend())


@pytest.mark.parametrize("suffix", ["", "/", "/openai", "/openai/"])
def test_a_host_with_or_without_the_openai_prefix_reaches_the_deployment(url: str, suffix: str) -> None:
    host = url + suffix
    check_target(host, SCENARIO, RunSettings(run_id="host", clock=RealClock()))  # no "deployment not found"
    transport = Transport(host, RealClock(), timeout_s=10)
    try:
        result = transport.send(PATH, BODY, {"content-type": "application/json"}, stream=False)
    finally:
        transport.close()
    assert result.status == 200 and result.usage == {
        "prompt_tokens": 9,
        "completion_tokens": len(PIECES),
        "total_tokens": 9 + len(PIECES),
    }


def test_a_host_with_another_path_is_named_in_the_error(url: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_target(url + "/api/aoai", SCENARIO, RunSettings(run_id="host", clock=RealClock()))
    message = str(caught.value)
    assert message.startswith(f"--host {url}/api/aoai: 404 on /api/aoai{PATH};")
    assert f"without an API path (e.g. {url})" in message and "\n" not in message


def test_endpoint_base_drops_only_a_trailing_openai_prefix() -> None:
    assert endpoint_base("https://x.openai.azure.com/openai") == "https://x.openai.azure.com"
    assert endpoint_base("https://apim.azure-api.net/team/openai/") == "https://apim.azure-api.net/team"
    assert endpoint_base("https://apim.azure-api.net/openai-api") == "https://apim.azure-api.net/openai-api"
    assert endpoint_base("https://x.openai.azure.com/") == "https://x.openai.azure.com"
