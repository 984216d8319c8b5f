"""The stage runtime: one agent loop for every stage, batches in, sends out in order, not one by one.

Faust's per-record machinery, not the broker, limits a Faust job (`../shared/ENVIRONMENT-NOTES.md`:
an agent doing nothing but `take` moves ~11,500 records/s here). So:

- Each stage takes its input in batches (`Stream.take_events`), handles control records (markers,
  watermarks) in one place, and its handler only *adds* what it decides to an `Outbox`.
- The outbox sends it when the batch ends (and before any control record, which must stay behind
  the records it covers) through the stages' librdkafka producer (`worker/producer.py`), without
  awaiting each record, then waits until the broker has acknowledged all of it: only then does the
  batch end and Faust may commit its input offsets, so at-least-once holds: a crash before the
  commit reads the batch again.
- Internal topics carry *envelopes*: one record holds, newline-separated, every item the batch
  sent to that partition (orjson never writes a raw newline). A hop between stages costs Faust one
  record per partition per batch, not one per event. Output topics keep one record per event: they
  are the contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka.partitioner import murmur2
from faust.streams import _current_event

from stream_app.config import Topology
from stream_app.control import CONTROL_HEADER
from stream_app.worker.producer import Delivered, Deliveries

CONTROL_HEADERS = {CONTROL_HEADER: b"1"}
BATCH_MAX = 1_000
"""Input records ingest takes at most at once."""
ENVELOPES_MAX = 64
"""Envelopes a later stage takes at most at once (each up to `ENVELOPE_MAX_BYTES`): what bounds a
batch, and the outputs it holds until it ends, to ~16 MiB of events."""
BATCH_WITHIN_S = 0.02
"""How long a stage waits for a batch to fill: the latency a quiet input pays per hop."""
ENVELOPE_MAX_BYTES = 256 * 1024
"""An envelope is closed (and the next item starts another) at this size: well under the 1 MiB
a Kafka producer sends in one request by default, however many fat records a batch took."""


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as Java's and aiokafka's) gives `key`.

    Envelopes name their partition; this keeps an item where a keyed record would have gone, so
    the state keyed by it (a person's tags by one_id) stays where Faust's router, which asks the
    same partitioner, sends a `GET /profiles/{one_id}`. (aiokafka's murmur2 is pure Python: ~3%
    of a worker's time; a compiled one would do.)

    >>> partition_for(b"p-1", 8) == partition_for(b"p-1", 8), 0 <= partition_for(b"x", 3) < 3
    (True, True)
    """
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def envelope_items(value: bytes | None) -> list[bytes]:
    """The items an envelope record carries (each one JSON document).

    >>> envelope_items(b'{"a":1}\\n{"b":2}')
    [b'{"a":1}', b'{"b":2}']
    """
    return value.split(b"\n") if value else []


