"""Progress markers: how a bounded run knows every event has gone all the way through.

Like a Flink checkpoint barrier. The producer of a bounded input writes a `Marker` to every
partition of the input topic after its last event. A stage that has seen the marker from every
upstream partition (a `Barrier` per input partition) has processed everything before it; it flushes
what it sent, then forwards a marker to every partition of its own output. The last stage reports
`StageDone` on the control topic; when all its partitions have reported, the run is complete. A
marker with `close_event_time` also tells stages that event time is over (pending timers resolve).

Markers travel as ordinary records with the `stream-app-control` header, so they keep their place
in each partition's order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import orjson

CONTROL_HEADER = "stream-app-control"


@dataclass(frozen=True)
class Marker:
    run: str
    close_event_time: bool
    from_partition: int
    sources: int
    """How many upstream partitions send this marker to each downstream partition."""
    stage: str = ""
    """The stage it is for, where one topic feeds two (empty: the topic's first reader)."""

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, data: bytes) -> Marker:
        return cls(**orjson.loads(data))


@dataclass(frozen=True)
class StageDone:
    run: str
    stage: str
    partition: int
    partitions: int

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, data: bytes) -> StageDone:
        return cls(**orjson.loads(data))


def is_control(headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None) -> bool:
    if not headers:
        return False
    items = headers.items() if isinstance(headers, Mapping) else headers
    return any(key == CONTROL_HEADER for key, _ in items)


class Barrier:
    """Collects one stage's markers per input partition.

    >>> barrier = Barrier()
    >>> barrier.observe(0, Marker("r1", True, from_partition=0, sources=2))
    False
    >>> barrier.observe(0, Marker("r1", True, from_partition=1, sources=2))
    True
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int], set[int]] = {}

    def observe(self, partition: int, marker: Marker) -> bool:
        """True exactly once: when the last upstream marker for (run, partition) arrives."""
        key = (marker.run, partition)
        seen = self._seen.setdefault(key, set())
        if marker.from_partition in seen:
            return False  # a redelivered marker (at-least-once) changes nothing
        seen.add(marker.from_partition)
        if len(seen) == marker.sources:
            self._seen[key] = set(range(marker.sources))
            return True
        return False
