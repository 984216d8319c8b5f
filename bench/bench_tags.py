"""Tag engine benchmark: events/s folded into profiles in-process for the default topology, and bytes
of tag state per profile in RocksDB.

Side by side in the same run, the ceiling: one dict counter update per event (the least any tag
stage must do). Medians of several runs; these machines are shared and noisy.

    python bench/bench_tags.py [--people 20000] [--days 3] [--repeats 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import orjson
from rocksdict import Rdict

from stream_app.config import load_topology
from stream_app.ingest import Accepted, Ingestor, PiiHasher
from stream_app.sample import generate
from stream_app.tags.engine import TagEngine

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    topology = load_topology(REPO / "topology.yaml")
    engine = TagEngine.from_specs(topology.tags)
    ingestor = Ingestor.from_topology(topology, PiiHasher(b"bench"))
    day = generate(people=args.people, days=args.days, seed=5)
    events = []
    for line in day.lines:
        outcome = ingestor.process(line)
        if isinstance(outcome, Accepted):
            events.append((day.truth[outcome.event_id], outcome.event))

    engine_rates, ceiling_rates, states = [], [], {}
    for _ in range(args.repeats):
        states = {}
        started = time.perf_counter()
        for person, event in events:
            states[person], _ = engine.apply(states.get(person), event, event["event_time_ms"])
        engine_rates.append(len(events) / (time.perf_counter() - started))
        counts: dict[str, int] = {}
        started = time.perf_counter()
        for person, _event in events:
            counts[person] = counts.get(person, 0) + 1
        ceiling_rates.append(len(events) / (time.perf_counter() - started))

    directory = Path(tempfile.mkdtemp(prefix="tags-bench-"))
    try:
        db = Rdict(str(directory))
        for person, state in states.items():
            db[person] = orjson.dumps(state)
        db.flush()
        db.compact_range(None, None)
        db.close()
        size = sum(f.stat().st_size for f in directory.rglob("*.sst"))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    json_sizes = sorted(len(orjson.dumps(s)) for s in states.values())

    engine_median, ceiling_median = statistics.median(engine_rates), statistics.median(ceiling_rates)
    print(f"{len(events):,} events of {len(states):,} people, {len(topology.tags)} default tags")
    print(
        f"{'tag engine (apply, changed tags incl. derived)':48} {engine_median:>12,.0f} events/s   runs "
        + " ".join(f"{x:,.0f}" for x in engine_rates)
    )
    print(
        f"{'ceiling: one dict counter per event':48} {ceiling_median:>12,.0f} events/s   runs "
        + " ".join(f"{x:,.0f}" for x in ceiling_rates)
    )
    print(f"engine / ceiling: {engine_median / ceiling_median:.3f}")
    print(
        f"state per profile: JSON median {json_sizes[len(json_sizes) // 2]:,} B, "
        f"p99 {json_sizes[int(len(json_sizes) * 0.99)]:,} B; "
        f"RocksDB SST {size / len(states):,.0f} B per profile"
    )


if __name__ == "__main__":
    main()
