"""The stages' producer: confluent-kafka (librdkafka) for everything the stages send themselves.

Faust's producer path costs ~40 µs a record here (aiokafka's Python accumulator, a future per
record) and a table write through Faust's buffer ~100 µs; librdkafka takes a record in a few µs
(measured in one run beside the Faust ceiling: `take` alone ~10,800 records/s, `take` plus an
aiokafka send per record ~7,000/s, plus a librdkafka produce per record ~10,000/s). The person
and de-duplication tables' changelogs go this way too (`worker/state.py`); Faust keeps its own
producer for the other tables' changelogs and its own topics.

At-least-once holds because Faust flushes its producer before it commits input offsets, and the
worker makes that flush wait for this producer too (`flush_before_commit`): everything the stages
sent for a batch is acknowledged before the batch's offsets are committed. A batch does not wait
for its own acknowledgements: with that wait in every batch, one chaos run of three lost 157
events at the start of its partitions (not reproduced by its seed; the cause was not found, and a
batch held across more rebalances is the suspect). Delivery reports are served by one thread
polling librdkafka; a stage that must wait for its records (the linker's merges, a progress
marker) is woken on the event loop when they are in. An outage makes the wait longer, never a
loss: messages wait in librdkafka (`message.timeout.ms` 0: for ever) until the broker is back. A
delivery that fails for good (a record too large, say) raises in the stage, which stops the worker
with the reason: a crash reads the batch again, so nothing is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

log = logging.getLogger(__name__)

POLL_S = 0.05
FLUSH_POLL_S = 0.002
"""How often a commit waiting for the stages' records looks again (commits come every few s)."""
"""How long the delivery thread waits in librdkafka per call (it wakes at once on a report)."""


class DeliveryFailed(RuntimeError):
    """A record the broker will never take: the stage stops rather than commit past it."""


@dataclass(frozen=True)
class Delivered:
    """Where a record landed (what a DLQ ledger remembers)."""

    partition: int
    offset: int


