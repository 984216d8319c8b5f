"""The de-duplication stage's Faust adapter, with the identity fast path.

Whether an event_id was seen is decided by `stream_app.ingest.dedupe` over the `event-ids` table
(bounded by `dedupe.retention`, swept by `EventIdExpiry`). A first delivery whose identifiers the
worker's replica of the identifier map already knows as one person is resolved here; any other
goes to the linker.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import orjson

from stream_app.identity import records as identity_records
from stream_app.identity.resolver import known_owner
from stream_app.ingest.dedupe import (
    EventIdExpiry,
    is_first_delivery,
    position,
    recorded_position,
    remembered,
)
from stream_app.metrics import Metrics
from stream_app.worker.identity_replica import IdentityMapReplica
from stream_app.worker.link_stage import publish_resolved
from stream_app.worker.runtime import Outbox, TopicNames, envelope_items
from stream_app.worker.state import BatchState, FaustTableStore
from stream_app.worker.table_scan import scan_partition
from stream_app.worker.tables import Tables

SWEEP_INTERVAL_MS = 1_000
"""How often, at most, each de-duplication partition walks on through its keys to expire them."""


class DedupeStage:
    def __init__(
        self,
        tables: Tables,
        partitions: int,
        retention_ms: int,
        replica: IdentityMapReplica,
        outbox: Outbox,
        names: TopicNames,
        metrics: Metrics,
        now_ms: Callable[[], int],
    ):
        self.seen_event_ids = tables(
            "event-ids",
            partitions=partitions,
            key_type=str,
            help="event_id -> [position of the record that first carried it, event time]; "
            "bounded by dedupe.retention of event time",
        )
        # Read and written through the batch (one RocksDB write batch, changelog with the outbox).
        self.store = FaustTableStore(self.seen_event_ids, outbox=outbox)
        self.event_ids = BatchState(self.store)
        self.expiry = EventIdExpiry(
            # Its values are plain JSON lists ([position, event time]).
            partial(scan_partition, self.seen_event_ids, decode_value=orjson.loads),
            self._forget,
            retention_ms,
        )
        self.replica = replica
        self.outbox = outbox
        self.names = names
        self.metrics = metrics
        self.now_ms = now_ms
        self._swept_at: dict[int, int] = {}

    async def handle(self, record: Any) -> None:
        message = record.message
        for index, value in enumerate(envelope_items(record.value)):
            event = orjson.loads(value)
            event_id = event["event_id"]
            here = position(message.partition, message.offset, index)
            recorded = recorded_position(self.event_ids.get(event_id))
            if not is_first_delivery(recorded, here):
                self.metrics.events_duplicate.inc()
                continue
            # Decided before remembering; the outbox is flushed before the input offset is
            # committed, and a redelivery of this same record passes again (at-least-once).
            self._to_identity(value, event, redelivered=recorded is not None)
            self.event_ids[event_id] = remembered(here, int(event["event_time_ms"]))
            self.expiry.added(message.partition)
            self.metrics.events_out.inc()

    def _to_identity(self, value: bytes, event: dict[str, Any], redelivered: bool) -> None:
        """Resolve here when the replica already knows the answer; otherwise ask the linker.

        Either way the person stage is told which fragments the person must have taken in first
        (`after`). A redelivery always asks the linker: its first pass may have gone to a person
        merged since, and the replica may not have heard of that merge yet."""
        one_id = None if redelivered else known_owner(self.replica.get, identity_records.event_keys(event))
        if one_id is None:
            self.outbox.add(self.names.linker, None, value, partition=0)
            return
        self.metrics.identity_fast_path.inc()
        fragments = self.replica.get(identity_records.fragments_key(one_id))
        after = orjson.loads(fragments) if fragments else None
        publish_resolved(self.outbox, self.names, event, one_id, after)

    def sweep(self, partition: int, watermark_ms: int) -> None:
        """Within a record of `partition` (Faust writes the deletions to that changelog partition);
        at most once a second per partition, however many writers send it watermarks."""
        wall = self.now_ms()
        if wall - self._swept_at.get(partition, 0) < SWEEP_INTERVAL_MS:
            return
        self._swept_at[partition] = wall
        self.expiry.sweep(partition, watermark_ms)
        self.event_ids.flush()  # the deletions, into the outbox ahead of the watermark passed on
        self.metrics.dedupe_event_ids.set(sum(self.expiry.sizes.values()))

    def end_batch(self) -> None:
        """Write the ids the batch remembered, each once (before the outbox is sent)."""
        self.event_ids.flush()

    def persist_landed(self) -> None:
        """Where the changelog is acknowledged up to so far: the offset recovery starts from."""
        self.store.persist(self.outbox.deliveries.take_landed())

    def forget_cursors(self) -> None:
        self.expiry.forget_cursors()

    def _forget(self, event_id: Any) -> None:
        del self.event_ids[event_id]
        self.metrics.dedupe_event_ids_expired.inc()
