"""One-ID core benchmark: events/s in-process with 1,000,000 identifiers, and RocksDB bytes per identifier.

Side by side in the same run, the ceiling: a bare dict union-find (no limits, no profiles, no
evidence) over the same events. Quote medians and the ratio; these machines are shared and noisy.

    python bench/bench_identity.py [--identifiers 1000000] [--events 200000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from rocksdict import Rdict

from stream_app.identity import IdentityResolver, IdentityRules, MappingIdentityStore
from stream_app.identity.store import encoded_store

TYPES = ["member_id", "phone", "unionid", "openid", "device_id", "device_id"]


def population(identifiers: int, seed: int) -> list[list[str]]:
    """People with 2-6 identifiers each, about `identifiers` in all."""
    rng = random.Random(seed)
    people, total = [], 0
    while total < identifiers:
        n = rng.randint(2, 6)
        keys = [f"{TYPES[i % len(TYPES)]}:{len(people)}-{i}" for i in range(n)]
        people.append(keys)
        total += n
    return people


def event_stream(people: list[list[str]], count: int, seed: int) -> list[list[str]]:
    """Steady-state traffic: 1-3 known identifiers of one person; 2% bring a new device."""
    rng = random.Random(seed)
    events = []
    for n in range(count):
        keys = rng.choice(people)
        picked = rng.sample(keys, min(len(keys), rng.randint(1, 3)))
        if rng.random() < 0.02:
            picked.append(f"device_id:new-{seed}-{n}")
        events.append(picked)
    return events


class DictUnionFind:
    """The ceiling: path-halving union-find on a dict, nothing else."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self.parent
        root = parent.setdefault(x, x)
        while root != parent[root]:
            parent[root] = parent[parent[root]]
            root = parent[root]
        return root

    def add(self, keys: list[str]) -> str:
        root = self.find(keys[0])
        for key in keys[1:]:
            other = self.find(key)
            if other != root:
                self.parent[other] = root
        return root


def timed(fn, events) -> float:
    started = time.perf_counter()
    for n, keys in enumerate(events):
        fn(keys, n)
    return len(events) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--identifiers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rocksdb-sample", type=int, default=200_000, help="identifiers written to RocksDB")
    args = parser.parse_args()

    people = population(args.identifiers, seed=1)
    n_ids = sum(len(p) for p in people)
    resolver = IdentityResolver(MappingIdentityStore(), IdentityRules())
    ceiling = DictUnionFind()
    started = time.perf_counter()
    for n, keys in enumerate(people):
        resolver.resolve(keys, f"b{n}", n)
    build_rate = n_ids / (time.perf_counter() - started)
    for keys in people:
        ceiling.add(keys)

    core, bare = [], []
    for r in range(args.repeats):
        events = event_stream(people, args.events, seed=100 + r)
        core.append(timed(lambda keys, n: resolver.resolve(keys, f"e{n}", n), events))
        bare.append(timed(lambda keys, n: ceiling.add(keys), events))

    # State size: the same kind of population written through the RocksDB-backed store.
    sample = population(args.rocksdb_sample, seed=2)
    directory = Path(tempfile.mkdtemp(prefix="identity-bench-"))
    try:
        dbs = [Rdict(str(directory / name)) for name in ("owners", "profiles", "aliases", "refusals")]
        rocks = IdentityResolver(encoded_store(*dbs), IdentityRules())
        for n, keys in enumerate(sample):
            rocks.resolve(keys, f"ev-{n:08d}", 1_795_000_000_000 + n)
        for db in dbs:
            db.flush()
            db.compact_range(None, None)
            db.close()
        size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file() and f.suffix == ".sst")
        sample_ids = sum(len(p) for p in sample)
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    print(f"population: {len(people):,} people, {n_ids:,} identifiers (built at {build_rate:,.0f} ids/s)")
    print(f"{'what':44} {'median events/s':>16} {'runs':>40}")
    print(
        f"{'identity core (limits, evidence)':44} {statistics.median(core):>16,.0f} "
        f"{' '.join(f'{x:,.0f}' for x in core):>40}"
    )
    print(
        f"{'ceiling: bare dict union-find':44} {statistics.median(bare):>16,.0f} "
        f"{' '.join(f'{x:,.0f}' for x in bare):>40}"
    )
    print(
        f"core / ceiling: {statistics.median(core) / statistics.median(bare):.2f}"
        "   target: >= 100,000 events/s"
    )
    print(
        f"RocksDB state: {size:,} bytes of SST for {sample_ids:,} identifiers = "
        f"{size / sample_ids:.0f} bytes per identifier (owners + profiles with evidence)"
    )


if __name__ == "__main__":
    main()
