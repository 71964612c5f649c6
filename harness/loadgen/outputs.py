"""Locust's own `--csv` and `--html` outputs say the time scale they were measured at.

The harness hands Locust response times in scenario milliseconds (the unit of the records and the report),
while Locust computes requests per second on the wall clock: at time scale 10, one wall second holds ten
scenario seconds of requests. Read without knowing the scale, the two disagree tenfold. So:

- the HTML report (written before Locust quits) gets a banner at the top of its page saying both units;
- each row of `<prefix>_stats.csv` and `<prefix>_stats_history.csv` gets a `Time Scale` column (scenario
  seconds per wall second) and a `Requests/s (scenario)` column (Locust's rate divided by the scale), added
  as the process exits, after Locust has written the files for the last time. Columns keep their names, so
  tools that read Locust's CSV by header still do.
"""

from __future__ import annotations

import atexit
import csv
import html
from pathlib import Path
from typing import Any

TIME_SCALE_COLUMN = "Time Scale"
SCENARIO_RATE_COLUMN = "Requests/s (scenario)"
BANNER_CLASS = "harness-time-scale"


def units_note(scale: float) -> str:
    """One sentence on the units of Locust's figures at this time scale.

    >>> print(units_note(10))
    Time scale 10 (scenario seconds per wall second): response times are scenario milliseconds; requests per second and failures per second are per wall second, 10 times the scenario's rate.
    """
    if scale == 1:
        return "Time scale 1: response times and rates are in real (wall) time."
    return (
        f"Time scale {scale:g} (scenario seconds per wall second): response times are scenario milliseconds; "
        f"requests per second and failures per second are per wall second, {scale:g} times the scenario's rate."
    )


def mark_html(path: str | Path, scale: float) -> bool:
    """Put the units note at the top of Locust's HTML report; False when there is no such file."""
    path = Path(path)
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    if BANNER_CLASS in text:
        return True
    banner = (
        f'<div class="{BANNER_CLASS}" style="padding:8px 16px;background:#fff3cd;color:#000;'
        f'font-family:sans-serif">{html.escape(units_note(scale))}</div>'
    )
    head, body, rest = text.partition("<body>")
    if not body:
        return False
    path.write_text(f"{head}{body}\n{banner}{rest}", encoding="utf-8")
    return True


def mark_csv(prefix: str, scale: float) -> list[Path]:
    """Add the time scale columns to Locust's stats CSV files of `prefix`; the files changed."""
    changed = []
    for suffix in ("_stats.csv", "_stats_history.csv"):
        path = Path(f"{prefix}{suffix}")
        if not path.is_file():
            continue
        with path.open(newline="", encoding="utf-8") as file:
            rows = list(csv.reader(file))
        if not rows or TIME_SCALE_COLUMN in rows[0]:
            continue
        header = rows[0]
        rate = header.index("Requests/s") if "Requests/s" in header else None
        out = [[*header, TIME_SCALE_COLUMN, SCENARIO_RATE_COLUMN]]
        for row in rows[1:]:
            out.append([*row, f"{scale:g}", _per_scenario_second(row[rate] if rate is not None else "", scale)])
        with path.open("w", newline="", encoding="utf-8") as file:
            csv.writer(file).writerows(out)
        changed.append(path)
    return changed


def _per_scenario_second(value: str, scale: float) -> str:
    try:
        return f"{float(value) / scale:.6g}"
    except ValueError:
        return ""


def mark_outputs(options: Any, scale: float) -> None:
    """At Locust's `quitting`: mark the HTML report now, the CSV files once Locust has closed them."""
    html_file = getattr(options, "html_file", None)
    if html_file:
        mark_html(html_file, scale)
    prefix = getattr(options, "csv_prefix", None)
    if prefix:
        atexit.register(mark_csv, prefix, scale)  # Locust writes its last rows after `quitting`, then exits