class Deliveries:
    """Counts one sender's records produced and acknowledged; `wait` until the two meet.

    `produced` is counted on the event loop only and `acknowledged` in the delivery thread only,
    so neither is written by two threads. For the topics in `tracked` (tables' changelogs) it also
    keeps the newest offset acknowledged per partition (`take_landed`)."""

    def __init__(self) -> None:
        self.produced = 0
        self.acknowledged = 0
        self.failures: list[str] = []
        self.tracked: set[str] = set()
        self._landed: dict[tuple[str, int], int] = {}
        self.served = False
        """Known to the producer's `delivered_all` (set at the first record)."""
        self._waiter: asyncio.Future[None] | None = None
        self._target = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        """librdkafka's report (in the delivery thread)."""
        if err is not None:
            self.failures.append(str(err))
        elif self.tracked and (topic := msg.topic()) in self.tracked:
            where, offset = (topic, msg.partition() or 0), msg.offset() or 0
            if offset > self._landed.get(where, -1):
                self._landed[where] = offset
        self.acknowledged += 1
        waiter, loop = self._waiter, self._loop
        if waiter is not None and loop is not None and self.acknowledged >= self._target:
            loop.call_soon_threadsafe(_wake, waiter)

    async def wait(self) -> None:
        """Until every record produced so far is acknowledged; raises if any delivery failed."""
        target = self._target = self.produced
        while self.acknowledged < target:
            self._loop = asyncio.get_running_loop()
            self._waiter = self._loop.create_future()
            if self.acknowledged >= target:  # (reported between the check and the waiter)
                break
            await self._waiter
        self._waiter = None
        if self.failures:
            failures, self.failures = self.failures, []
            raise DeliveryFailed(f"{len(failures)} records not delivered, first: {failures[0]}")

    def take_landed(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> newest offset acknowledged since the last call, tracked topics
        only. (A report landing during the swap may be missed: that offset is only a hint.)"""
        landed, self._landed = self._landed, {}
        return landed


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class StageProducer:
    """One librdkafka producer for the worker's stages, its delivery thread, Kafka's partitioner.

    Started by its first record (a pipeline built but never run starts no thread)."""

    def __init__(self, bootstrap: str, linger_s: float, extra: Mapping[str, Any] | None = None):
        self.conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "linger.ms": linger_s * 1000,
            # Retries keep order and never duplicate within a session.
            "enable.idempotence": True,
            # Keyed records land where Java's and aiokafka's partitioner (and Faust's router) put them.
            "partitioner": "murmur2_random",
            "message.timeout.ms": 0,  # an outage waits; it never drops a record
            "compression.type": "none",
            # An outage is the broker monitor's to report, once: librdkafka would log every retry.
            "log_level": 2,
            "error_cb": _on_error,
            **(extra or {}),
        }
        self._producer: Producer | None = None
        self._running = False
        self._thread: threading.Thread | None = None
        self._served: list[Deliveries] = []

    def _started(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self.conf)
            self._running = True
            self._thread = threading.Thread(target=self._serve, name="stage-producer-deliveries", daemon=True)
            self._thread.start()
        return self._producer

    def produce(
        self,
        deliveries: Deliveries,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: Mapping[str, bytes] | None = None,
    ) -> None:
        deliveries.produced += 1
        if not deliveries.served:
            deliveries.served = True
            self._served.append(deliveries)
        producer = self._producer or self._started()
        while True:
            try:
                producer.produce(
                    topic,
                    value,
                    key,
                    -1 if partition is None else partition,
                    on_delivery=deliveries.on_delivery,
                    headers=list(headers.items()) if headers else None,
                )
                return
            except BufferError:  # librdkafka's queue is full: the delivery thread drains it
                time.sleep(0.005)

    def produce_one(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        headers: Mapping[str, bytes] | None = None,
    ) -> asyncio.Future[Delivered]:
        """One record with a future of where it landed (for the few whose offset is kept)."""
        loop = asyncio.get_running_loop()
        landed: asyncio.Future[Delivered] = loop.create_future()

        def report(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                outcome: Any = DeliveryFailed(str(err))
            else:
                outcome = Delivered(msg.partition() or 0, msg.offset() or 0)
            loop.call_soon_threadsafe(_settle, landed, outcome)

        (self._producer or self._started()).produce(
            topic,
            value,
            key,
            -1 if partition is None else partition,
            on_delivery=report,
            headers=list(headers.items()) if headers else None,
        )
        return landed

    async def delivered_all(self) -> None:
        """Until every record produced so far, by any stage, is acknowledged (Faust's commit)."""
        targets = [(d, d.produced) for d in self._served]
        while any(d.acknowledged < target for d, target in targets):
            await asyncio.sleep(FLUSH_POLL_S)
        for d, _ in targets:
            if d.failures:
                failures, d.failures = d.failures, []
                raise DeliveryFailed(f"{len(failures)} records not delivered, first: {failures[0]}")

    def flush_before_commit(self, faust_producer: Any) -> None:
        """Make Faust's producer flush (what its consumer awaits before it commits offsets)
        wait for this producer's records as well."""
        flush_faust = faust_producer.flush

        async def flush() -> None:
            await flush_faust()
            await self.delivered_all()

        faust_producer.flush = flush

    def _serve(self) -> None:
        producer = self._producer
        assert producer is not None
        while self._running:
            producer.poll(POLL_S)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the delivery thread, then deliver what is queued (up to `timeout_s`)."""
        if self._producer is None:
            return
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=POLL_S * 4)
        self._producer.flush(timeout_s)


def _on_error(err: KafkaError) -> None:
    """librdkafka's client-wide errors: transient ones (brokers down) it retries by itself."""
    if err.fatal():
        log.error("the stages' producer failed for good: %s", err)


def _settle(future: asyncio.Future[Delivered], outcome: Any) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
