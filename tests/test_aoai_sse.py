"""SSE framing and usage reading, owned by harness.aoai.sse for the gateway, the client and the simulator."""

from __future__ import annotations

import json

import pytest

from harness.aoai import sse
from harness.aoai.sse import (
    COUNTED_DELTAS,
    STREAM_USAGE,
    USAGE,
    SSEParser,
    StreamReader,
    Usage,
    body_usage,
    usage_of_body,
)


def test_sse_parser_handles_events_split_anywhere() -> None:
    raw = b'data: {"x": 1}\n\n: keep-alive\n\ndata: {"x": 2}\r\n\r\nevent: x\ndata: [DONE]\n\n'
    for size in (1, 3, 7, len(raw)):
        parser = SSEParser()
        events: list[str] = []
        for i in range(0, len(raw), size):
            events += parser.feed(raw[i : i + size])
        events += parser.close()
        assert events == ['{"x": 1}', '{"x": 2}', "[DONE]"]


def test_multi_line_data_is_one_event_and_a_last_event_without_its_blank_line_counts() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"a":\ndata:1}\n\ndata: {"b": 2}') == ['{"a":\n1}']
    assert parser.close() == ['{"b": 2}']
    assert parser.close() == []


def chunk(content: str | None = None, usage: dict[str, int] | None = None, finish: str | None = None) -> str:
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]
    return json.dumps({"choices": choices, "usage": usage})


def test_stream_time_to_first_token_inter_token_and_usage() -> None:
    stream = StreamReader(started=10.0)
    stream.on_event(json.dumps({"choices": [], "prompt_filter_results": []}), 10.1)
    stream.on_event(json.dumps({"choices": [{"delta": {"role": "assistant", "content": ""}}]}), 10.2)
    stream.on_event(chunk("Hello"), 10.5)
    stream.on_event(chunk(" there"), 10.6)
    stream.on_event(chunk("!"), 10.9)
    stream.on_event(chunk(None, {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}), 10.95)
    assert not stream.done
    stream.on_event("[DONE]", 11.0)
    assert stream.done and stream.complete
    assert stream.ttft == 0.5
    assert stream.mean_inter_token == pytest.approx(0.2)
    assert stream.text == "Hello there!"
    assert stream.usage == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    assert stream.tokens(99, "gpt-4o") == Usage(5, 3, STREAM_USAGE)


def test_a_stream_is_complete_after_a_finish_reason_even_without_done() -> None:
    stream = StreamReader()
    stream.feed(f"data: {chunk('a')}\n\n".encode())
    assert not stream.complete  # a stream that stops here was cut
    stream.feed(f"data: {chunk('', finish='stop')}\n\n".encode())
    assert stream.complete and not stream.done and stream.finish_reason == "stop"


def test_legacy_completions_text_is_read_and_bad_events_are_counted() -> None:
    stream = StreamReader()
    stream.feed(b'data: {"choices":[{"text":"Hi","finish_reason":"length"}]}\n\ndata: not json\n\ndata: [1]\n\n')
    assert (stream.text, stream.finish_reason, stream.bad_events) == ("Hi", "length", 2)


def test_without_a_usage_chunk_each_delta_is_counted_with_the_tokenizer() -> None:
    stream = StreamReader()
    raw = f"data: {chunk('Hello')}\n\ndata: {chunk(' world')}\n\ndata: [DONE]\n\n".encode()
    for i in range(0, len(raw), 5):  # split anywhere, as a proxy sees it
        stream.feed(raw[i : i + 5])
    assert stream.tokens(7, "gpt-4o") == Usage(7, 2, COUNTED_DELTAS)


def test_usage_of_a_body() -> None:
    body = b'{"usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}'
    assert usage_of_body(body) == Usage(5, 2, USAGE)
    embeddings = b'{"usage": {"prompt_tokens": 4, "total_tokens": 4}}'
    assert usage_of_body(embeddings) == Usage(4, 0, USAGE)
    assert body_usage(embeddings) == {"prompt_tokens": 4, "total_tokens": 4}  # as sent, for the records
    for no_usage in (b"", b"not json", b"[1]", b'{"usage": null}'):
        assert usage_of_body(no_usage) is None and body_usage(no_usage) is None


# -- how a stream ended: every STREAM_* value, whatever the split ------------------------------------------

DELTA_FINISH = b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\ndata: {"choices":[{"delta":{"content":null,"finish_reason":"stop"}}]}\n\n'
PLAIN = b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'
JSON_ANSWER = json.dumps(
    {
        "choices": [{"message": {"content": "Hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5},
    },
    indent=1,  # over several lines, as some servers send it
).encode()


@pytest.mark.parametrize(
    ("raw", "broken", "end"),
    [
        (DELTA_FINISH + b"data: [DONE]\n\n", False, sse.STREAM_DONE),
        (DELTA_FINISH + b"[DONE]", False, sse.STREAM_BARE_DONE),
        (PLAIN + b"[DONE]\n", False, sse.STREAM_BARE_DONE),
        (DELTA_FINISH, False, sse.STREAM_NO_DONE_MARKER),
        (DELTA_FINISH, True, sse.STREAM_CUT_AFTER_FINISH),
        (JSON_ANSWER, False, sse.STREAM_JSON_BODY),
        (PLAIN, False, sse.STREAM_NO_FINISH),
        (PLAIN, True, sse.STREAM_CUT),
        (b"", False, sse.STREAM_NO_FINISH),
    ],
)
def test_how_a_stream_ended(raw: bytes, broken: bool, end: str) -> None:
    for size in (1, 7, max(1, len(raw))):
        stream = StreamReader()
        for i in range(0, len(raw), size):
            stream.feed(raw[i : i + size])
        stream.close()
        assert stream.end(broken) == end
        assert stream.complete == (end in sse.WHOLE_STREAM_ENDS)
        assert stream.text == ("Hi" if raw else "")


def test_a_plain_json_answer_is_counted_from_its_usage_and_its_text_read() -> None:
    stream = StreamReader()
    stream.feed(JSON_ANSWER)
    stream.close()
    assert (stream.text, stream.finish_reason, stream.body_usage) == ("Hi", "stop", json.loads(JSON_ANSWER)["usage"])
    assert stream.tokens(99, "gpt-4o") == Usage(4, 1, USAGE)


def test_a_finish_reason_inside_the_delta_counts_as_on_the_choice() -> None:
    stream = StreamReader()
    stream.feed(DELTA_FINISH)
    assert stream.finish_reason == "stop" and stream.complete and not stream.done
    assert (*sorted(sse.WHOLE_STREAM_ENDS), sse.STREAM_NO_FINISH, sse.STREAM_CUT) == sse.STREAM_ENDS
