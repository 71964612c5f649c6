"""The live throttling view: what the run's attempts and the gateway's breaker log say right now.

Fed every record as it is written (the writer's observer) and, for embedded runs with a gateway, the
breaker rows of gateway.jsonl as they are flushed. `snapshot()` is the JSON of `GET /harness/throttling`
and of the web UI's Throttling tab. Rates are per wall second over the last `WINDOW_WALL_S` wall seconds
(the same clock as Locust's RPS); Retry-After and breaker times are in scenario seconds.

Nothing in it grows with the number of attempts, whether or not anyone looks: the rates are counts per
wall second, of which only the last `WINDOW_WALL_S` are kept; the Retry-After values for the median are
the latest `RETRY_AFTER_KEPT`; everything else is a count or a latest value per backend, deployment or app.

    >>> from harness.clock import VirtualClock
    >>> view = LiveThrottling(VirtualClock(start=100.0))
    >>> view.add({"error_kind": "backend_429", "backend": "ptu", "retry_after_ms": 2500.0, "decision": "retry",
    ...           "retry_wait_s": 2.5, "retry_wait_source": "retry-after-ms"})
    >>> view.snapshot()["attempts"]["total"]["backend_429"], view.snapshot()["retry_after"]["max_s"]
    (1, 2.5)
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.clock import Clock
from harness.records import RECORD_FIELDS, RECORD_KINDS, parse_cell
from harness.records.outcomes import CAUSE_NAMES, THROTTLING_KINDS, Decision, WaitSource

WINDOW_WALL_S = 10.0
PTU_POINTS_KEPT = 600  # per PTU deployment, one utilization point per wall second: the chart's last ten minutes
RETRY_AFTER_KEPT = 10_000  # the p50 is over the latest Retry-After values, so a long run stays cheap
SUCCESS, OTHER = "success", "other_error"
OUTCOME_KEYS = (SUCCESS, *THROTTLING_KINDS, OTHER)
OUTCOME_NAMES = {SUCCESS: "success", **{k: CAUSE_NAMES[k] for k in THROTTLING_KINDS}, OTHER: "other error"}
REACTIONS = ("waited_retry_after", "own_backoff", "retried_at_once", "gave_up", "failed")
NOT_AVAILABLE = "not available"
_FIELDS_READ = (
    "error_kind",
    "backend",
    "deployment",
    "app_id",
    "usage_total",
    "retry_after_s",
    "retry_after_ms",
    "ratelimit_remaining_tokens",
    "ratelimit_remaining_requests",
    "ptu_utilization",
    "gateway_remaining_tokens",
    "gateway_remaining_quota",
    "decision",
    "retry_wait_s",
    "retry_wait_source",
)
_CELL_INDEX = {name: RECORD_FIELDS.index(name) for name in _FIELDS_READ}
_BREAKER_PREFIX = b'{"kind":"breaker"'


RETRIED_SUFFIX = " (retried)"


def retried_entry(request_type: str, cause: str) -> str:
    """Locust's entry for attempts refused for `cause` and retried.

    >>> retried_entry("chat", CAUSE_NAMES["backend_429"])
    'chat · 429 backend rate limit (retried)'
    """
    return f"{request_type} · {cause}{RETRIED_SUFFIX}"


def outcome_of(error_kind: str | None) -> str:
    """The throttling view's outcome key of a record's `error_kind`."""
    if not error_kind:
        return SUCCESS
    return error_kind if error_kind in THROTTLING_KINDS else OTHER


def reaction_of(record: dict[str, Any]) -> str | None:
    """What the client did after an attempt that was refused (None when it succeeded)."""
    decision = record.get("decision")
    if decision == Decision.RETRY:
        source = record.get("retry_wait_source") or ""
        if not record.get("retry_wait_s"):
            return "retried_at_once"
        return "own_backoff" if source == WaitSource.BACKOFF else "waited_retry_after"
    if decision == Decision.GIVE_UP:
        return "gave_up"
    if decision == Decision.FAIL:
        return "failed"
    return None


@dataclass
class Breaker:
    state: str = "closed"
    until: float | None = None  # scenario time an open breaker closes


class BreakerLog:
    """The breaker transitions of a gateway.jsonl, read incrementally (only new complete lines)."""

    def __init__(self, path: Path, members: Iterable[str]) -> None:
        self.path = path
        self.offset = 0
        self.breakers = {name: Breaker() for name in members}

    def update(self) -> None:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next update
        self.offset += end
        for line in chunk[:end].splitlines():
            if line.startswith(_BREAKER_PREFIX):
                row = json.loads(line)
                self.breakers[row["backend"]] = Breaker(row.get("to") or "open", row.get("until"))

    def states(self, now: float) -> list[dict[str, Any]]:
        out = []
        for name, breaker in self.breakers.items():
            is_open = breaker.state == "open" and (breaker.until is None or breaker.until > now)
            reopens = round(breaker.until - now, 3) if is_open and breaker.until is not None else None
            out.append({"backend": name, "state": "open" if is_open else "closed", "closes_in_s": reopens})
        return out


class LiveThrottling:
    """Running figures of one run's attempts; `snapshot()` is what the Throttling tab shows."""

    def __init__(self, clock: Clock, breakers: BreakerLog | None = None, primary: str | None = None) -> None:
        self.clock = clock
        self.breakers = breakers
        self.primary = primary
        self.totals: Counter[str] = Counter()
        # attempts per outcome in each of the last wall seconds: [second, counts], at most a window's worth
        self.recent: deque[tuple[int, Counter[str]]] = deque(maxlen=int(WINDOW_WALL_S) + 1)
        self.tokens_by_backend: Counter[str] = Counter()
        self.ratelimit: dict[tuple[str, str], dict[str, Any]] = {}
        # (backend, deployment) -> [wall second since the view began, utilization %], the latest per second
        self.ptu: dict[tuple[str, str], deque[list[float]]] = {}
        self.began = clock.wall()
        self.gateway_remaining: dict[str, dict[str, Any]] = {}
        self.retry_after: deque[float] = deque(maxlen=RETRY_AFTER_KEPT)
        self.retry_after_max: float | None = None
        self.reactions: Counter[str] = Counter()
        self.saw_backend_header = False

    def add(self, record: dict[str, Any]) -> None:
        """Count one attempt's record (a dict with the record's fields)."""
        outcome = outcome_of(record.get("error_kind"))
        self.totals[outcome] += 1
        second = int(self.clock.wall())
        if not self.recent or self.recent[-1][0] != second:
            self.recent.append((second, Counter()))
        self.recent[-1][1][outcome] += 1
        backend = record.get("backend") or ""
        if backend:
            self.saw_backend_header = True
            self.tokens_by_backend[backend] += int(record.get("usage_total") or 0)
        remaining = record.get("ratelimit_remaining_tokens"), record.get("ratelimit_remaining_requests")
        if remaining != (None, None):
            key = (backend or NOT_AVAILABLE, record.get("deployment") or "")
            self.ratelimit[key] = {"tokens": remaining[0], "requests": remaining[1]}
        utilization = record.get("ptu_utilization")
        if utilization is not None:
            self._note_utilization((backend or NOT_AVAILABLE, record.get("deployment") or ""), float(utilization))
        gateway = record.get("gateway_remaining_tokens"), record.get("gateway_remaining_quota")
        if gateway != (None, None):
            self.gateway_remaining[record.get("app_id") or ""] = {"tokens": gateway[0], "quota_tokens": gateway[1]}
        retry_after = _retry_after_s(record)
        if retry_after is not None:
            self.retry_after.append(retry_after)
            self.retry_after_max = max(retry_after, self.retry_after_max or retry_after)
            reaction = reaction_of(record)
            if reaction is not None:
                self.reactions[reaction] += 1

    def _note_utilization(self, key: tuple[str, str], utilization: float) -> None:
        series = self.ptu.setdefault(key, deque(maxlen=PTU_POINTS_KEPT))
        second = float(int(self.clock.wall() - self.began))
        if series and series[-1][0] == second:
            series[-1][1] = utilization
        else:
            series.append([second, utilization])

    def add_cells(self, rows: Iterable[list[str]]) -> None:
        """Count records shipped as CSV cells (a distributed run's workers)."""
        for cells in rows:
            self.add({name: parse_cell(RECORD_KINDS[name], cells[i]) for name, i in _CELL_INDEX.items()})

    def _rates(self) -> dict[str, float]:
        # the current second, still filling, and the full seconds before it, WINDOW_WALL_S in all
        since = int(self.clock.wall()) - int(WINDOW_WALL_S) + 1
        counts: Counter[str] = Counter()
        for second, per_outcome in self.recent:
            if second >= since:
                counts.update(per_outcome)
        return {key: round(counts[key] / WINDOW_WALL_S, 3) for key in OUTCOME_KEYS}

    def snapshot(self) -> dict[str, Any]:
        """Every panel of the Throttling tab; backend-side panels are None when this run cannot see them."""
        attempts = sum(self.totals.values())
        throttled = sum(self.totals[k] for k in THROTTLING_KINDS)
        breakers = None
        if self.breakers is not None:
            self.breakers.update()
            breakers = self.breakers.states(self.clock.now())
        tokens = sum(self.tokens_by_backend.values())
        share = (
            {name: round(n / tokens, 4) for name, n in sorted(self.tokens_by_backend.items())}
            if self.saw_backend_header and tokens
            else None
        )
        values = list(self.retry_after)
        return {
            "attempts": {
                "window_wall_s": WINDOW_WALL_S,
                "per_wall_s": self._rates(),
                "total": {key: self.totals[key] for key in OUTCOME_KEYS},
                "all": attempts,
                "throttled_share": round(throttled / attempts, 4) if attempts else 0.0,
            },
            "breakers": breakers,
            "primary": self.primary,
            "token_share_by_backend": share,
            "ratelimit_remaining": [
                {"backend": backend, "deployment": deployment, **values_}
                for (backend, deployment), values_ in sorted(self.ratelimit.items())
            ],
            "gateway_remaining_by_app": dict(sorted(self.gateway_remaining.items())) or None,
            "ptu_utilization": [
                {"backend": backend, "deployment": deployment, "latest": series[-1][1], "series": list(series)}
                for (backend, deployment), series in sorted(self.ptu.items())
            ],
            "retry_after": {
                "count": len(values),
                "p50_s": round(statistics.median(values), 3) if values else None,
                "max_s": self.retry_after_max,
            },
            "reactions": {key: self.reactions[key] for key in REACTIONS},
        }


