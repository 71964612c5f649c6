"""Building blocks shared by every scenario section: the strict base model, durations, distributions."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from datetime import timedelta
from typing import Annotated, Any, Literal

import isodate
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, model_validator

# Limits on any value of a scenario, whatever field it is for: beyond them a number means nothing here, and
# deeper nesting only serves to overflow a recursive reader.
MAX_NUMBER = 1e15
MAX_NESTING = 32
# The longest duration any field takes (a run, a window, a trip): one year, in seconds.
MAX_DURATION_S = 365 * 86400.0


class Section(BaseModel):
    """Base of every scenario section: unknown fields are errors, names may be APIM's hyphenated ones,
    and numbers are finite (NaN and infinity are refused everywhere)."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, frozen=False, validate_default=True, allow_inf_nan=False
    )


def join_path(keys: Iterable[Any]) -> str:
    """A path as errors spell it.

    >>> join_path(["backends", 0, "deployments", "gpt-4o"])
    'backends[0].deployments.gpt-4o'
    """
    out = ""
    for key in keys:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out += f".{key}" if out else str(key)
    return out


def check_values(data: Any, prefix: tuple[Any, ...] = ()) -> None:
    """Refuse what no field of a scenario takes: NaN, infinity, numbers beyond MAX_NUMBER, nesting deeper than
    MAX_NESTING. A FieldError names the first such place (its path from `prefix`).

    >>> check_values({"run": {"seed": 1, "time_scale": float("nan")}})
    Traceback (most recent call last):
    ...
    harness.scenario.common.FieldError: must be a finite number
    """
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, prefix)]
    while stack:  # iterative: the point is not to recurse over what a file says
        node, path = stack.pop()
        if len(path) - len(prefix) > MAX_NESTING:
            raise FieldError(join_path(path), f"nested deeper than {MAX_NESTING} levels")
        if isinstance(node, dict):
            stack.extend((value, (*path, str(key))) for key, value in node.items())
        elif isinstance(node, list | tuple | set):
            stack.extend((value, (*path, i)) for i, value in enumerate(node))
        elif isinstance(node, float) and not math.isfinite(node):
            raise FieldError(join_path(path), "must be a finite number")
        elif isinstance(node, int | float) and not isinstance(node, bool) and abs(node) > MAX_NUMBER:
            raise FieldError(join_path(path), f"must be a number between -{MAX_NUMBER:.0e} and {MAX_NUMBER:.0e}")


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
        except OverflowError:  # e.g. P99999999999D: more days than a date can hold
            raise ValueError(f"'{value}' is longer than {format_duration(MAX_DURATION_S)}") from None
        except (ValueError, isodate.ISO8601Error):
            raise ValueError(f"'{value}' is not a duration (use ISO 8601 such as PT1M, or seconds)") from None
    else:
        raise ValueError("must be a duration such as PT1M or a number of seconds")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("must be a duration >= 0")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"must be at most {format_duration(MAX_DURATION_S)} (one year)")
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
    # Every quantity a scenario draws (sizes, times) is >= 0: a negative parameter is a mistake, not a choice.
    value: float = Field(0.0, ge=0, description="constant: the value")
    low: float = Field(0.0, ge=0, description="uniform: lower bound")
    high: float = Field(0.0, ge=0, description="uniform: upper bound")
    mean: float = Field(0.0, ge=0, description="normal and exponential: the mean")
    stddev: float = Field(0.0, ge=0, description="normal: the standard deviation")
    median: float = Field(0.0, ge=0, description="lognormal: the median")
    p95: float = Field(0.0, ge=0, description="lognormal: the 95th percentile (>= median)")
    min: float | None = Field(None, ge=0, description="samples below are raised to this")
    max: float | None = Field(None, ge=0, description="samples above are lowered to this")

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
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError("needs max >= min")
        return self

    def upper_bound(self) -> float | None:
        """The largest value a sample can take (None: no bound).

        >>> Distribution(kind="uniform", low=1, high=3).upper_bound(), Distribution(kind="normal", mean=5).upper_bound()
        (3.0, None)
        """
        bound = {"constant": self.value, "uniform": self.high}.get(self.kind)
        if self.max is not None:
            bound = self.max if bound is None else min(bound, self.max)
        return bound

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