@contextlib.contextmanager
def as_current(event: Any) -> Iterator[None]:
    """Make `event` Faust's current event while it is handled.

    Workaround: Faust tables find the partition a key is read from and written to (and its
    changelog partition) from the *current event*, which Faust sets per record only when a stream
    is iterated one by one. A batch from `take_events` mixes partitions, so each record is made
    current while it is handled. Uses `faust.streams._current_event` (faust-streaming 0.15).
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


@dataclass(frozen=True)
class TopicNames:
    """The names of the topics stages write through their outboxes, from the topology."""

    events_by_id: str
    linker: str
    person_events: str
    identity_map: str
    resolved: str
    merges: str
    conflicts: str
    dlq: str

    @classmethod
    def of(cls, topology: Topology) -> TopicNames:
        t, i = topology.topics, topology.internal_topics
        return cls(
            events_by_id=i.events_by_id.name,
            linker=i.linker.name,
            person_events=i.person_events.name,
            identity_map=i.identity_map.name,
            resolved=t.resolved.name,
            merges=t.identity_merges.name,
            conflicts=t.identity_conflicts.name,
            dlq=t.dlq.name,
        )


class Producer(Protocol):
    """What an outbox sends through (`StageProducer`; a recording fake in tests)."""

    def produce(
        self,
        deliveries: Deliveries,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: Mapping[str, bytes] | None = None,
    ) -> None: ...

    def produce_one(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        headers: Mapping[str, bytes] | None = None,
    ) -> asyncio.Future[Delivered]: ...


@dataclass
class Outbox:
    """What a stage decided while handling records, kept in order until `send` sends it.

    `add` files a record for a topic; for an enveloped topic the item joins the open envelope of its
    key's partition (or the partition given), or starts the next one when that one is full
    (`max_bytes`). Records to one partition keep the order they were added in, envelopes
    included, which is all Kafka orders anyway. `delivered` waits for the broker's
    acknowledgement of everything sent so far.
    """

    producer: Producer
    partitions: dict[str, int]
    """Topic -> partition count, for every topic the stage writes."""
    enveloped: frozenset[str]
    max_bytes: int = ENVELOPE_MAX_BYTES
    _pending: list[tuple[str, bytes | None, bytes | list[bytes] | None, int | None]] = field(
        default_factory=list
    )
    _open: dict[tuple[str, int], list[bytes]] = field(default_factory=dict)
    """(topic, partition) -> the items of the envelope still taking them."""
    _open_bytes: dict[tuple[str, int], int] = field(default_factory=dict)
    """(topic, partition) -> that envelope's size so far, separators included."""
    deliveries: Deliveries = field(default_factory=Deliveries)

    def add(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None) -> None:
        """`value` None: a tombstone (deletes the key of a compacted topic; never enveloped)."""
        if topic not in self.enveloped or value is None:
            self._pending.append((topic, key, value, partition))
            return
        if partition is None:
            assert key is not None, f"an item for {topic} needs a key or a partition"
            partition = partition_for(key, self.partitions[topic])
        where = (topic, partition)
        items = self._open.get(where)
        if items is None or self._open_bytes[where] + len(value) + 1 > self.max_bytes:
            items = self._open[where] = []
            self._open_bytes[where] = 0
            self._pending.append((topic, None, items, partition))
        items.append(value)
        self._open_bytes[where] += len(value) + 1

    def __len__(self) -> int:
        return len(self._pending)

    def send(self) -> None:
        """Hand everything to the producer, in order (`delivered` waits for the broker)."""
        pending, self._pending, self._open, self._open_bytes = self._pending, [], {}, {}
        produce, deliveries = self.producer.produce, self.deliveries
        for topic, key, value, partition in pending:
            payload = b"\n".join(value) if isinstance(value, list) else value
            produce(deliveries, topic, key, payload, partition)

    async def delivered(self) -> None:
        """Until the broker has acknowledged everything sent so far (raises `DeliveryFailed`)."""
        await self.deliveries.wait()

    def send_record(
        self, topic: str, key: bytes | None, value: bytes, partition: int | None = None
    ) -> asyncio.Future[Delivered]:
        """One record at once (not in the batch's order), with a future of where it landed."""
        return self.producer.produce_one(topic, key, value, partition)

    def send_control(self, topic: str, value: bytes) -> None:
        """A control record to every partition of `topic`, behind everything added before it."""
        self.send()
        for target in range(self.partitions[topic]):
            self.producer.produce(self.deliveries, topic, None, value, target, CONTROL_HEADERS)


CHANGELOG_BUFFER_MAX = 10_000
"""Table changelog records Faust holds before it makes the stream wait (its default, 100, is
below what one batch writes, and it logged a warning per input record while it waited)."""


async def batches(
    stream: Any, max_records: int = BATCH_MAX, within: float = BATCH_WITHIN_S
) -> AsyncIterator[list[Any]]:
    """The stream's events in batches; Faust acks (and may then commit) a batch after the loop body."""
    stream.app.producer.buffer.max_messages = CHANGELOG_BUFFER_MAX
    async for events in stream.take_events(max_records, within):
        yield events
