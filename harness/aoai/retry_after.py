"""Retry advice on the wire, read once for everyone: `retry-after-ms`, and `Retry-After` as delta-seconds or an
HTTP date.

Who reads which: a breaker with `acceptRetryAfter` uses `Retry-After` (whole seconds, as APIM documents it);
the openai SDK profiles read `retry-after-ms` first (their own order, in `harness.client.profiles`); logs and
records keep the most precise advice there is (`advised_wait`).

    >>> retry_after_s({"retry-after": "1", "retry-after-ms": "40"}), advised_wait({"retry-after": "1", "retry-after-ms": "40"})
    (1.0, 0.04)
    >>> retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT", "date": "Wed, 21 Oct 2015 07:28:00 GMT"})
    10.0
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping

RETRY_AFTER = "retry-after"
RETRY_AFTER_MS = "retry-after-ms"


def delta_seconds(text: str | None) -> float | None:
    """A finite, non-negative number of seconds ("5", "2.5"), else None."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def http_date(text: str | None) -> float | None:
    """An HTTP date as epoch seconds, else None."""
    if not text:
        return None
    try:
        parsed = email.utils.parsedate_tz(text)
        return float(email.utils.mktime_tz(parsed)) if parsed is not None else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def retry_after_s(headers: Mapping[str, str], now: float | None = None, name: str = RETRY_AFTER) -> float | None:
    """The `Retry-After` header (or the one called `name`) in seconds: delta-seconds, or an HTTP date counted
    from the response's own `Date` header, else from `now` (epoch seconds: when the answer arrived). None when
    absent or unreadable.

        >>> retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412485.0)
        5.0
    """
    text = headers.get(name)
    seconds = delta_seconds(text)
    if seconds is not None or text is None:
        return seconds
    when = http_date(text)
    reference = http_date(headers.get("date"))
    if reference is None:
        reference = now
    if when is None or reference is None:
        return None
    return max(0.0, when - reference)


def retry_after_ms(headers: Mapping[str, str]) -> float | None:
    """The `retry-after-ms` header as received, in milliseconds (None when absent or unreadable)."""
    return delta_seconds(headers.get(RETRY_AFTER_MS))


def advised_wait(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The most precise wait the answer advises, in seconds: `retry-after-ms`, else `Retry-After`."""
    millis = retry_after_ms(headers)
    return millis / 1000.0 if millis is not None else retry_after_s(headers, now)
