"""De-duplication by `event_id`: a repeated event is processed once.

The de-duplicator remembers, per event_id, the position of the record that first carried it
(partition:offset, and the event's place in that record's envelope). A record at another position
with a known event_id is a duplicate (a producer retry, a resend). The *same* record seen again is
a redelivery after a crash (at-least-once): it passes again, because its first pass may not have
reached the output before the crash.

Event ids are remembered for `dedupe.retention` of event time (topology.yaml), then forgotten by
`EventIdExpiry`: that retention bounds the table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def position(partition: int, offset: int, index: int = 0) -> str:
    """Where an event was: its record (partition:offset) and its place in that record's envelope."""
    return f"{partition}:{offset}:{index}"


def is_first_delivery(recorded: str | None, current: str) -> bool:
    """Whether the record at `current` should be processed, given the position recorded before.

    >>> is_first_delivery(None, "3:10"), is_first_delivery("3:10", "3:10"), is_first_delivery("3:10", "3:11")
    (True, True, False)
    """
    return recorded is None or recorded == current


def remembered(position_: str, event_time_ms: int) -> list[Any]:
    """What the de-duplicator keeps per event_id: where it was first seen, and its event time."""
    return [position_, event_time_ms]


def recorded_position(value: Any) -> str | None:
    """The position in a remembered value (also from state written before event times were kept)."""
    if value is None:
        return None
    return value if isinstance(value, str) else str(value[0])


def _event_time(value: Any) -> int:
    return 0 if isinstance(value, str) else int(value[1])


Scan = Callable[[int, Any, int], list[tuple[Any, Any]]]
"""(partition, after_key or None, limit) -> up to `limit` (key, value) pairs of that partition's
event ids in key order, after `after_key`."""


class EventIdExpiry:
    """Forgets event ids whose event time is more than `retention_ms` behind the watermark.

    Like Redis's active expiry: each watermark tick of a partition walks on through its keys from
    where the last tick stopped, at least twice as many as were added since, so the sweep outruns
    the inserts and the table holds about `retention` of event ids (the bound), never more than
    one more sweep's worth. A copy of an event that arrives more than `retention` (event time)
    after the original is no longer recognised: that is the retention's promise.

    >>> table = {f"e{n}": remembered(f"0:{n}", n * 1000) for n in range(10)}
    >>> def scan(partition, after, limit):
    ...     keys = sorted(k for k in table if after is None or k > after)[:limit]
    ...     return [(k, table[k]) for k in keys]
    >>> expiry = EventIdExpiry(scan, table.__delitem__, retention_ms=3000, min_batch=4)
    >>> expiry.sweep(0, watermark_ms=8000)   # e0..e4 are older than 8000 - 3000; 4 keys a tick
    4
    >>> expiry.sweep(0, watermark_ms=8000), sorted(table)
    (1, ['e5', 'e6', 'e7', 'e8', 'e9'])
    >>> expiry.sweep(0, watermark_ms=8000), expiry.sizes   # e8, e9: the end of a whole pass
    (0, {0: 5})
    """

    def __init__(self, scan: Scan, delete: Callable[[Any], None], retention_ms: int, min_batch: int = 1000):
        self.scan = scan
        self.delete = delete
        self.retention_ms = retention_ms
        self.min_batch = min_batch
        self._cursor: dict[int, Any] = {}
        self._added: dict[int, int] = {}
        self._live_in_pass: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        """Per partition: the event ids remembered, as counted by its last whole pass."""

    def added(self, partition: int) -> None:
        self._added[partition] = self._added.get(partition, 0) + 1

    def sweep(self, partition: int, watermark_ms: int) -> int:
        """One tick: walk on through the partition's keys; returns how many were forgotten."""
        budget = max(self.min_batch, 2 * self._added.pop(partition, 0))
        horizon = watermark_ms - self.retention_ms
        items = self.scan(partition, self._cursor.get(partition), budget)
        expired = [key for key, value in items if _event_time(value) < horizon]
        for key in expired:
            self.delete(key)
        live = self._live_in_pass.get(partition, 0) + len(items) - len(expired)
        if len(items) == budget:
            self._cursor[partition], self._live_in_pass[partition] = items[-1][0], live
        else:  # past the last key: a whole pass is done; start again from the first next time
            self._cursor.pop(partition, None)
            self._live_in_pass.pop(partition, None)
            self.sizes[partition] = live
        return len(expired)

    def forget_cursors(self) -> None:
        """After a rebalance: the partitions' keys may have changed under the cursors."""
        self._cursor.clear()
        self._live_in_pass.clear()
        self.sizes.clear()
