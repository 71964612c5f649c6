"""Response bodies shaped exactly like Azure OpenAI's, with `usage` true for the text they carry.

Generated text is a sequence of common English words, each a single token (with or without its leading
space) in the model's tokenizer, so a tiktoken count of the text equals `usage.completion_tokens`.

    >>> import random
    >>> pieces = TextSource("gpt-4o").pieces(3, random.Random(1))
    >>> len(pieces), pieces[1].startswith(" ")
    (3, True)
"""

from __future__ import annotations

import base64
import json
import random
import struct
import uuid
from functools import cache
from typing import Any

from harness.aoai.bodies import SLICE_BYTES, SlicedBody
from harness.tokens import single_token_words

EMBEDDING_DIMENSIONS = 1536
# Embedding vectors are drawn from a bank made once per size: a 2,048-input answer is then a join of ready JSON
# (tens of milliseconds) instead of three million floats drawn and printed (seconds, with the event loop stopped).
EMBEDDING_BANK_SIZE = 16
# A real completion never runs forever; this bounds a request that sets no max_tokens.
MAX_GENERATED_TOKENS = 4096

CONTENT_FILTER_OK: dict[str, Any] = {
    category: {"filtered": False, "severity": "safe"} for category in ("hate", "self_harm", "sexual", "violence")
}


def prompt_filter_results() -> list[dict[str, Any]]:
    return [{"prompt_index": 0, "content_filter_results": CONTENT_FILTER_OK}]


class TextSource:
    """Makes completion text of an exact token count for one model."""

    def __init__(self, model: str) -> None:
        self.words = single_token_words(model)
        self.spaced = tuple(" " + w for w in self.words)

    def pieces(self, n: int, rng: random.Random) -> list[str]:
        """`n` text pieces of one token each; joined they are a text of exactly `n` tokens."""
        if n <= 0:
            return []
        return [rng.choice(self.words), *rng.choices(self.spaced, k=n - 1)]


def completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:29]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_body(
    model: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int, created: int
) -> dict[str, Any]:
    """A non-streamed `chat.completion` object."""
    return {
        "id": completion_id("chatcmpl"),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_mock",
        "prompt_filter_results": prompt_filter_results(),
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "logprobs": None,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "content_filter_results": CONTENT_FILTER_OK,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def completions_body(
    model: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int, created: int
) -> dict[str, Any]:
    """A non-streamed legacy `text_completion` object."""
    return {
        "id": completion_id("cmpl"),
        "object": "text_completion",
        "created": created,
        "model": model,
        "prompt_filter_results": prompt_filter_results(),
        "choices": [
            {
                "index": 0,
                "text": text,
                "finish_reason": finish_reason,
                "logprobs": None,
                "content_filter_results": CONTENT_FILTER_OK,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


@cache
def _vector_bank(dimensions: int, as_base64: bool) -> tuple[bytes, ...]:
    """`EMBEDDING_BANK_SIZE` random vectors of `dimensions`, each already JSON (a list, or base64 float32 text).

    Values are printed with 9 significant digits, about as long as AOAI's, so an answer is as large as theirs.
    """
    rng = random.Random(dimensions)
    bank = []
    for _ in range(EMBEDDING_BANK_SIZE):
        vector = [rng.uniform(-0.05, 0.05) for _ in range(dimensions)]
        if as_base64:
            bank.append(json.dumps(base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode("ascii")).encode())
        else:
            bank.append(("[" + ",".join(f"{x:.9g}" for x in vector) + "]").encode())
    return tuple(bank)


def embeddings_answer(
    model: str, inputs: int, prompt_tokens: int, rng: random.Random, dimensions: int, as_base64: bool
) -> SlicedBody:
    """An embeddings `list` answer, one vector per input (base64 float32 when asked), built without a float drawn
    or printed per request and without one copy of the whole answer.

    >>> answer = json.loads(bytes(embeddings_answer("m", 2, 7, random.Random(1), 4, False)))
    >>> [len(item["embedding"]) for item in answer["data"]], answer["usage"]
    ([4, 4], {'prompt_tokens': 7, 'total_tokens': 7})
    """
    bank = _vector_bank(dimensions, as_base64)
    slices: list[bytes] = []
    parts: list[bytes] = [b'{"object":"list","data":[']
    size = 0
    for index in range(inputs):
        vector = bank[rng.randrange(len(bank))]
        parts += (b"," if index else b"", b'{"object":"embedding","index":%d,"embedding":' % index, vector, b"}")
        size += len(vector) + 48
        if size >= SLICE_BYTES:
            slices.append(b"".join(parts))
            parts, size = [], 0
    tail = json.dumps(
        {"model": model, "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}},
        separators=(",", ":"),
    ).encode()
    parts += (b"],", tail[1:])
    slices.append(b"".join(parts))
    return SlicedBody(slices)
