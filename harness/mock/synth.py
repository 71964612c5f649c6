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
import random
import struct
import uuid
from typing import Any

from harness.tokens import single_token_words

EMBEDDING_DIMENSIONS = 1536
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


def embeddings_body(
    model: str, inputs: int, prompt_tokens: int, rng: random.Random, dimensions: int, as_base64: bool
) -> dict[str, Any]:
    """A `list` of unit-ish random embedding vectors, one per input (base64 float32 when asked)."""
    data = []
    for index in range(inputs):
        vector = [rng.uniform(-0.05, 0.05) for _ in range(dimensions)]
        encoded: Any = (
            base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode("ascii") if as_base64 else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
