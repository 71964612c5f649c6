"""What a response consumed: `usage` from a JSON body, or from a stream (usage chunk, else counted deltas).

`StreamTally` reads server-sent events as they pass through, without holding them back: it only looks
for the usage chunk and the generated text, and counts the text with the model's tokenizer when the
stream carried no usage.

    >>> tally = StreamTally("gpt-4o")
    >>> tally.feed(b'data: {"choices":[{"delta":{"content":"Hello"}}]}\\n\\ndata: {"choi')
    >>> tally.feed(b'ces":[{"delta":{"content":" world"}}]}\\n\\ndata: [DONE]\\n\\n')
    >>> tally.completion_tokens(), tally.counted_by
    (2, 'counted_deltas')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from harness.tokens import count_text_tokens

USAGE = "usage"
STREAM_USAGE = "stream_usage"
COUNTED_DELTAS = "counted_deltas"
APIM_COMPAT = "apim_compat"


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one request consumed, and where the numbers came from."""

    prompt: int
    completion: int
    counted_by: str

    @property
    def total(self) -> int:
        return self.prompt + self.completion


def usage_of_body(body: bytes) -> Usage | None:
    """`usage` of a non-streamed JSON answer (None when the body has none)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt = _int(usage.get("prompt_tokens"))
    total = _int(usage.get("total_tokens"))
    completion = _int(usage.get("completion_tokens"), total - prompt)
    return Usage(prompt, max(0, completion), USAGE)


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class StreamTally:
    """Follows one SSE stream chunk by chunk; events may be split across chunks."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._partial = b""
        self._pieces: list[str] = []
        self.usage: Usage | None = None

    def feed(self, chunk: bytes) -> None:
        data = self._partial + chunk if self._partial else chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an unfinished line waits for the next chunk
        for line in lines:
            if line.startswith(b"data:"):
                self._event(line[5:].strip())

    def _event(self, data: bytes) -> None:
        if not data or data == b"[DONE]":
            return
        try:
            payload = json.loads(data)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        usage = payload.get("usage")
        if isinstance(usage, dict):
            prompt = _int(usage.get("prompt_tokens"))
            completion = _int(usage.get("completion_tokens"), _int(usage.get("total_tokens")) - prompt)
            self.usage = Usage(prompt, completion, STREAM_USAGE)
        for choice in payload.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if isinstance(text, str) and text:
                self._pieces.append(text)

    def completion_tokens(self) -> int:
        """Generated tokens: from the usage chunk, else each delta counted with the tokenizer."""
        if self.usage is not None:
            return self.usage.completion
        return sum(count_text_tokens(piece, self.model) for piece in self._pieces)

    @property
    def counted_by(self) -> str:
        return STREAM_USAGE if self.usage is not None else COUNTED_DELTAS

    def result(self, estimated_prompt: int) -> Usage:
        """The stream's usage; without a usage chunk the prompt is the gateway's own count."""
        if self.usage is not None:
            return self.usage
        return Usage(estimated_prompt, self.completion_tokens(), COUNTED_DELTAS)
