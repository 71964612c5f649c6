"""Server-sent events read as they arrive: an incremental parser and the timing/usage of one stream.

>>> parser = SSEParser()
>>> parser.feed(b'data: {"a": 1}\\n\\nda') + parser.feed(b'ta: [DONE]\\n\\n')
['{"a": 1}', '[DONE]']
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


class SSEParser:
    """Split a byte stream into the `data:` payloads of its events (multi-line data joined by newlines)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        events: list[str] = []
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                return events
            line = self._buffer[:newline].rstrip(b"\r")
            self._buffer = self._buffer[newline + 1 :]
            if not line:
                if self._data:
                    events.append("\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                self._data.append(line[5:].removeprefix(b" ").decode("utf-8", "replace"))
            # comments (":") and other fields (event:, id:, retry:) carry nothing the harness needs

    def close(self) -> list[str]:
        """Events left when the connection ends (a last event without its blank line still counts)."""
        events = self.feed(b"\n\n") if self._buffer or self._data else []
        return events


@dataclass
class StreamStats:
    """What one streamed response showed: when tokens came, the text, usage and whether it ended properly.

    Times are in whatever unit the caller passes to `on_event` (scenario seconds in the harness).
    """

    started: float
    first_token_at: float | None = None
    last_token_at: float | None = None
    content_chunks: int = 0
    text_parts: list[str] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    done: bool = False
    bad_events: int = 0

    def on_event(self, payload: str, now: float) -> None:
        if payload == "[DONE]":
            self.done = True
            return
        try:
            event = json.loads(payload)
        except ValueError:
            self.bad_events += 1
            return
        if not isinstance(event, dict):
            self.bad_events += 1
            return
        usage = event.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        text = _delta_text(event)
        if text:  # the role-only opening delta and empty deltas are not tokens
            if self.first_token_at is None:
                self.first_token_at = now
            self.last_token_at = now
            self.content_chunks += 1
            self.text_parts.append(text)

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


def _delta_text(event: dict[str, Any]) -> str | None:
    """The generated text of a chunk, or None for chunks that carry no choice (filter results, usage)."""
    choices = event.get("choices")
    if not isinstance(choices, list) or not choices:
        return None
    parts: list[str] = []
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict):
            content = delta.get("content")
            if isinstance(content, str):
                parts.append(content)
        elif isinstance(choice.get("text"), str):  # legacy completions stream
            parts.append(choice["text"])
    return "".join(parts)
