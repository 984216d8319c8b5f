"""The ingest stage's Faust adapter: input records through `stream_app.ingest`, the accepted on to
de-duplication, the rejected to the DLQ once each, and each input partition's event time.

What an event is worth (the contract, identifiers, PII) is decided in `Ingestor`; here only what
it takes to carry that out on Faust: the outbox, the DLQ ledger, and the watermark ingest makes
for every input partition it reads (`stream_app.control.source_watermark`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import faust
import orjson
from faust.types import TP

from stream_app.control import Watermark, source_watermark
from stream_app.ingest import Accepted, Ingestor, Rejected
from stream_app.metrics import Metrics
from stream_app.worker.dlq_ledger import DlqLedger
from stream_app.worker.runtime import Outbox, TopicNames, as_current

IDLE_AFTER_MS = 10_000
"""Wall-clock quiet time after which an input partition read to its end is idle (left out of the
minimum downstream), as is one never read since this worker started."""


class IngestStage:
    def __init__(
        self,
        app: faust.App,
        ingestor: Ingestor,
        dlq_ledger: DlqLedger,
        outbox: Outbox,
        names: TopicNames,
        input_topic: str,
        lateness_ms: int,
        metrics: Metrics,
        now_ms: Callable[[], int],
    ):
        self.app = app
        self.ingestor = ingestor
        self.dlq_ledger = dlq_ledger
        self.outbox = outbox
        self.names = names
        self.input_topic = input_topic
        self.lateness_ms = lateness_ms
        self.metrics = metrics
        self.now_ms = now_ms
        self._newest: dict[int, tuple[int, int]] = {}
        """Input partition -> (newest event time ingested, wall clock then)."""
        self._known_since: dict[int, int] = {}
        """Input partition -> wall clock when this worker first announced it."""
        self._read_to: dict[int, int] = {}
        """Input partition -> offset of the last record ingest took up."""
        self._unacked_dlq: dict[int, tuple[Any, int, Any]] = {}
        """Input partition -> (event, offset, delivery) of its newest DLQ record not yet acknowledged."""
        self._ingested: dict[int, int] = {}
        """Input partition -> newest event time in what was added to the outbox but not yet sent."""

    async def handle(self, event: Any) -> None:
        message = event.message
        self._read_to[message.partition] = message.offset  # (the record is done below)
        self.metrics.messages_in.inc()
        with self.metrics.ingest_seconds.time():
            # The record's timestamp: when the event reached the input topic (CreateTime, the
            # producer's clock, unless the topic keeps LogAppendTime).
            arrived = int(message.timestamp * 1000) if message.timestamp else None
            outcome = self.ingestor.process(event.value, self.now_ms(), arrived)
        if isinstance(outcome, Accepted):
            self._accept(outcome)
            t = outcome.event["event_time_ms"]
            self._ingested[message.partition] = max(t, self._ingested.get(message.partition, t))
        else:
            await self._reject(event, outcome)

    def read_past(self, message: Any) -> None:
        """A record ingest took up without handling it (a progress marker): a partition whose last
        record is a marker is read to its end (it once never was, so after `make run` streamed its
        file, event time never moved on for live events)."""
        self._read_to[message.partition] = message.offset

    async def sent(self) -> None:
        """After the outbox went out: the DLQ ledger, and the event time it carried."""
        await self._remember_dlq()
        # After the send: a watermark announced from here on comes behind these events.
        # The clock a quiet partition follows starts at its newest event (an older one moves nothing).
        for partition, newest in self._ingested.items():
            before = self._newest.get(partition)
            if before is None or newest > before[0]:
                self._newest[partition] = (newest, self.now_ms())
        self._ingested.clear()

    def _accept(self, accepted: Accepted) -> None:
        event = accepted.event
        self.metrics.valid(event["event_type"], event["channel"])
        for id_type in accepted.dropped_identifiers:
            self.metrics.identifiers_dropped.labels(id_type).inc()
        self.outbox.add(self.names.events_by_id, accepted.event_id.encode(), orjson.dumps(event))

    async def _reject(self, event: Any, rejected: Rejected) -> None:
        """To the DLQ once per input position, also when the input is read again after a crash."""
        message = event.message
        topic, partition, offset = message.topic, message.partition, message.offset
        if await self.dlq_ledger.recorded(partition, offset):
            self.metrics.dlq_repeats_skipped.inc()
            return
        self.metrics.events_dlq.labels(rejected.reason).inc()
        source = {"topic": topic, "partition": partition, "offset": offset}
        record = self.ingestor.dlq_record(event.value, rejected, source, self.now_ms())
        key = f"{topic}:{partition}:{offset}".encode()
        dlq_partition = self.dlq_ledger.dlq_partition(partition)
        sent = self.outbox.send_record(self.names.dlq, key, orjson.dumps(record), dlq_partition)
        self._unacked_dlq[partition] = (event, offset, sent)

    async def _remember_dlq(self) -> None:
        """Once a batch's DLQ records are acknowledged: the newest per input partition, in the
        ledger (a crash before this is caught up from the DLQ itself)."""
        unacked, self._unacked_dlq = self._unacked_dlq, {}
        for partition, (event, offset, sent) in unacked.items():
            dlq_offset = (await sent).offset
            with as_current(event):
                self.dlq_ledger.remember(partition, offset, dlq_offset)

    def watermarks(self) -> list[Watermark]:
        """Each input partition this worker reads: nothing older than its watermark will come."""
        mine = sorted(tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.input_topic)
        marks = []
        for partition in mine:
            # Never read here: quiet since this worker first announced it.
            never_read = (None, self._known_since.setdefault(partition, self.now_ms()))
            newest, seen_at = self._newest.get(partition, never_read)
            caught_up = self._read_to_end(TP(self.input_topic, partition))
            mark = source_watermark(
                newest, seen_at, self.now_ms(), self.lateness_ms, IDLE_AFTER_MS, caught_up
            )
            marks.append(replace(mark, writer=f"ingest:{partition}"))
        return marks

    def _read_to_end(self, tp: TP) -> bool:
        """Whether ingest has processed everything the partition holds (as of the last fetch)."""
        end = self.app.consumer.highwater(tp)
        if end is None:
            return False
        done = self._read_to.get(tp.partition)
        # Not read since start: where the group's committed offset left it (Faust's own record).
        next_offset = done + 1 if done is not None else (self.app.consumer._committed_offset.get(tp) or 0)
        return next_offset >= end
