"""Streams read as the openai SDK reads them, by the harness client and through the gateway, on loopback.

A stream that ended on any finish marker is a success, whatever the marker looks like (`data: [DONE]`, a
bare `[DONE]` line, a `finish_reason` on the choice or inside its `delta`, no `[DONE]` after a
`finish_reason`), and a plain JSON answer to a stream request is counted from its `usage`; only an end before
any finish marker is `truncated_stream`. The record's `stream_end` says how each ended, and the real openai
SDK reads the same streams the same way. The fixture backend speaks as microsoft/aoai-api-simulator does
(`AOAI_API_SIMULATOR`: no content type, `finish_reason` inside the delta, a bare `[DONE]`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import AzureOpenAI
from quirky_backend import AOAI_API_SIMULATOR, CHAT, PIECES, LoopbackServers, Quirks
from wire_helpers import Wire

from harness.aoai.sse import (
    STREAM_BARE_DONE,
    STREAM_CUT,
    STREAM_DONE,
    STREAM_JSON_BODY,
    STREAM_NO_DONE_MARKER,
    STREAM_NO_FINISH,
    WHOLE_STREAM_ENDS,
)
from harness.clock import RealClock
from harness.loadgen.transport import Transport
from harness.records import RECORD_FIELDS
from harness.scenario.workload import App
from harness.workload.requests import RequestPlan
from harness.workload.session import RunSettings, execute

API_VERSION = "2024-10-21"
PLAN = RequestPlan(App(id="ends"), "chat", "chat", "gpt-4o", 30, 50, True, include_usage=False)
TARGETS = ["direct", "gateway"]


@pytest.fixture(scope="module")
def wire() -> Iterator[Wire]:
    with LoopbackServers(lifetime=180) as servers:
        yield Wire(servers)


def harness_stream(url: str, times: int = 1) -> list[dict[str, Any]]:
    """The records of `times` logical stream requests sent by the harness client (no retries)."""
    settings = RunSettings(run_id="ends", clock=RealClock(), client_profile="none")
    transport = Transport(url, settings.clock, timeout_s=30)
    records: list[dict[str, Any]] = []
    try:
        for n in range(times):
            execute(PLAN, "u1", n + 1, transport, settings, random.Random(n), records.append)
    finally:
        transport.close()
    return records


def sdk_stream(url: str) -> tuple[str, list[str]]:
    """The text the openai SDK reads from a stream, and the finish reasons it saw (wherever they were sent)."""
    client = AzureOpenAI(azure_endpoint=url, api_key="k", api_version=API_VERSION, max_retries=0, timeout=20)
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Stream it"}], stream=True
    )
    text, reasons = "", []
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            reason = choice.finish_reason or (choice.delta.model_extra or {}).get("finish_reason")
            if reason:
                reasons.append(reason)
    return text, reasons


# -- aoai-api-simulator's streams: 0 failures in records, tokens counted at the gateway ---------------------


def test_the_quirky_backend_streams_as_aoai_api_simulator_does(wire: Wire) -> None:
    """The fixture is what it claims: no content type, finish_reason only inside a delta, a bare [DONE] last."""
    wire.backend.quirks = AOAI_API_SIMULATOR
    head = {"content-type": "application/json"}
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    path = CHAT.format(deployment="gpt-4o") + f"?api-version={API_VERSION}"
    answer = httpx.post(wire.direct + path, json=body, headers=head, timeout=20)
    assert "content-type" not in answer.headers
    assert answer.text.endswith("\n\n[DONE]") and "data: [DONE]" not in answer.text
    events = [json.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: {")]
    choices = [c for e in events for c in e["choices"]]
    assert [c["delta"]["finish_reason"] for c in choices if "finish_reason" in c["delta"]] == ["stop"]
    assert not [c for c in choices if "finish_reason" in c]


@pytest.mark.parametrize("target", TARGETS)
def test_aoai_api_simulator_streams_are_successes_and_the_sdk_agrees(wire: Wire, target: str) -> None:
    wire.backend.quirks = AOAI_API_SIMULATOR
    url = wire.url(target)
    records = harness_stream(url, times=5)
    assert [(r["error_kind"], r["decision"], r["stream_end"]) for r in records] == [
        ("", "success", STREAM_BARE_DONE)
    ] * 5
    assert {(r["usage_source"], r["usage_completion"]) for r in records} == {("counted_deltas", len(PIECES))}
    # the real SDK reads the very same stream whole, its finish reason included
    assert sdk_stream(url) == ("".join(PIECES), ["stop"])


def test_aoai_api_simulator_streams_are_counted_at_the_gateway(wire: Wire) -> None:
    wire.backend.quirks = AOAI_API_SIMULATOR
    before_rows, before_metric = len(wire.rows()), wire.completion_tokens_metric()
    records = harness_stream(wire.gateway, times=3)
    rows = wire.rows()[before_rows:]
    assert [r["error_kind"] for r in records] == [""] * 3
    assert [(r["outcome"], r["completion_tokens"], r["tokens_counted_by"]) for r in rows] == [
        ("ok", len(PIECES), "counted_deltas")
    ] * 3
    assert wire.completion_tokens_metric() - before_metric == 3 * len(PIECES)


# -- every ending, as the client records it and as the SDK reads it ------------------------------------------


ENDINGS = {
    "aoai": (Quirks(), STREAM_DONE),
    "finish-in-delta": (Quirks(finish_in_delta=True), STREAM_DONE),
    "no-done-after-finish": (Quirks(done=False), STREAM_NO_DONE_MARKER),
    "no-done-after-finish-in-delta": (Quirks(done=False, finish_in_delta=True), STREAM_NO_DONE_MARKER),
    "bare-done-without-finish": (Quirks(done=False, bare_done=True, finish=False), STREAM_BARE_DONE),
    "neither": (Quirks(done=False, finish=False), STREAM_NO_FINISH),
    "cut": (Quirks(cut_after=3), STREAM_CUT),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("ending", list(ENDINGS))
def test_how_a_stream_ended_is_recorded_and_only_an_end_before_a_finish_fails(
    wire: Wire, target: str, ending: str
) -> None:
    quirks, expected = ENDINGS[ending]
    wire.backend.quirks = quirks
    (record,) = harness_stream(wire.url(target))
    assert record["stream_end"] == expected
    whole = expected in WHOLE_STREAM_ENDS
    assert (record["error_kind"], record["decision"]) == (("", "success") if whole else ("truncated_stream", "fail"))
    if expected == STREAM_CUT:  # the SDK raises on a broken connection as the client records a failure
        with pytest.raises(openai.APIConnectionError):
            sdk_stream(wire.url(target))
    else:  # a clean end: the SDK reads what came without error, the client counts the same text
        text, _ = sdk_stream(wire.url(target))
        assert text == "".join(PIECES) and record["usage_completion"] == len(PIECES)


@pytest.mark.parametrize("target", TARGETS)
def test_a_plain_json_answer_to_a_stream_request_is_counted_from_its_usage(wire: Wire, target: str) -> None:
    wire.backend.quirks = Quirks(json_stream=True)
    before = len(wire.rows())
    (record,) = harness_stream(wire.url(target))
    assert (record["error_kind"], record["decision"], record["stream_end"]) == ("", "success", STREAM_JSON_BODY)
    assert (record["usage_source"], record["usage_prompt"], record["usage_completion"], record["usage_total"]) == (
        "body",
        9,
        len(PIECES),
        9 + len(PIECES),
    )
    if target == "gateway":  # the gateway's StreamReader counts the same answer from the same usage
        (row,) = wire.rows()[before:]
        assert (row["outcome"], row["prompt_tokens"], row["completion_tokens"], row["tokens_counted_by"]) == (
            "ok",
            9,
            len(PIECES),
            "usage",
        )


def test_stream_end_is_a_record_column_and_empty_for_answers_that_are_not_streams(wire: Wire) -> None:
    assert RECORD_FIELDS[-1] == "stream_end"
    wire.backend.quirks = Quirks()
    settings = RunSettings(run_id="ends", clock=RealClock(), client_profile="none")
    transport = Transport(wire.direct, settings.clock, timeout_s=30)
    records: list[dict[str, Any]] = []
    plain = RequestPlan(App(id="ends"), "chat", "chat", "gpt-4o", 30, 50, False)
    try:
        execute(plain, "u1", 1, transport, settings, random.Random(0), records.append)
    finally:
        transport.close()
    assert (records[0]["error_kind"], records[0]["stream_end"]) == ("", "")
