"""Building blocks shared by every scenario section: the strict base model, durations, distributions."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from datetime import timedelta
from typing import Annotated, Any, Literal

import isodate
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, model_validator


class Section(BaseModel):
    """Base of every scenario section: unknown fields are errors, names may be APIM's hyphenated ones."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=False, validate_default=True)


class FieldError(ValueError):
    """Raised by a model-level check to blame one field, `path` being relative to that model.

    >>> str(FieldError("deployments", "needs at least one deployment"))
    'needs at least one deployment'
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def index_unique(names: Iterable[str], list_path: str, field: str) -> dict[str, int]:
    """Each name's position in a list; a name seen twice is a FieldError at `list_path[i].field`.

    >>> index_unique(["a", "b"], "apps", "id")
    {'a': 0, 'b': 1}
    >>> index_unique(["a", "a"], "apps", "id")
    Traceback (most recent call last):
    ...
    harness.scenario.common.FieldError: 'a' is also apps[0]
    """
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise FieldError(f"{list_path}[{i}].{field}", f"'{name}' is also {list_path}[{seen[name]}]")
        seen[name] = i
    return seen


def parse_duration(value: Any) -> float:
    """Seconds from an ISO 8601 duration (`PT1M`, `P1D`), a number of seconds, or a `30s`/`5m`/`2h` shorthand.

    >>> parse_duration("PT1M30S"), parse_duration(90), parse_duration("2m")
    (90.0, 90.0, 120.0)
    """
    if isinstance(value, bool):
        raise ValueError("must be a duration such as PT1M or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        text = value.strip()
        units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
        suffix = next((u for u in ("ms", "s", "m", "h", "d") if text.endswith(u) and text[: -len(u)]), None)
        try:
            if text[:1] in ("P", "p"):
                parsed = isodate.parse_duration(text.upper())
                if not isinstance(parsed, timedelta):  # years/months have no fixed length
                    raise ValueError
                seconds = parsed.total_seconds()
            elif suffix:
                seconds = float(text[: -len(suffix)]) * units[suffix]
            else:
                seconds = float(text)
        except (ValueError, isodate.ISO8601Error):
            raise ValueError(f"'{value}' is not a duration (use ISO 8601 such as PT1M, or seconds)") from None
    else:
        raise ValueError("must be a duration such as PT1M or a number of seconds")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("must be a duration >= 0")
    return seconds


def format_duration(seconds: float) -> str:
    """ISO 8601 text for a number of seconds (the form APIM uses).

    >>> format_duration(90), format_duration(86400)
    ('PT1M30S', 'P1D')
    """
    return str(isodate.duration_isoformat(timedelta(seconds=seconds)))


def _positive(value: int) -> int:
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


# An integer count that must be > 0 (TPM, PTUs, ...), with the message users expect.
PositiveInt = Annotated[int, AfterValidator(_positive)]

# A duration field: accepts ISO 8601 or seconds, holds seconds, writes back ISO 8601.
Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]


class Distribution(Section):
    """A random quantity: `constant`, `uniform`, `normal`, `lognormal` or `exponential`, clipped to [min, max].

    A bare number in YAML means a constant. `lognormal` takes the median and p95 of the quantity, which is
    how latency is usually reported.

        >>> d = Distribution.model_validate({"kind": "uniform", "low": 1, "high": 3})
        >>> 1 <= d.sample(random.Random(0)) <= 3
        True
    """

    kind: Literal["constant", "uniform", "normal", "lognormal", "exponential"] = Field(
        "constant", description="shape of the distribution"
    )
    value: float = Field(0.0, description="constant: the value")
    low: float = Field(0.0, description="uniform: lower bound")
    high: float = Field(0.0, description="uniform: upper bound")
    mean: float = Field(0.0, description="normal and exponential: the mean")
    stddev: float = Field(0.0, ge=0, description="normal: the standard deviation")
    median: float = Field(0.0, ge=0, description="lognormal: the median")
    p95: float = Field(0.0, ge=0, description="lognormal: the 95th percentile (>= median)")
    min: float | None = Field(None, description="samples below are raised to this")
    max: float | None = Field(None, description="samples above are lowered to this")

    @model_validator(mode="before")
    @classmethod
    def _scalar_is_constant(cls, data: Any) -> Any:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return {"kind": "constant", "value": data}
        return data

    @model_validator(mode="after")
    def _check_parameters(self) -> Distribution:
        if self.kind == "uniform" and self.high < self.low:
            raise ValueError("uniform needs high >= low")
        if self.kind == "lognormal" and (self.median <= 0 or self.p95 < self.median):
            raise ValueError("lognormal needs median > 0 and p95 >= median")
        if self.kind == "exponential" and self.mean <= 0:
            raise ValueError("exponential needs mean > 0")
        return self

    def expected(self) -> float:
        """The distribution's central value (mean, or median for lognormal), before clipping."""
        return {
            "constant": self.value,
            "uniform": (self.low + self.high) / 2,
            "normal": self.mean,
            "exponential": self.mean,
            "lognormal": self.median,
        }[self.kind]

    def sample(self, rng: random.Random) -> float:
        if self.kind == "constant":
            x = self.value
        elif self.kind == "uniform":
            x = rng.uniform(self.low, self.high)
        elif self.kind == "normal":
            x = rng.gauss(self.mean, self.stddev)
        elif self.kind == "exponential":
            x = rng.expovariate(1.0 / self.mean)
        else:
            sigma = math.log(self.p95 / self.median) / 1.6448536269514722 if self.p95 > self.median else 0.0
            x = rng.lognormvariate(math.log(self.median), sigma)
        if self.min is not None:
            x = max(self.min, x)
        if self.max is not None:
            x = min(self.max, x)
        return x


def constant(value: float) -> Distribution:
    return Distribution(kind="constant", value=value)
