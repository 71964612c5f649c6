"""One large request stalls nothing: while the single-process stack (`harness serve`: mock and gateway in one
event loop) answers a 2,048-input embeddings request, a chat is answered within 100 ms of its usual latency.

The embeddings request comes from the openai SDK in a process of its own (its 40 MB answer is parsed there, not
in this one); the chats from the SDK here. The baseline is measured first, in the same test, on the same stack.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from openai import AzureOpenAI

from harness.aoai.validation import MAX_EMBEDDING_INPUTS

# a p99 latency bound: nothing else may share the machine
pytestmark = [pytest.mark.e2e, pytest.mark.serial]

SCENARIO = """
backends:
  - name: east
    deployments:
      gpt-4o: {tpm: 100000000, latency: {ttft: 0.01, per_token: 0}, completion_tokens: 3}
      text-embedding-3-small: {tpm: 100000000, latency: {ttft: 0.01, per_token: 0}}
gateway:
  token_limit: {tokens-per-minute: 100000000, estimate-prompt-tokens: true}
"""
ALLOWED_EXTRA_S = 0.100  # a chat during the large request may take this much longer than its baseline p99
BASELINE_CHATS = 30

# The sender: texts of ~1,800 characters (3.6 MB of JSON in all, under AOAI's 4 MiB), vectors as floats (the
# larger answer). It says when it sends, so the chats measured overlap the request.
SENDER = textwrap.dedent(
    """
    import json, sys, time
    from openai import AzureOpenAI
    url, count = sys.argv[1], int(sys.argv[2])
    texts = [("the quick brown fox jumps over the lazy dog " * 40) + str(i) for i in range(count)]
    with AzureOpenAI(azure_endpoint=url, api_key="k", api_version="2024-10-21", max_retries=0, timeout=120) as sdk:
        print("sending", flush=True)
        started = time.monotonic()
        raw = sdk.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=texts, encoding_format="float"
        )
        body = raw.http_response.read()
        print("received", round(time.monotonic() - started, 3), len(body), flush=True)
        answer = raw.parse()  # parsed once the chats are done: its CPU is not the stack's latency
        print(len(answer.data), len(answer.data[0].embedding), flush=True)
    """
)


def _chat_latency(sdk: AzureOpenAI) -> float:
    started = time.monotonic()
    answer = sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "ping"}])
    took = time.monotonic() - started
    assert answer.usage is not None and answer.usage.completion_tokens == 3
    return took


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98] if len(values) > 1 else values[0]


def test_a_chat_during_a_2048_input_embeddings_request_keeps_its_latency(serve_stack: Any) -> None:
    stack = serve_stack(SCENARIO, only=None)
    url = stack.url("gateway")
    with AzureOpenAI(azure_endpoint=url, api_key="k", api_version="2024-10-21", max_retries=0, timeout=60) as sdk:
        _chat_latency(sdk)  # warm: connection, tokenizer
        baseline = [_chat_latency(sdk) for _ in range(BASELINE_CHATS)]
        sender = subprocess.Popen(
            [sys.executable, "-c", SENDER, url, str(MAX_EMBEDDING_INPUTS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert sender.stdout is not None and sender.stdout.readline().strip() == "sending", sender.stderr
            received: list[str] = []
            reader = threading.Thread(target=lambda: received.append(sender.stdout.readline()), daemon=True)
            reader.start()
            during = []
            while reader.is_alive():  # until the whole answer is in the sender's hands
                during.append(_chat_latency(sdk))
            out, err = sender.communicate(timeout=120)
        finally:
            if sender.poll() is None:
                sender.kill()
                sender.wait()
    assert sender.returncode == 0, err
    _, embeddings_s, answer_bytes = received[0].split()
    inputs, dimensions = out.split()
    assert (int(inputs), int(dimensions)) == (MAX_EMBEDDING_INPUTS, 1536)
    assert len(during) >= 3, f"only {len(during)} chats overlapped the embeddings request ({embeddings_s} s)"
    base_p99, during_p99 = _p99(baseline), _p99(during)
    figures = {
        "baseline_p99_ms": round(base_p99 * 1000, 1),
        "during_p99_ms": round(during_p99 * 1000, 1),
        "during_max_ms": round(max(during) * 1000, 1),
        "chats_during": len(during),
        "embeddings_s": float(embeddings_s),
        "answer_mb": round(int(answer_bytes) / 1e6, 1),
    }
    print(json.dumps(figures))
    assert during_p99 <= base_p99 + ALLOWED_EXTRA_S, figures
    # the gateway logged the large request as answered in full, its prompt counted
    assert stack.stop() == 0
    rows = [row for row in stack.log_rows("gateway.jsonl") if row.get("operation") == "embeddings"]
    assert rows and rows[0]["status"] == 200 and rows[0]["prompt_tokens"] > MAX_EMBEDDING_INPUTS * 300
