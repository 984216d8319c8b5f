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

    def folder(self) -> Callable[[Any, Any, str, int, str, int], Any]:
        """`update` then `expire` (what folding one event in does), with the kind decided once:
        `(state, value, sub_key, event_time_ms, event_id, now_ms) -> state`.

        A state left as it was may come back as the very object; a changed one is always a new
        object (states are never changed in place: a person's old and new profile share them)."""
        k = self.kind
        if k == "count":
            return lambda state, value, sub_key, t, event_id, now_ms: (state or 0) + 1
        if k == "sum":
            return lambda state, value, sub_key, t, event_id, now_ms: (state or 0.0) + float(value)
        if k == "min":
            return lambda state, value, sub_key, t, event_id, now_ms: (
                value if state is None or value < state else state
            )
        if k == "max":
            return lambda state, value, sub_key, t, event_id, now_ms: (
                value if state is None or value > state else state
            )
        if k == "latest":

            def fold_latest(state: Any, value: Any, sub_key: str, t: int, event_id: str, now_ms: int) -> Any:
                if state is None:
                    return [t, event_id, value]
                at, known = state[0], state[1]
                newer = t > at if t != at else event_id != known and event_id > known
                return [t, event_id, value] if newer else state

            return fold_latest
        if k == "set":
            max_items = self.max_items

            def fold_set(state: Any, value: Any, sub_key: str, t: int, event_id: str, now_ms: int) -> Any:
                if state and value in state:
                    # A set's state is sorted, without repeats, at most max_items long (`update`
                    # and `merge` make no other): one more of a value it holds leaves it as it is.
                    return state
                items = set(state or ())
                items.add(value)
                return sorted(items)[:max_items]

            return fold_set
        window_ms, bucket_ms, counting = self.window_ms, self.bucket_ms, k == "window_count"

        def fold_window(state: Any, value: Any, sub_key: str, t: int, event_id: str, now_ms: int) -> Any:
            cutoff = now_ms - window_ms
            bucket = t - t % bucket_ms
            fresh = bucket + bucket_ms > cutoff  # else older than the window: it never counts
            if not state:
                if not fresh:
                    return state
                return {str(bucket): {sub_key: 0 + (1 if counting else float(value))}}
            # Expired buckets dropped first, then the event added: the same dict, in the same
            # order, as `update` then `expire` (the event's own bucket is never expired).
            buckets = {key: cell for key, cell in state.items() if int(key) + bucket_ms > cutoff}
            if fresh:
                key = str(bucket)
                cell = dict(buckets.get(key, ()))
                cell[sub_key] = cell.get(sub_key, 0) + (1 if counting else float(value))
                buckets[key] = cell
            return buckets

        return fold_window

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
        reach, rounded = self.window_ms + self.bucket_ms, self.kind == "window_sum"
        if by:

            def read_by(state: Any, now_ms: int) -> Any:
                """`read` of a window by sub-key: the same sums, added up in the same order."""
                if state is MISSING or not state:
                    return {}
                oldest = now_ms - reach
                totals: dict[str, Any] = {}
                for key, cell in state.items():
                    if oldest < int(key) <= now_ms:
                        for sub, value in cell.items():
                            totals[sub] = totals.get(sub, 0) + value
                if rounded:
                    totals = {sub: round(value, 6) for sub, value in totals.items()}
                return dict(sorted(totals.items())) if len(totals) > 1 else totals

            return read_by

        def read_total(state: Any, now_ms: int) -> Any:
            """`read` of a window without sub-keys: the same sum, added up in the same order."""
            if state is MISSING or not state:
                return 0
            oldest, total = now_ms - reach, None
            for key, cell in state.items():
                if oldest < int(key) <= now_ms and "" in cell:
                    total = (0 if total is None else total) + cell[""]
            if total is None:
                return 0
            return round(total, 6) if rounded else total

        return read_total

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
