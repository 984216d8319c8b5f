"""Profiling rig for the per-person core: µs per event of ingest, identity and the person stage
(tags + rules), each measured on its own over the same generated day, medians of several runs.

The three parts run one after another over the whole input (ingest all lines, then resolve every
accepted event, then feed the person stage), so each part's time is its own and a profiler sees
one part at a time (`--only person` with py-spy or `--cprofile`). As in the worker: first deliveries
only (dedupe), merge notices to the merged person's partition, records the person stage hands on
fed back in, a watermark (newest event time less the allowed lateness) every 2,000 events, and
event time closed at the end.

    python bench/bench_core_people.py [--people 5000] [--days 1] [--repeats 5]
    python bench/bench_core_people.py --only person --cprofile 30
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import pstats
import statistics
import time
import zlib
from pathlib import Path
from typing import Any

import orjson

from stream_app.config import Topology, load_topology
from stream_app.config.topology import duration_ms
from stream_app.identity import IdentityResolver, IdentityRules, MappingIdentityStore
from stream_app.identity import records as identity_records
from stream_app.ingest import Accepted, Ingestor, PiiHasher
from stream_app.metrics import Metrics
from stream_app.people.processor import PersonProcessor
from stream_app.rules.engine import RuleEngine
from stream_app.sample import generate
from stream_app.tags.engine import TagEngine

REPO = Path(__file__).resolve().parents[1]
BATCH = 2000
PARTS = ("ingest", "identity", "person")


def _partition(one_id: str, partitions: int) -> int:
    return zlib.crc32(one_id.encode()) % partitions


def ingest(topology: Topology, lines: list[bytes]) -> list[dict[str, Any]]:
    ingestor = Ingestor.from_topology(
        topology, PiiHasher(b"bench-key", topology.identifiers.default_phone_region)
    )
    events, seen = [], set()
    for line in lines:
        outcome = ingestor.process(line)
        if isinstance(outcome, Accepted) and outcome.event_id not in seen:
            seen.add(outcome.event_id)
            events.append(outcome.event)
    return events


def identity(topology: Topology, events: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(key, person-events record) in the order the person stage gets them."""
    rules = IdentityRules(
        limits=dict(topology.identity.limits),
        shareable_types=frozenset(topology.identity.shareable_types),
    )
    resolver = IdentityResolver(MappingIdentityStore(), rules)
    records: list[tuple[str, dict[str, Any]]] = []
    for event in events:
        resolution = resolver.resolve(
            identity_records.event_keys(event), event["event_id"], event["event_time_ms"]
        )
        records.append(
            (
                resolution.one_id,
                {"kind": "event", "event": identity_records.resolved(event, resolution.one_id)},
            )
        )
        for merge in resolution.merges:
            notice = {"kind": "merge", **identity_records.merge_record(merge, event)}
            records.append((merge.merged_one_id, notice))
    return records


def person(
    topology: Topology, records: list[tuple[str, dict[str, Any]]], digest: Any = None
) -> dict[str, int]:
    """Feeds the person stage; returns how many records went to each output.

    With `digest` (a hashlib object), every emit and the final state go into it: two versions of
    the core that decide the same give the same digest."""
    partitions = topology.internal_topics.person_events.partitions
    lateness = duration_ms(topology.allowed_lateness)
    processor = PersonProcessor(
        TagEngine.from_specs(topology.tags),
        RuleEngine(topology.rules, topology.contact_policy, topology.stores),
        {},
        {},
        {},
        Metrics(),
        clock=lambda: 1_800_000_000.0,
    )
    counts: dict[str, int] = {}
    newest: dict[int, int] = {}

    def send(emits: list[tuple[str, str, dict[str, Any]]], pending: list[tuple[str, dict[str, Any]]]) -> None:
        for output, key, value in emits:
            counts[output] = counts.get(output, 0) + 1
            if digest is not None:
                digest.update(orjson.dumps([output, key, value], option=orjson.OPT_SORT_KEYS))
            if output == "person_events":
                pending.append((key, value))

    for n, first in enumerate(records, 1):
        pending = [first]
        while pending:
            key, record = pending.pop()
            partition = _partition(key, partitions)
            if record["kind"] == "event":
                t = record["event"]["event_time_ms"]
                newest[partition] = max(t, newest.get(partition, t))
            send(processor.handle(record, partition), pending)
        if n % BATCH == 0:
            for partition, t in newest.items():
                pending = []
                send(processor.advance(partition, t - lateness), pending)
                assert not pending
    for partition in range(partitions):
        pending = []
        send(processor.close_event_time(partition), pending)
        assert not pending
    if digest is not None:
        for table in (processor.states, processor.aliases, processor.timers):
            digest.update(orjson.dumps(table, option=orjson.OPT_SORT_KEYS))
    return counts


