"""Tag kinds: how one tag's state is updated by an event, merged with another person's, and read.

Every kind's state is plain JSON, and `merge` is commutative and associative, so a profile built
from any split of a person's events and merged in any order equals the profile built from all of
them at once (the property the tag tests check).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

WINDOW_KINDS = frozenset({"window_count", "window_sum"})
MISSING: Any = object()
"""A tag a person has no state for yet (`Kind.reader`)."""


def _bucket(event_time_ms: int, bucket_ms: int) -> int:
    return event_time_ms - event_time_ms % bucket_ms


class Kind:
    """count, sum, min, max, latest, set, window_count, window_sum."""

    def __init__(self, kind: str, window_ms: int = 0, bucket_ms: int = 0, max_items: int = 100):
        self.kind = kind
        self.window_ms = window_ms
        self.bucket_ms = bucket_ms
        self.max_items = max_items

    @property
    def windowed(self) -> bool:
        return self.kind in WINDOW_KINDS

    def initial(self) -> Any:
        return {"count": 0, "sum": 0.0, "set": [], "window_count": {}, "window_sum": {}}.get(self.kind)

    def update(
        self, state: Any, value: Any, sub_key: str, event_time_ms: int, event_id: str, now_ms: int
    ) -> Any:
        """The new state (unchanged for an event too old to count in a window)."""
        k = self.kind
        if k == "count":
            return (state or 0) + 1
        if k == "sum":
            return (state or 0.0) + float(value)
        if k == "min":
            return value if state is None or value < state else state
        if k == "max":
            return value if state is None or value > state else state
        if k == "latest":
            if state is None:
                return [event_time_ms, event_id, value]
            # [event_time_ms, event_id] > state[:2], as lists compare, without making them
            at, known = state[0], state[1]
            newer = event_time_ms > at if event_time_ms != at else event_id != known and event_id > known
            return [event_time_ms, event_id, value] if newer else state
        if k == "set":
            items = set(state or ())
            items.add(value)
            return sorted(items)[: self.max_items]
        # windowed: per bucket of event time, per sub-key
        bucket = _bucket(event_time_ms, self.bucket_ms)
        if bucket + self.bucket_ms <= now_ms - self.window_ms:
            return state  # older than the window: it could never count again
        buckets = dict(state or {})
        cell = dict(buckets.get(str(bucket), {}))
        cell[sub_key] = cell.get(sub_key, 0) + (1 if k == "window_count" else float(value))
        buckets[str(bucket)] = cell
        return buckets

    def merge(self, a: Any, b: Any) -> Any:
        if a is None:
            return b
        if b is None:
            return a
        k = self.kind
        if k in ("count", "sum"):
            return a + b
        if k == "min":
            return min(a, b)
        if k == "max":
            return max(a, b)
        if k == "latest":
            return a if a[:2] >= b[:2] else b
        if k == "set":
            return sorted(set(a) | set(b))[: self.max_items]
        merged = {key: dict(cell) for key, cell in a.items()}
        for key, cell in b.items():
            target = merged.setdefault(key, {})
            for sub, value in cell.items():
                target[sub] = target.get(sub, 0) + value
        return merged

    def expire(self, state: Any, now_ms: int) -> Any:
        """Drop window buckets that can no longer count (keeps windowed state bounded)."""
        if not self.windowed or not state:
            return state
        cutoff = now_ms - self.window_ms
        return {key: cell for key, cell in state.items() if int(key) + self.bucket_ms > cutoff}

    def reader(self, by: bool) -> Callable[[Any, int], Any]:
        """`read` with the kind decided once: `(state, now_ms) -> value`, the state `MISSING` for
        a tag the person has none of (`read` of `initial()`)."""
        k = self.kind
        if k == "latest":
            return lambda state, now_ms: None if state is MISSING or state is None else state[2]
        if k == "sum":
            return lambda state, now_ms: round(0.0 if state is MISSING else (state or 0.0), 6)
        if k == "count":
            return lambda state, now_ms: 0 if state is MISSING else state
        if k == "set":
            return lambda state, now_ms: [] if state is MISSING else state
        if not self.windowed:  # min, max
            return lambda state, now_ms: None if state is MISSING else state
        read = self.read
        return lambda state, now_ms: read({} if state is MISSING else state, now_ms, by)

    def read(self, state: Any, now_ms: int, by: bool) -> Any:
        k = self.kind
        if k == "latest":
            return None if state is None else state[2]
        if k == "sum":
            return round(state or 0.0, 6)
        if not self.windowed:
            return state
        totals: dict[str, float] = {}
        oldest = now_ms - self.window_ms - self.bucket_ms  # a bucket counts while it ends after the cutoff
        for key, cell in (state or {}).items():
            if oldest < int(key) <= now_ms:
                for sub, value in cell.items():
                    totals[sub] = totals.get(sub, 0) + value
        if k == "window_sum":
            totals = {sub: round(value, 6) for sub, value in totals.items()}
        if by:
            return dict(sorted(totals.items()))
        return totals.get("", 0)
