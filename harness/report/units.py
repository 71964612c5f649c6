"""How the report, the console and comparisons write a number: one rule per unit.

>>> percent(0.1234), percent(None), percent(1.0)
('12.3 %', '–', '100.0 %')
"""

from __future__ import annotations

import math

NOTHING = "–"


def percent(fraction: float | None, digits: int = 1) -> str:
    """A share (0-1) as a percentage; every rate is shown this way, everywhere."""
    if fraction is None or not math.isfinite(fraction):
        return NOTHING
    return f"{fraction * 100:.{digits}f} %"


def count(value: float | None) -> str:
    """A count or a token total, thousands separated."""
    if value is None or not math.isfinite(value):
        return NOTHING
    return f"{value:,.0f}"
