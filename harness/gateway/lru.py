"""A bounded least-recently-used map, for per-caller caches whose memory must stay flat however many callers come.

>>> cache = BoundedCache(2)
>>> cache.put("a", 1); cache.put("b", 2); cache.get("a"); cache.put("c", 3)
1
>>> cache.get("b") is None, len(cache)
(True, 2)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class BoundedCache:
    """A least-recently-used map of at most `size` entries: lookups and inserts are O(1)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, Any] = OrderedDict()

    def get(self, key: str) -> Any:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: Any) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
