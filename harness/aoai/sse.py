"""Server-sent events and `usage`: the one reader of AOAI answers, for the gateway, the client and the simulator.

A request with `"stream": true` is a stream whatever content type comes back (other AOAI-compatible servers
send SSE as `application/json` or with none). A stream is whole, as the openai SDK reads it, when it ended on
any finish marker: `data: [DONE]`, a bare `[DONE]` line, or a `finish_reason` (on the choice, or inside its
`delta` as aoai-api-simulator sends it) before the body ended; a plain JSON answer to a stream request is
whole too, and counted from its `usage`. Only an end before any finish marker is a truncated stream. How the
stream ended is `StreamReader.end(broken)`, one of the `STREAM_*` values (the attempt record's `stream_end`);
whether the connection broke is the caller's to tell (only it sees the transport).

    >>> stream = StreamReader(started=0.0)
    >>> stream.feed(b'data: {"choices":[{"delta":{"content":"Hi"},"finish_reason":"stop"}]}\\n\\nda', now=0.5)
    >>> stream.feed(b"ta: [DONE]\\n\\n", now=0.6)
    >>> stream.text, stream.ttft, stream.done, stream.complete, stream.end(broken=False)
    ('Hi', 0.5, True, True, 'done')
    >>> usage_of_body(b'{"usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}')
    Usage(prompt=5, completion=2, counted_by='usage')
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.compact_json import to_text
from harness.tokens import count_text_tokens

DONE = "[DONE]"


def frame(data: str) -> bytes:
    """One server-sent event carrying `data` (a single line): `data: ...` and the blank line that ends it."""
    return f"data: {data}\n\n".encode()


def event(payload: Mapping[str, Any]) -> bytes:
    """An event carrying `payload` as compact JSON."""
    return frame(to_text(payload))


DONE_FRAME = frame(DONE)
_BARE_DONE_LINE = DONE.encode()  # `[DONE]` alone on a line, without `data:` (aoai-api-simulator ends so)

# How a stream ended, as the attempt record's `stream_end` says it (empty for an answer that is not a stream):
STREAM_DONE = "done"  # `data: [DONE]`
STREAM_BARE_DONE = "bare_done"  # a `[DONE]` line without `data:`
STREAM_NO_DONE_MARKER = "no_done_marker"  # the body ended after a finish_reason, without any [DONE]
STREAM_CUT_AFTER_FINISH = "cut_after_finish"  # the connection broke after a finish_reason: the answer is whole
STREAM_JSON_BODY = "json_body"  # a plain JSON answer (not SSE) to a stream request, counted from its usage
STREAM_NO_FINISH = "no_finish"  # the body ended before any finish marker: truncated
STREAM_CUT = "cut"  # the connection broke before any finish marker: truncated
WHOLE_STREAM_ENDS = frozenset(
    {STREAM_DONE, STREAM_BARE_DONE, STREAM_NO_DONE_MARKER, STREAM_CUT_AFTER_FINISH, STREAM_JSON_BODY}
)
STREAM_ENDS = (*sorted(WHOLE_STREAM_ENDS), STREAM_NO_FINISH, STREAM_CUT)
# A stream request's body kept, until its first SSE event, to be read as a plain JSON answer if none comes.
JSON_BODY_LIMIT = 4 * 1024 * 1024

# Where a token count came from, as the gateway log's `tokens_counted_by` says it:
USAGE = "usage"  # the `usage` of a JSON body
STREAM_USAGE = "stream_usage"  # a stream's usage chunk (`stream_options.include_usage`)
COUNTED_DELTAS = "counted_deltas"  # no usage chunk: the streamed text counted with the model's tokenizer
APIM_COMPAT = "apim_compat"  # a stream counted as APIM counts it: the prompt only
# ... and as the attempt record's `usage_source` says it (counted deltas are spelled alike):
BODY = "body"
STREAM_USAGE_CHUNK = "stream_usage_chunk"


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class Usage:
    """Tokens one request consumed, and where the numbers came from."""

    prompt: int
    completion: int
    counted_by: str

    @property
    def total(self) -> int:
        return self.prompt + self.completion


def usage_from(usage: Mapping[str, Any], counted_by: str) -> Usage:
    """A `usage` object as Usage; without `completion_tokens` (embeddings) the completion is total - prompt."""
    prompt = _int(usage.get("prompt_tokens"))
    completion = _int(usage.get("completion_tokens"), _int(usage.get("total_tokens")) - prompt)
    return Usage(prompt, max(0, completion), counted_by)


def body_usage(body: bytes) -> dict[str, Any] | None:
    """The `usage` object of a JSON answer, as sent (None when the body is not JSON or has none)."""
    usage = _trailing_usage(body)  # a large answer is not parsed whole for it
    return usage if usage is not None else answer_of_body(body).usage


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class Answer:
    """What a client reports of an answer besides its text: usage as sent, the answer's id and model, and why
    each choice stopped (empty strings and tuple when the answer does not say)."""

    usage: dict[str, Any] | None = None
    id: str = ""
    model: str = ""
    finish_reasons: tuple[str, ...] = ()


def answer_of_body(body: bytes) -> Answer:
    """The `usage`, `id`, `model` and choices' `finish_reason` of a JSON answer, read in one parse.

    >>> answer_of_body(b'{"id": "c-1", "model": "gpt-4o", "choices": [{"finish_reason": "length"}]}')
    Answer(usage=None, id='c-1', model='gpt-4o', finish_reasons=('length',))
    """
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return Answer()
    if not isinstance(payload, dict):
        return Answer()
    usage = payload.get("usage")
    choices = payload.get("choices")
    reasons = [c.get("finish_reason") for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []
    return Answer(
        usage if isinstance(usage, dict) else None,
        _text(payload.get("id")),
        _text(payload.get("model")),
        tuple(r for r in reasons if isinstance(r, str) and r),
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


_USAGE_KEY = b'"usage"'
_JSON_SPACE = b" \t\r\n"
_LOOK_BEHIND = 64


def _trailing_usage(body: bytes) -> dict[str, Any] | None:
    """`usage` when it is the last member of the answer object, as AOAI sends it, read without parsing the rest.

    A 2,048-input embeddings answer is tens of megabytes of floats: parsing all of it to find `usage` holds the
    GIL and the event loop for over a second. The last `"usage"` key is followed by its object and the closing
    brace of the whole answer, or this is not that case (None: the caller parses the body).

    >>> _trailing_usage(b'{"data": [[0.1, 0.2]], "usage": {"prompt_tokens": 3, "total_tokens": 3}} ')
    {'prompt_tokens': 3, 'total_tokens': 3}
    >>> _trailing_usage(b'{"usage": {"prompt_tokens": 3}, "model": "m"}') is None
    True
    """
    at = body.rfind(_USAGE_KEY)
    if at < 0:
        return None
    before = body[max(0, at - _LOOK_BEHIND) : at].rstrip(_JSON_SPACE)  # a few bytes: no copy of the whole body
    rest = body[at + len(_USAGE_KEY) :].lstrip(_JSON_SPACE)
    if not before.endswith((b",", b"{")) or not rest.startswith(b":"):
        return None  # not a key of an object (or much blank before it: parsed the long way)
    try:
        text = rest[1:].decode("utf-8")
        usage, end = _DECODER.raw_decode(text.lstrip())
    except (ValueError, RecursionError):
        return None
    if not isinstance(usage, dict) or text.lstrip()[end:].strip(" \t\r\n") != "}":
        return None  # not the last member of the outermost object
    return usage


_DECODER = json.JSONDecoder()


def usage_of_body(body: bytes) -> Usage | None:
    """`usage` of a non-streamed JSON answer (None when the body has none)."""
    usage = body_usage(body)
    return None if usage is None else usage_from(usage, USAGE)


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class SSEParser:
    """Split a byte stream into the `data:` payloads of its events (multi-line data joined by newlines).

    >>> parser = SSEParser()
    >>> parser.feed(b'data: {"a": 1}\\n\\nda') + parser.feed(b"ta: [DONE]\\n\\n")
    ['{"a": 1}', '[DONE]']
    """

    def __init__(self) -> None:
        self._partial = b""
        self._data: list[bytes] = []
        self.bare_done = False  # a `[DONE]` line without `data:` came (no SSE field: the spec would ignore it)

    def feed(self, chunk: bytes) -> list[str]:
        if self._partial:
            chunk = self._partial + chunk
        lines = chunk.split(b"\n")
        self._partial = lines.pop()  # an unfinished line waits for the next chunk
        events: list[str] = []
        data = self._data
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if data:
                    events.append(b"\n".join(data).decode("utf-8", "replace"))
                    data.clear()
            elif line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])
            elif line.strip() == _BARE_DONE_LINE:
                self.bare_done = True
            # comments (":") and other fields (event:, id:, retry:) carry nothing the harness needs
        return events

    def close(self) -> list[str]:
        """Events left when the stream ends (a last event without its blank line still counts)."""
        return self.feed(b"\n\n") if self._partial or self._data else []


@dataclass
class StreamReader:
    """One streamed answer read as it arrives: when tokens came, the text, usage and how it ended.

    Times are in whatever unit the caller passes as `now` (scenario seconds in the harness; the gateway,
    which only counts, passes none).
    """

    started: float = 0.0
    first_token_at: float | None = None
    last_token_at: float | None = None
    content_chunks: int = 0
    text_parts: list[str] = field(default_factory=list)  # one per choice and chunk: a token each from AOAI
    usage: dict[str, Any] | None = None  # the usage chunk, as sent
    done: bool = False  # `[DONE]` came, as `data: [DONE]` or as a bare line
    finish_reason: str | None = None  # the last one a choice carried (on the choice or inside its delta)
    response_id: str = ""  # the chunks' `id` and `model` (the first non-empty ones)
    response_model: str = ""
    bad_events: int = 0
    json_body: dict[str, Any] | None = None  # the answer was plain JSON, not SSE (read at `close`)
    parser: SSEParser = field(default_factory=SSEParser, repr=False)
    events: int = 0
    _raw: bytearray | None = field(default_factory=bytearray, repr=False)  # the body until its first event

    def feed(self, chunk: bytes, now: float = 0.0) -> None:
        """Read the next bytes of the stream (events may be split anywhere)."""
        raw = self._raw
        if raw is not None:
            if len(raw) + len(chunk) <= JSON_BODY_LIMIT:
                raw += chunk
            else:
                self._raw = None
        for payload in self.parser.feed(chunk):
            self.on_event(payload, now)
        if self.parser.bare_done:
            self.done = True

    def close(self, now: float = 0.0) -> None:
        """The stream ended: read an event left without its blank line, or the body as a plain JSON answer."""
        for payload in self.parser.close():
            self.on_event(payload, now)
        if self.parser.bare_done:
            self.done = True
        if not self.events and self._raw:
            self._read_json_body(bytes(self._raw), now)
        self._raw = None

    def on_event(self, payload: str, now: float) -> None:
        self.events += 1
        self._raw = None  # it is SSE: no JSON body to read at the end
        if payload == DONE:
            self.done = True
            return
        try:
            event = json.loads(payload)
        except (ValueError, RecursionError):
            self.bad_events += 1
            return
        if not isinstance(event, dict):
            self.bad_events += 1
            return
        usage = event.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        if not self.response_id:
            self.response_id = _text(event.get("id"))
        if not self.response_model:
            self.response_model = _text(event.get("model"))
        self._read_choices(event, now, "delta")

    def _read_choices(self, event: dict[str, Any], now: float, part: str) -> None:
        choices = event.get("choices")
        if not isinstance(choices, list):
            return
        texts = 0
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            inner = choice.get(part)
            inner = inner if isinstance(inner, dict) else {}
            text = inner.get("content") if inner else choice.get("text")  # chat, or completions
            if isinstance(text, str) and text:  # the role-only opening delta and empty deltas are not tokens
                self.text_parts.append(text)
                texts += 1
            reason = choice.get("finish_reason") or inner.get("finish_reason")  # on the choice, or in its delta
            if isinstance(reason, str) and reason:
                self.finish_reason = reason
        if texts:
            if self.first_token_at is None:
                self.first_token_at = now
            self.last_token_at = now
            self.content_chunks += 1

    def _read_json_body(self, body: bytes, now: float) -> None:
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return
        if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
            return
        self.json_body = payload
        self.response_id, self.response_model = _text(payload.get("id")), _text(payload.get("model"))
        self._read_choices(payload, now, "message")

    @property
    def body_usage(self) -> dict[str, Any] | None:
        """The `usage` of a plain JSON answer, as sent (None for SSE, or a body without one)."""
        usage = self.json_body.get("usage") if self.json_body is not None else None
        return usage if isinstance(usage, dict) else None

    @property
    def complete(self) -> bool:
        """The answer is whole: `[DONE]` came, a choice finished, or it was a plain JSON answer."""
        return self.done or self.finish_reason is not None or self.json_body is not None

    def end(self, broken: bool) -> str:
        """How the stream ended (a `STREAM_*` value), given whether the connection broke before its end."""
        if self.done:
            return STREAM_BARE_DONE if self.parser.bare_done else STREAM_DONE
        if self.json_body is not None and not broken:
            return STREAM_JSON_BODY
        if self.finish_reason is not None:
            return STREAM_CUT_AFTER_FINISH if broken else STREAM_NO_DONE_MARKER
        return STREAM_CUT if broken else STREAM_NO_FINISH

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def ttft(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started

    @property
    def mean_inter_token(self) -> float | None:
        if self.first_token_at is None or self.last_token_at is None or self.content_chunks < 2:
            return None
        return (self.last_token_at - self.first_token_at) / (self.content_chunks - 1)

    def counted_completion(self, model: str) -> int:
        """The streamed text's tokens, each delta counted with the model's tokenizer (as a gateway counts them)."""
        return sum(count_text_tokens(piece, model) for piece in self.text_parts)

    def tokens(self, estimated_prompt: int, model: str) -> Usage:
        """What the stream consumed: its usage chunk (or a plain JSON answer's usage), else the counted deltas
        with the caller's prompt count."""
        if self.usage is not None:
            return usage_from(self.usage, STREAM_USAGE)
        body_usage = self.body_usage
        if body_usage is not None:
            return usage_from(body_usage, USAGE)
        return Usage(estimated_prompt, self.counted_completion(model), COUNTED_DELTAS)
