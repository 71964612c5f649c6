"""What came back from one HTTP attempt, as the client read it: the same record whichever driver sent it
(the Locust transport over a socket, or the simulator's event)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class AttemptResult:
    """What came back from one attempt (status 0 and `error` set when no response arrived)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    error_detail: str = ""
    ttft_s: float | None = None
    latency_s: float = 0.0
    inter_token_s: float | None = None
    usage: dict[str, Any] | None = None
    usage_source: str = ""
    text: str = ""
    truncated: bool = False
    stream_end: str = ""  # how a stream ended (harness.aoai.sse STREAM_*); empty when no stream was read
    body_bytes: int = 0
    body: bytes = b""
    # the answer's `id`, `model` and choices' finish reasons, when it said (for the attempt's span)
    response_id: str = ""
    response_model: str = ""
    finish_reasons: tuple[str, ...] = ()
