"""Ingest benchmark: per-event cost of `Ingestor.process` in-process on generated sample lines.

Beside it, in the same run, the cost of each step alone on the same lines (orjson decode, the
compiled schema check, the reference `jsonschema` validator, phone normalisation cached and not), so
a change shows up where it was made. Medians of several runs of CPU time; the spread is printed,
because these machines are shared and noisy.

    python bench/bench_ingest.py [--people 2000] [--days 1] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from stream_app.config import load_topology
from stream_app.ingest import Ingestor, PiiHasher
from stream_app.ingest import identifiers as ids
from stream_app.ingest.schema import schema_problems, touchpoint_validator
from stream_app.sample import generate

REPO = Path(__file__).resolve().parents[1]


def per_item_us(run: Callable[[], int], repeats: int) -> tuple[float, float, float]:
    """(median, min, max) CPU microseconds per item over `repeats` runs of `run` (which returns a count).

    CPU time of this process, not wall time: the work is single-threaded, and on a shared machine
    the wall clock also counts the time other processes held the core.
    """
    costs = []
    for _ in range(repeats):
        started = time.process_time()
        count = run()
        costs.append((time.process_time() - started) / max(count, 1) * 1e6)
    return statistics.median(costs), min(costs), max(costs)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    topology = load_topology(REPO / "topology.yaml")
    lines = generate(people=args.people, days=args.days, seed=5).lines
    decodable, documents = [], []
    for line in lines:
        try:
            documents.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
        decodable.append(line)
    phones = [
        doc["identities"]["phone"]
        for doc in documents
        if isinstance(doc, dict) and isinstance(doc.get("identities", {}).get("phone"), str)
    ]
    region = topology.identifiers.default_phone_region
    parse_cache = getattr(ids, "_parse_phone", None)  # (absent before the phone cache)

    def clear_phone_cache() -> None:
        if parse_cache is not None:
            parse_cache.cache_clear()

    def phone_uncached() -> int:
        for phone in phones:
            clear_phone_cache()
            ids.normalize_phone(phone.strip(), region)
        return len(phones)

    def phone_cold() -> int:
        clear_phone_cache()
        for phone in phones:
            ids.normalize_phone(phone.strip(), region)
        return len(phones)

    def ingest() -> int:
        # A fresh Ingestor and an empty phone cache per run, as a worker starts: the cache's gain
        # is then what one pass over the day's lines finds in it, not a cache warmed by earlier runs.
        clear_phone_cache()
        ingestor = Ingestor.from_topology(topology, PiiHasher(b"bench"))
        for line in lines:
            ingestor.process(line)
        return len(lines)

    def decode() -> int:
        for line in decodable:
            orjson.loads(line)
        return len(decodable)

    def schema_hot() -> int:
        for doc in documents:
            schema_problems(doc)
        return len(documents)

    def schema_reference() -> int:
        validator = touchpoint_validator()
        for doc in documents:
            list(validator.iter_errors(doc))
        return len(documents)

    rows = [
        ("Ingestor.process (whole)", ingest, len(lines)),
        ("orjson.loads", decode, len(decodable)),
        ("schema_problems (hot path)", schema_hot, len(documents)),
        ("jsonschema reference validator", schema_reference, len(documents)),
        ("normalize_phone, cache emptied each", phone_uncached, len(phones)),
        ("normalize_phone, one pass cold", phone_cold, len(phones)),
    ]
    print(f"{len(lines)} lines ({len(phones)} with a phone), {args.repeats} runs each; CPU µs per item")
    print(f"{'step':34} {'median':>9} {'min':>9} {'max':>9}  items")
    for name, run, items in rows:
        median, low, high = per_item_us(run, args.repeats)
        print(f"{name:34} {median:9.2f} {low:9.2f} {high:9.2f}  {items}")
    median = per_item_us(ingest, args.repeats)[0]
    print(f"ingest: {1e6 / median:,.0f} events/s of CPU in-process (median)")


if __name__ == "__main__":
    main()
