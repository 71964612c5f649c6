"""One HTTP attempt over geventhttpclient: status, headers, body or SSE stream, timings in scenario time.

Streams are read line by line as they arrive, so the time to the first token is when it reached the
client, not when the response ended. A request with `"stream": true` is read as a stream whatever the
content type, as the openai SDK reads it: whole when it ended on a finish marker (`data: [DONE]`, a bare
`[DONE]` line, a `finish_reason` on the choice or in its delta) or was a plain JSON answer (counted from its
`usage`); only an end before any finish marker truncates it. How it ended is the result's `stream_end`.
"""

from __future__ import annotations

from typing import Any

import gevent
from geventhttpclient import HTTPClient
from geventhttpclient.response import HTTPParseError

from harness import telemetry
from harness.aoai.routes import endpoint_base
from harness.aoai.sse import BODY, STREAM_USAGE_CHUNK, WHOLE_STREAM_ENDS, StreamReader, answer_of_body
from harness.client.attempt import AttemptResult
from harness.clock import Clock


class Transport:
    """A keep-alive connection to one endpoint for one user (geventhttpclient, no asyncio)."""

    def __init__(self, base_url: str, clock: Clock, timeout_s: float) -> None:
        self.clock = clock
        base_url = endpoint_base(base_url)  # a `--host` ending in /openai would double the routes' prefix
        # The client timeout is in scenario time, like every other duration; the socket sees wall time.
        wall_timeout = max(0.5, timeout_s / clock.scale)
        self.client = HTTPClient.from_url(
            base_url, concurrency=1, network_timeout=wall_timeout, connection_timeout=min(wall_timeout, 10.0)
        )
        self.base_path = base_url.split("://", 1)[-1].partition("/")[2].rstrip("/")
        self.server = telemetry.server_attributes(base_url)  # for the attempts' spans

    def close(self) -> None:
        self.client.close()

    def send(self, path: str, body: bytes, headers: dict[str, str], stream: bool) -> AttemptResult:
        started = self.clock.now()
        full_path = f"/{self.base_path}{path}" if self.base_path else path
        try:
            response = self.client.request("POST", full_path, body=body, headers=headers)
        except (TimeoutError, gevent.Timeout) as exc:
            return AttemptResult(0, error="timeout", error_detail=str(exc), latency_s=self.clock.now() - started)
        except (OSError, HTTPParseError) as exc:
            return AttemptResult(0, error="connection", error_detail=str(exc), latency_s=self.clock.now() - started)
        headers_at = self.clock.now()
        result = AttemptResult(response.status_code, {k.lower(): v for k, v in response.items()})
        try:
            if stream and result.status == 200:
                self._read_stream(response, started, result)
            else:
                result.body = response.read()
                result.body_bytes = len(result.body)
                result.ttft_s = headers_at - started
                if result.status == 200:
                    _read_usage(result)
        except (TimeoutError, gevent.Timeout) as exc:
            result.error, result.error_detail = "timeout", str(exc)
        except (OSError, HTTPParseError) as exc:
            # the connection broke after the headers: a stream's reader decided whether it had finished first
            result.error_detail = str(exc)
            if not (stream and result.stream_end):
                result.error = "connection"
        finally:
            response.release()
        result.latency_s = self.clock.now() - started
        return result

    def _read_stream(self, response: Any, started: float, result: AttemptResult) -> None:
        stream = StreamReader(started=started)
        broken = True  # until the body is read to its end or to [DONE]
        try:
            while True:
                line = response.readline(b"\n")
                if not line:  # readline leaves a last line without its line end (a bare `[DONE]`) unread
                    line = response.read()
                    if not line:
                        break
                result.body_bytes += len(line)
                stream.feed(line, self.clock.now())
                if stream.done:
                    break
            broken = False
        finally:
            stream.close(self.clock.now())
            result.ttft_s = stream.ttft
            result.inter_token_s = stream.mean_inter_token
            result.text = stream.text
            result.stream_end = stream.end(broken)
            result.truncated = result.stream_end not in WHOLE_STREAM_ENDS
            if stream.usage is not None:
                result.usage, result.usage_source = stream.usage, STREAM_USAGE_CHUNK
            elif stream.body_usage is not None:
                result.usage, result.usage_source = stream.body_usage, BODY
            result.response_id, result.response_model = stream.response_id, stream.response_model
            result.finish_reasons = (stream.finish_reason,) if stream.finish_reason else ()
        if stream.done:
            response.read()  # drain the end of the chunked body so the connection can be reused


def _read_usage(result: AttemptResult) -> None:
    answer = answer_of_body(result.body)
    if answer.usage is not None:
        result.usage, result.usage_source = answer.usage, BODY
    result.response_id, result.response_model, result.finish_reasons = answer.id, answer.model, answer.finish_reasons