class _GcClock:
    """Seconds spent in the garbage collector (`gc.callbacks`), wall time of each collection.

    The rig keeps every person's state as Python dicts, so a full collection walks all of them;
    the worker keeps them in RocksDB. Printed beside each part so the two are not confused."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


def _timed(fn: Any, *args: Any) -> tuple[float, float, Any]:
    """CPU seconds of this process (on a shared machine, wall time also counts other processes'
    turns on the cores: it is printed beside it, as the total's events/s), and seconds of them in
    the garbage collector."""
    gc.collect()
    clock = _GcClock()
    gc.callbacks.append(clock)
    try:
        started = time.process_time()
        result = fn(*args)
        return time.process_time() - started, clock.seconds, result
    finally:
        gc.callbacks.remove(clock)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=PARTS, help="time (or profile) this part alone")
    parser.add_argument("--digest", action="store_true", help="print a digest of the person stage's outputs")
    parser.add_argument("--cprofile", type=int, metavar="N", help="cProfile the part(s); top N by tottime")
    args = parser.parse_args()
    topology = load_topology(REPO / "topology.yaml")
    lines = generate(people=args.people, days=args.days, seed=args.seed).lines
    events = ingest(topology, lines)
    records = identity(topology, events)
    print(f"{len(lines):,} lines, {len(events):,} events, {len(records) - len(events):,} merge notices")

    if args.digest:
        digest = hashlib.sha256()
        person(topology, records, digest)
        print(f"person-stage digest {digest.hexdigest()}")
        return
    parts = [args.only] if args.only else list(PARTS)
    calls = {
        "ingest": lambda: ingest(topology, lines),
        "identity": lambda: identity(topology, events),
        "person": lambda: person(topology, records),
    }
    if args.cprofile:
        profiler = cProfile.Profile()
        for part in parts:
            profiler.runcall(calls[part])
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.cprofile)
        return
    runs: dict[str, list[float]] = {part: [] for part in parts}
    in_gc: dict[str, list[float]] = {part: [] for part in parts}
    walls: list[float] = []
    outputs: dict[str, int] = {}
    for _ in range(args.repeats):
        started = time.perf_counter()
        for part in parts:
            seconds, gc_seconds, result = _timed(calls[part])
            runs[part].append(seconds * 1e6 / len(events))
            in_gc[part].append(gc_seconds / seconds if seconds else 0.0)
            if part == "person":
                outputs = result
        walls.append((time.perf_counter() - started) * 1e6 / len(events))
    total = 0.0
    print("CPU µs per event (medians; min, the share in the garbage collector and every run beside):")
    for part in parts:
        median = statistics.median(runs[part])
        total += median
        print(
            f"{part:10} {median:8.2f}   min {min(runs[part]):7.2f}   "
            f"gc {statistics.median(in_gc[part]):4.0%}   runs " + " ".join(f"{x:.1f}" for x in runs[part])
        )
    wall = statistics.median(walls)
    rates = f"{1e6 / total:,.0f} events/s   (wall {wall:.2f} = {1e6 / wall:,.0f}/s)"
    print(f"{'total':10} {total:8.2f} CPU = {rates}")
    if outputs:
        print("outputs: " + ", ".join(f"{k} {v:,}" for k, v in sorted(outputs.items())))


if __name__ == "__main__":
    main()
