"""Control records that travel in-band with the events: progress markers and watermarks.

**Progress markers**: how a bounded run knows every event has gone all the way through.

Like a Flink checkpoint barrier. The producer of a bounded input writes a `Marker` to every
partition of the input topic after its last event. A stage that has seen the marker from every
upstream partition (a `Barrier` per input partition) has processed everything before it; it flushes
what it sent, then forwards a marker to every partition of its own output. The last stage reports
`StageDone` on the control topic; when all its partitions have reported, the run is complete. A
marker with `close_event_time` also tells stages that event time is over (pending timers resolve).

**Watermarks** (as in Flink): event-time progress, made where events enter and carried along every
path they take. The ingest stage announces for each input partition "nothing older than t will come
from here" (newest event time seen less the allowed lateness; a partition read to its end and quiet
for a while follows the wall clock; one with nothing to read since start is idle and left out).
Each later stage takes, per input partition, the minimum over the writers that feed it and passes
its own on. So a stage's event time never runs ahead of events still on their way to it through a
slower path (the identity linker) or a busier partition, however fast a backlog is replayed.

Both travel as ordinary records with the `stream-app-control` header, so they keep their place in
each partition's order; a stage's watermarks for all its writers share one record (`Watermarks`).
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


@dataclass(frozen=True)
class StageDone:
    run: str
    stage: str
    partition: int
    partitions: int
    forwarded: int = 0
    """Records the partition handed on to another partition of its own topic since its last
    marker (the person stage moving merged people's state): they may still be on their way, so
    a bounded run needs another round of markers behind them."""

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, data: bytes) -> StageDone:
        return cls(**orjson.loads(data))


@dataclass(frozen=True)
class Watermark:
    """`writer` (stage:partition) will send nothing with an event time before `t` (ms)."""

    writer: str
    t: int
    idle: bool = False


@dataclass(frozen=True)
class Watermarks:
    """The watermarks one stage of one worker passes on at once: one control record per
    downstream partition for all its writers, not one per writer (with 8 partitions on each side
    and a 100 ms cadence, per-writer records outnumbered the events of a busy hop)."""

    marks: tuple[Watermark, ...]

    def encode(self) -> bytes:
        return orjson.dumps({"marks": [[m.writer, m.t, m.idle] for m in self.marks]})


def decode_control(data: bytes) -> Marker | Watermarks:
    """A control record as the stages read it: watermarks under `marks`, else a marker.

    >>> sent = Watermarks((Watermark("ingest:0", 5), Watermark("ingest:1", 0, True)))
    >>> decode_control(sent.encode()).marks[1]
    Watermark(writer='ingest:1', t=0, idle=True)
    """
    fields = orjson.loads(data)
    if "marks" in fields:
        return Watermarks(tuple(Watermark(w, t, idle) for w, t, idle in fields["marks"]))
    return Marker(**fields)


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


class WatermarkTracker:
    """One input partition's event time: the minimum over the writers that feed it.

    Idle writers (input partitions with nothing to read since start) are left out of the minimum;
    when all are idle, the most advanced one counts. Nothing is known until every writer has spoken.

    >>> tracker = WatermarkTracker(["a", "b"])
    >>> tracker.observe(Watermark("a", 100)) is None
    True
    >>> tracker.observe(Watermark("b", 50))
    50
    >>> tracker.observe(Watermark("b", 500, idle=True))
    100
    """

    def __init__(self, writers: Iterable[str]):
        self.writers = frozenset(writers)
        self._latest: dict[str, tuple[int, bool]] = {}

    def observe(self, mark: Watermark) -> int | None:
        """The input's watermark after `mark`; a writer's time never goes back."""
        if mark.writer in self.writers:
            before = self._latest.get(mark.writer, (mark.t, mark.idle))[0]
            self._latest[mark.writer] = (max(before, mark.t), mark.idle)
        return self.current()

    def current(self) -> int | None:
        if len(self._latest) < len(self.writers):
            return None
        active = [t for t, idle in self._latest.values() if not idle]
        return min(active) if active else max(t for t, _ in self._latest.values())


def source_watermark(
    newest_ms: int | None,
    seen_at_ms: int,
    wall_ms: int,
    lateness_ms: int,
    idle_after_ms: int,
    caught_up: bool,
) -> Watermark:
    """An input partition's announcement (a Watermark with no writer yet).

    The newest event time seen less the allowed lateness. A partition read to its end moves on with
    the wall clock from there (`seen_at_ms`: when its newest event was sent on): its next event
    will be no older than the newest one plus the time since, less the lateness. Live traffic
    (event time = wall clock) so passes each event about the lateness after it arrived, however
    many partitions are quiet, and a cart abandonment fires with nobody else coming. A partition
    with records still to read never moves on by the clock, however long it has been quiet (a busy
    worker must not let event time run past its backlog).

    Read to its end and quiet for `idle_after_ms`, a partition is *idle*, left out of the minimum
    downstream (as Flink's `withIdleness`): history replayed into every partition once, then live
    events into one, must not hold the live ones back until the replayed clocks catch up with
    today. One with nothing read since start holds everything back at 0 until it has been empty
    that long: a partition that merely has not had its first record yet must not let the others'
    event time run past it.

    >>> source_watermark(10_000, 0, wall_ms=0, lateness_ms=300, idle_after_ms=5_000, caught_up=True)
    Watermark(writer='', t=9700, idle=False)
    >>> source_watermark(10_000, 0, wall_ms=1_000, lateness_ms=300, idle_after_ms=5_000, caught_up=True)
    Watermark(writer='', t=10700, idle=False)
    >>> source_watermark(10_000, 0, wall_ms=6_000, lateness_ms=300, idle_after_ms=5_000, caught_up=True)
    Watermark(writer='', t=15700, idle=True)
    >>> source_watermark(10_000, 0, wall_ms=6_000, lateness_ms=300, idle_after_ms=5_000, caught_up=False)
    Watermark(writer='', t=9700, idle=False)
    """
    quiet = max(0, wall_ms - seen_at_ms)
    idle = caught_up and quiet >= idle_after_ms
    if newest_ms is None:
        return Watermark("", 0, idle=idle)
    if caught_up:
        return Watermark("", newest_ms + quiet - lateness_ms, idle=idle)
    return Watermark("", newest_ms - lateness_ms)
