"""The pure core in-process: ingest, de-duplication, identity, tags and rules on one event stream,
no broker, no Faust, no RocksDB (dict state), so its rate is the most the per-event logic allows.

`CoreRig` wires the public pure pieces as the worker does: `Ingestor.process` → first delivery of
an event_id → `IdentityResolver.resolve` → `PersonProcessor.handle` (tags, rules, attribution and,
in the bench rows, the topology's audiences, as the worker's `PersonStage`; merge notices and
absorbed state fed back in, as the person-events topic would carry them) → watermark every `BATCH`
events → `close_event_time` at the end, so every held event is applied.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from bench.procstat import vm_kib
from stream_app.audiences import AudienceEngine
from stream_app.config import Topology, load_topology
from stream_app.config.topology import duration_ms
from stream_app.identity import IdentityResolver, IdentityRules, MappingIdentityStore, Profile
from stream_app.identity import records as identity_records
from stream_app.ingest import Accepted, Ingestor, PiiHasher
from stream_app.metrics import Metrics
from stream_app.people.processor import PersonProcessor
from stream_app.rules.engine import RuleEngine
from stream_app.sample import generate
from stream_app.tags.engine import TagEngine

REPO = Path(__file__).resolve().parents[1]
BATCH = 2000
"""Events between watermarks (as often as a `take(2000)` batch would announce one)."""
FILL_TYPES = ("member_id", "phone", "unionid", "openid", "device_id")
FILL_TIME_MS = 1_700_000_000_000


def _partition(one_id: str, partitions: int) -> int:
    return zlib.crc32(one_id.encode()) % partitions


class CoreRig:
    """One in-memory instance of the whole per-event core for a topology."""

    def __init__(
        self,
        topology: Topology | None = None,
        pii_key: bytes = b"bench",
        freeze_per_batch: bool = False,
        audiences: bool = False,
    ):
        """`audiences`: evaluate the topology's audiences, as the worker does (the bench rows do;
        without them the rig is what it was before, ~20% fewer instructions per event)."""
        self.freeze_per_batch = freeze_per_batch
        topology = topology or load_topology(REPO / "topology.yaml")
        self.partitions = topology.internal_topics.person_events.partitions
        self.lateness_ms = duration_ms(topology.allowed_lateness)
        self.ingestor = Ingestor.from_topology(
            topology, PiiHasher(pii_key, topology.identifiers.default_phone_region)
        )
        rules = IdentityRules(
            limits=dict(topology.identity.limits),
            shareable_types=frozenset(topology.identity.shareable_types),
        )
        self.resolver = IdentityResolver(MappingIdentityStore(), rules)
        self.states: dict[str, Any] = {}
        self.processor = PersonProcessor(
            TagEngine.from_specs(topology.tags),
            RuleEngine(topology.rules, topology.contact_policy, topology.stores),
            self.states,
            {},
            {},
            Metrics(),
            clock=lambda: 1_800_000_000.0,
            audiences=AudienceEngine.from_specs(topology.audiences, topology.tags) if audiences else None,
        )
        self.seen: set[str] = set()
        self.emitted = 0
        self._newest: dict[int, int] = {}

    def feed(self, lines: Iterable[bytes]) -> int:
        """Every line through the core, then event time closed; returns the lines fed."""
        count = 0
        for count, line in enumerate(lines, 1):
            self._one(line)
            if count % BATCH == 0:
                self._watermarks()
                if self.freeze_per_batch:
                    gc.freeze()
        for partition in range(self.partitions):
            self.emitted += len(self.processor.close_event_time(partition))
        return count

    def _one(self, line: bytes) -> None:
        outcome = self.ingestor.process(line)
        if not isinstance(outcome, Accepted):
            self.emitted += 1  # a DLQ record
            return
        event = outcome.event
        if outcome.event_id in self.seen:
            return
        self.seen.add(outcome.event_id)
        t = int(event["event_time_ms"])
        resolution = self.resolver.resolve(identity_records.event_keys(event), outcome.event_id, t)
        pending: list[tuple[str, dict[str, Any]]] = [
            (
                resolution.one_id,
                {"kind": "event", "event": identity_records.resolved(event, resolution.one_id)},
            )
        ]
        for merge in resolution.merges:
            pending.append(
                (merge.merged_one_id, {"kind": "merge", **identity_records.merge_record(merge, event)})
            )
        self.emitted += 1 + len(resolution.merges) + len(resolution.conflicts)
        while pending:
            key, record = pending.pop()
            partition = _partition(key, self.partitions)
            if record["kind"] == "event":
                self._newest[partition] = max(t, self._newest.get(partition, t))
            for output, out_key, value in self.processor.handle(record, partition):
                if output == "person_events":
                    pending.append((out_key, value))
                else:
                    self.emitted += 1

    def _watermarks(self) -> None:
        for partition, newest in self._newest.items():
            self.emitted += len(self.processor.advance(partition, newest - self.lateness_ms))

    def prefill(self, people: int, start: int = 0, seed: int = 1) -> None:
        """`people` people already known: 2-6 identifiers each, owned by a profile of their own
        as `IdentityResolver` leaves a new person (written through the store's interface, which
        is faster than resolving them: it matters at 1M), and a person state each (one shared
        template: only the tables' size matters here, the filler people never come back)."""
        rng = random.Random(seed + start)
        template = {"tags": None, "rules": None, "held": [], "absorbed": [], "actions": []}
        store, states = self.resolver.store, self.states
        for n in range(start, start + people):
            keys = filler_keys(n, rng.randint(2, 6))
            profile = Profile(f"p_fill{n:011d}", FILL_TIME_MS)
            for key in keys:
                profile.add(key)
                store.set_owner(key, profile.one_id)
            profile.links.append([f"fill-{n}", FILL_TIME_MS, keys])
            store.put_profile(profile)
            states[profile.one_id] = template


def filler_keys(n: int, count: int) -> list[str]:
    """Identifier keys of filler person `n`, in the resolver's priority order of types."""
    return [f"{FILL_TYPES[i % len(FILL_TYPES)]}:fill-{n}-{i}" for i in range(count)]


def again(lines: list[bytes], suffix: str) -> list[bytes]:
    """The valid events of `lines` once more under new event ids: the same people, known now."""
    out = []
    for line in lines:
        if not line.startswith(b'{"event_id":"ev-'):
            continue
        event = orjson.loads(line)
        out.append(orjson.dumps({**event, "event_id": event["event_id"] + suffix}))
    return out


@dataclass(frozen=True)
class CoreRate:
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def core_rate(lines: list[bytes], topology: Topology | None = None) -> CoreRate:
    """Events/s of a fresh core over `lines` (new people, then nothing prefilled).

    At each watermark (every `BATCH` events) what the rig holds is frozen out of the garbage
    collector (`gc.freeze`), as a batch's state leaves a worker's heap for RocksDB when the batch
    ends: otherwise every collection walks all the people met so far in the rig's dicts (32% of
    the row's CPU at 150,000 events), a cost no worker pays."""
    rig = CoreRig(topology, freeze_per_batch=True, audiences=True)
    started = time.perf_counter()
    try:
        rig.feed(lines)
    finally:
        gc.unfreeze()
    return CoreRate(len(lines), time.perf_counter() - started)


SAMPLE_START = datetime(2026, 11, 22, tzinfo=ZoneInfo("Asia/Shanghai"))


def scale_costs(
    populations: list[int], sample_people: int, passes: int, seed: int = 11
) -> list[dict[str, Any]]:
    """Per-event cost of the core with 10k, 100k, 1M, ... people already known (one rig filled
    up step by step). Each pass: a fresh sample of `sample_people` (new people, on a day of its
    own), then the same events again under new ids (known people); cost = its time / its events.

    The filled state is frozen out of the garbage collector (`gc.freeze`): the worker keeps it in
    RocksDB, not on the Python heap, so collections walking a million dicts would be an artefact."""
    rig = CoreRig(audiences=True)
    base_rss, filled, done = vm_kib("self", "VmRSS"), 0, 0
    # One pass unmeasured: the first events of a process pay for caches and lazy imports.
    rig.feed(
        generate(people=sample_people, days=1, seed=seed - 1, start=SAMPLE_START - timedelta(days=2)).lines
    )
    out = []
    for people in sorted(populations):
        started = time.perf_counter()
        gc.disable()
        rig.prefill(people - filled, start=filled)
        gc.enable()
        gc.freeze()
        filled, prefill_s = people, time.perf_counter() - started
        grown = max(0, vm_kib("self", "VmRSS") - base_rss) * 1024
        runs, events = [], 0
        for _ in range(passes):
            day = SAMPLE_START + timedelta(days=2 * done)
            sample = generate(people=sample_people, days=1, seed=seed + done, start=day).lines
            known = again(sample, f"-k{done}")
            done += 1
            events = len(sample) + len(known)
            started = time.perf_counter()
            rig.feed(sample)
            rig.feed(known)
            runs.append((time.perf_counter() - started) / events * 1e6)
        out.append(
            {
                "people": people,
                "us_per_event": statistics.median(runs),
                "runs_us": runs,
                "events": events,
                "prefill_s": prefill_s,
                "bytes_per_person": grown / people,
            }
        )
    gc.unfreeze()
    return out
