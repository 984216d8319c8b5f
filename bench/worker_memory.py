"""Does a pipeline worker's memory grow with the number of people? One worker, new people only,
through the broker: its resident set at points after 2,000 lines, 4,000, 8,000, ... (as many as fit
the row's share of the budget: N2 people at the last point >> N1 at the first), beside the state it
keeps on disk at each point.

Why this and not 1M people: at the pipeline's rate of new people (~1,000-2,000 events/s, 2.8 events
per person) 1M people would take ~30 minutes, far past `make bench`'s 10; and pre-loading a
worker's state would mean writing its tables' changelogs from here, which the bench does not touch.
So the row takes as many of the bench's generated lines as fit its share of the budget and reports
the growth per person between its first and last points: a bounded worker grows by ~0 bytes per
person while its state on disk grows by the full state per person; an unbounded one grows by a
share of it (or more).

At each point (after `finish_input`: every event so far fully processed): `VmRSS` (resident now),
`VmHWM` (peak so far), the bytes under the worker's state directory less RocksDB's write-ahead logs
(`*.log`, worker.log included), and those write-ahead logs on their own: what RocksDB holds in
memtables not flushed yet is (about) what its WALs hold.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.procstat import tree_size, vm_kib
from bench.rows import WARMUP, bench_settings, delete_topics, isolated_topology, stream_spread
from stream_app.config import load_topology
from stream_app.runner import LocalRun

SHARE = 0.2
"""Share of `--budget` this row may take."""
STOP_S = 5.0
"""The worker's stop and the topics' deletion, after the last point."""
PROBE = 2000
"""Lines after the warm-up to the first point; each later point doubles the lines so far."""
SAFETY = 0.8
"""Later events of a day cost a little more than the chunk before's (larger states)."""


@dataclass
class MemoryPoint:
    events: int
    people: int
    rss_kib: int
    hwm_kib: int
    state_bytes: int
    """Under the worker's state directory, write-ahead logs left out."""
    wal_bytes: int
    """RocksDB write-ahead logs (*.log) under it: about what sits in memtables."""
    seconds: float
    """Since the first event after the warm-up."""


@dataclass
class MemoryCurve:
    points: list[MemoryPoint] = field(default_factory=list)

    def growth(self) -> dict[str, float]:
        """Per person between the first and last points: RSS growth, state and WAL growth (bytes)."""
        if len(self.points) < 2:
            return {}
        first, last = self.points[0], self.points[-1]
        people = last.people - first.people
        if people <= 0:
            return {}
        return {
            "rss_bytes_per_person": (last.rss_kib - first.rss_kib) * 1024 / people,
            "state_bytes_per_person": (last.state_bytes - first.state_bytes) / people,
            "wal_bytes_per_person": (last.wal_bytes - first.wal_bytes) / people,
        }

    def to_json(self) -> dict[str, object]:
        return {"points": [asdict(p) for p in self.points], "growth": self.growth()}


def next_point(sent: int, total: int, rate: float, left_s: float) -> int | None:
    """Where the next point goes: twice as many lines as so far (points evenly spaced on a log
    scale, few end-of-input rounds), fewer if that would not fit `left_s` at `rate`, none if not even
    a quarter of it fits (a point too close to the last says nothing) or no line is left.

    >>> next_point(2000, 100_000, 1000.0, 60.0), next_point(2000, 100_000, 1000.0, 1.0)
    (4000, 2800)
    >>> next_point(2000, 100_000, 1000.0, 0.4), next_point(100_000, 100_000, 1000.0, 60.0)
    (None, None)
    """
    more = min(sent, total - sent, int(SAFETY * rate * left_s))
    return sent + more if more >= max(1, sent // 4) else None


def worker_memory(
    broker_url: str, bootstrap: str, tmp: Path, lines: list[bytes], cumulative: list[int], seconds: float
) -> MemoryCurve:
    """One worker on its own topics; `cumulative[n - 1]`: people among `lines[:n]`. Points after
    `PROBE` lines, then each time twice as many, while the next fits `seconds` (the whole row, start
    to stop) at the rate of the chunk before."""
    began = time.monotonic()
    tag = f"mem{uuid.uuid4().hex[:6]}"
    topology_path = isolated_topology(tmp, tag)
    settings = bench_settings(broker_url, topology_path, tmp / tag, tag)
    curve = MemoryCurve()
    with LocalRun(settings, load_topology(topology_path)) as run:
        try:
            pid = run.workers[0].pid
            state_dir = run.worker_dir(0)
            run.stream_events(lines[:WARMUP])
            run.finish_input(close_event_time=False, timeout=120)
            started = time.perf_counter()
            sent, point = WARMUP, min(len(lines), WARMUP + PROBE)
            while True:
                chunk_started = time.perf_counter()
                stream_spread(run, lines[sent:point])
                run.finish_input(close_event_time=False, timeout=900)
                rate = (point - sent) / (time.perf_counter() - chunk_started)
                sent = point
                curve.points.append(_point(pid, state_dir, point, cumulative, time.perf_counter() - started))
                left_s = seconds - (time.monotonic() - began) - STOP_S
                following = next_point(sent, len(lines), rate, left_s)
                if following is None:
                    break
                point = following
        finally:
            run.stop()
            delete_topics(bootstrap, (tag,))
    return curve


def _point(pid: int, state_dir: Path, events: int, cumulative: list[int], seconds: float) -> MemoryPoint:
    logs = tree_size(state_dir, only_suffixes=(".log",))
    return MemoryPoint(
        events=events,
        people=cumulative[events - 1],
        rss_kib=vm_kib(pid, "VmRSS"),
        hwm_kib=vm_kib(pid),
        state_bytes=tree_size(state_dir, skip_suffixes=(".log",)),
        wal_bytes=logs - tree_size(state_dir, only_suffixes=("worker.log",)),
        seconds=seconds,
    )