def _retry_after_s(record: dict[str, Any]) -> float | None:
    ms = record.get("retry_after_ms")
    if ms is not None:
        return float(ms) / 1000.0
    seconds = record.get("retry_after_s")
    return float(seconds) if seconds is not None else None


def table_rows(snapshot: dict[str, Any]) -> list[dict[str, str]]:
    """The snapshot as rows of the Throttling tab's table: panel, item, value, detail (all text)."""
    rows: list[dict[str, str]] = []

    def row(panel: str, item: str, value: Any, detail: str = "") -> None:
        rows.append({"panel": panel, "item": item, "value": str(value), "detail": detail})

    for key, value in (snapshot.get("run") or {}).items():
        row("run", key, "" if value is None else value)
    attempts = snapshot["attempts"]
    for key in OUTCOME_KEYS:
        row(
            f"attempts per wall s (last {attempts['window_wall_s']:g} s)",
            OUTCOME_NAMES[key],
            attempts["per_wall_s"][key],
            f"{attempts['total'][key]} in the run",
        )
    row("attempts", "throttled share", f"{attempts['throttled_share']:.1%}", f"of {attempts['all']} attempts")
    if snapshot["breakers"] is None:
        row("breaker state", "every backend", NOT_AVAILABLE, "backend side: only an embedded gateway logs it")
    for breaker in snapshot["breakers"] or []:
        closes = breaker["closes_in_s"]
        primary = " (primary)" if breaker["backend"] == snapshot.get("primary") else ""
        row(
            "breaker state",
            breaker["backend"] + primary,
            breaker["state"],
            f"closes in {closes:g} scenario s" if closes is not None else "",
        )
    share = snapshot["token_share_by_backend"]
    if share is None:
        row("token share", "per backend", NOT_AVAILABLE, "no x-backend header in the answers")
    for backend, fraction in (share or {}).items():
        row("token share", backend, f"{fraction:.1%}")
    for entry in snapshot["ratelimit_remaining"]:
        row(
            "x-ratelimit-remaining (latest)",
            f"{entry['backend']} / {entry['deployment']}",
            f"tokens {entry['tokens']}",
            f"requests {entry['requests']}",
        )
    gateway = snapshot["gateway_remaining_by_app"]
    if gateway is None:
        row("gateway remaining tokens", "per app", NOT_AVAILABLE, "no token-limit headers in the answers")
    for app, entry in (gateway or {}).items():
        quota = entry["quota_tokens"]
        row("gateway remaining tokens", app, entry["tokens"], "no quota" if quota is None else f"quota {quota}")
    for entry in snapshot.get("ptu_utilization") or []:
        row("PTU utilization (latest)", f"{entry['backend']} / {entry['deployment']}", f"{entry['latest']:g} %")
    retry = snapshot["retry_after"]
    row("Retry-After received", "p50 / max (scenario s)", f"{retry['p50_s']} / {retry['max_s']}", f"{retry['count']}")
    for key, count in snapshot["reactions"].items():
        row("what clients did with it", key.replace("_", " "), count)
    return rows
