"""Prompts of a known size: text whose tiktoken count is exactly what the workload asked for.

Built from common English words that are one token each with their leading space, so the count is exact
by construction (and checked); texts are cached per size because a load run asks for the same sizes often.

    >>> from harness.tokens import count_chat_tokens
    >>> count_chat_tokens(chat_messages(50, "gpt-4o"), "gpt-4o")
    50
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from harness.tokens import (
    TOKENS_PER_MESSAGE,
    TOKENS_REPLY_PRIMING,
    count_text_tokens,
    remember_count,
    single_token_words,
)


@lru_cache(maxsize=8)
def _spaced_words(model: str) -> tuple[str, ...]:
    return tuple(" " + w for w in single_token_words(model))


@lru_cache(maxsize=4096)
def text_of_tokens(tokens: int, model: str = "gpt-4o", seed: int = 0) -> str:
    """Text that counts as exactly `tokens` tokens for `model`'s tokenizer (at least 1)."""
    tokens = max(1, int(tokens))
    words = _spaced_words(model)
    rng = random.Random(seed * 1_000_003 + tokens)
    text = "".join(rng.choice(words) for _ in range(tokens))
    # Adjacent words could in principle merge; trim or pad until the tokenizer agrees.
    for _ in range(8):
        counted = count_text_tokens(text, model)
        if counted == tokens:
            remember_count(text, model, counted)  # requests built from it are counted without the tokenizer
            break
        text = text[: -len(words[0])] if counted > tokens else text + words[0]
    return text


def chat_overhead(model: str, role: str = "user") -> int:
    """Tokens a one-message chat prompt costs beyond its content."""
    return TOKENS_REPLY_PRIMING + TOKENS_PER_MESSAGE + count_text_tokens(role, model)


def chat_messages(prompt_tokens: int, model: str = "gpt-4o", seed: int = 0) -> list[dict[str, Any]]:
    """One user message sized so that `usage.prompt_tokens` of the chat request is `prompt_tokens`."""
    content = max(1, int(prompt_tokens) - chat_overhead(model))
    return [{"role": "user", "content": text_of_tokens(content, model, seed)}]


def warm_up(models: Iterable[str]) -> None:
    """Load each model's tokenizer and word list now, so the first request does not wait ~0.1 s for them.

    >>> warm_up(["gpt-4o"])
    """
    for model in sorted(set(models)):
        text_of_tokens(1, model)
