"""A bounded memo shared by the reader threads: values computed from their key and nothing else.

The read path decodes the same bytes again and again: the ``recent`` rows of a host's open window
are read by every query of the host until compaction, and so are the series tables of its rollup
rows. Keyed by those bytes (a key holds everything its value is computed from), an entry can never
be stale: rows that compaction rewrites or deletes are looked up under their new bytes, and the old
entries age out. Values are shared between readers, so they are immutable (tuples) or never changed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_BUDGET = 16 * 1024 * 1024  # bytes, as the values' ``cost`` estimates them


class Memo(Generic[K, V]):
    """``key -> value`` for up to ``budget`` units of cost, the least recently used dropped first; a
    value that costs over an eighth of the budget is computed and not kept. Thread-safe."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self.cost = 0
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K, make: Callable[[], tuple[V, int]]) -> V:
        """The value of ``key``; ``make()`` computes it and its cost when it is not kept (an
        exception from ``make`` leaves nothing behind)."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit[0]
        value, cost = make()  # outside the lock: another reader may compute the same, which is fine
        if cost <= self.budget // 8:
            with self._lock:
                if key not in self._items:
                    self._items[key] = (value, cost)
                    self.cost += cost
                while self.cost > self.budget:
                    self.cost -= self._items.popitem(last=False)[1][1]
        return value
