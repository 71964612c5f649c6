"""Server-sent events exactly as AOAI streams them, paced token by token on the injected clock.

Event order: the prompt-filter chunk (`choices: []`), the role chunk (chat), one chunk per token, the chunk
with `finish_reason`, the usage chunk when `stream_options.include_usage` is set (`choices: []`, every
other chunk `usage: null`), then `data: [DONE]`. Each token is sent when the latency plan says it is due;
waits are measured from the start against the clock, so scheduling delays do not accumulate.

A stream cut mid-way (the `cut_streams` fault) raises `StreamCutFault` after its last chunk: under uvicorn an
exception from the body after the headers closes the connection without the chunked body's end, so the
reader sees a broken connection, not a short answer that ended cleanly.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from harness.aoai.sse import DONE_FRAME as DONE
from harness.aoai.sse import event, frame
from harness.clock import Clock
from harness.compact_json import to_text
from harness.errors import quiet_server_tracebacks
from harness.mock.latency import LatencyPlan
from harness.mock.synth import completion_id, prompt_filter_results, usage


class StreamCutFault(Exception):
    """The injected cut of a stream: raised from the body so the server drops the connection mid-answer."""


# A cut the scenario asked for is logged as a backend.jsonl row (decision cut_stream), not as a traceback.
quiet_server_tracebacks(StreamCutFault)


@dataclass(frozen=True, slots=True)
class Generation:
    """A completion ready to be sent: its text pieces (one token each) and what `usage` will say."""

    operation: str  # "chat" or "completions"
    model: str  # as reported in responses, e.g. gpt-4o-2024-08-06
    pieces: list[str]
    finish_reason: str
    prompt_tokens: int
    created: int

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces)


class ChunkWriter:
    """Builds the SSE events of one streamed generation (fixed parts serialised once)."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self.chat = generation.operation == "chat"
        self.id = completion_id("chatcmpl" if self.chat else "cmpl")
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        tail = {"created": generation.created, "id": self.id, "model": generation.model, "object": obj}
        if self.chat:
            tail["system_fingerprint"] = "fp_mock"
        self._tail = json.dumps(tail, separators=(",", ":"))[1:-1]  # the shared fields, without braces

    def _choice_event(self, choice: str) -> bytes:
        return frame(f'{{"choices":[{choice}],{self._tail},"usage":null}}')

    def prompt_filter(self) -> bytes:
        return event(
            {
                "choices": [],
                "created": 0,
                "id": "",
                "model": "",
                "object": "",
                "prompt_filter_results": prompt_filter_results(),
            }
        )

    def role(self) -> bytes:
        delta = '{"content":"","refusal":null,"role":"assistant"}'
        return self._choice_event(
            f'{{"content_filter_results":{{}},"delta":{delta},"finish_reason":null,"index":0,"logprobs":null}}'
        )

    def token(self, piece: str) -> bytes:
        text = json.dumps(piece)
        if self.chat:
            return self._choice_event(
                f'{{"content_filter_results":{{}},"delta":{{"content":{text}}},"finish_reason":null,'
                f'"index":0,"logprobs":null}}'
            )
        return self._choice_event(f'{{"finish_reason":null,"index":0,"logprobs":null,"text":{text}}}')

    def finish(self) -> bytes:
        reason = json.dumps(self.generation.finish_reason)
        if self.chat:
            return self._choice_event(
                f'{{"content_filter_results":{{}},"delta":{{}},"finish_reason":{reason},"index":0,"logprobs":null}}'
            )
        return self._choice_event(f'{{"finish_reason":{reason},"index":0,"logprobs":null,"text":""}}')

    def usage(self) -> bytes:
        g = self.generation
        counts = to_text(usage(g.prompt_tokens, g.completion_tokens))
        return frame(f'{{"choices":[],{self._tail},"usage":{counts}}}')


async def stream_events(
    generation: Generation,
    plan: LatencyPlan,
    clock: Clock,
    include_usage: bool,
    start: float | None = None,
    cut_after: int | None = None,
) -> AsyncIterator[bytes]:
    """The SSE body, each token yielded when due; the first token (with the opening chunks) at TTFT.

    Due times count from `start` (the request's arrival; now when not given), so the time spent admitting
    the request and sending the headers is part of the TTFT rather than added to it. With `cut_after`, the
    body breaks off (`StreamCutFault`) right after that many token chunks: no finish, usage nor [DONE].
    """
    writer = ChunkWriter(generation)
    start = clock.now() if start is None else start
    due = plan.ttft
    opening = writer.prompt_filter() + (writer.role() if writer.chat else b"")
    pieces = generation.pieces
    last = len(pieces) - 1
    for i, piece in enumerate(pieces):
        if i == cut_after:
            raise StreamCutFault(f"the stream was cut after {i} of {len(pieces)} tokens")
        if i > 0:
            due += plan.gaps[i - 1]
        wait = start + due - clock.now()
        if wait > 0:
            await clock.asleep(wait)
        chunk = writer.token(piece)
        if i == 0:
            chunk = opening + chunk
        if i == last:
            chunk += writer.finish() + (writer.usage() if include_usage else b"") + DONE
        yield chunk
    if not pieces:  # nothing generated: still a well-formed stream
        yield opening + writer.finish() + (writer.usage() if include_usage else b"") + DONE
