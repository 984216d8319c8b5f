"""WORKAROUNDS for three Faust defects that lose events around rebalances and recoveries.

1. After table recovery, stream partitions resume before they are sought to their committed
   offsets (`on_recovery_completed`, below).
2. Seeking back to committed offsets leaves a partition with nothing committed yet where a dropped
   fetch left it (`perform_seek`, below).
3. A fetch takes records from partitions Faust then throws away, past the seek meant to bring
   them back (`fetch_records`, below).

The first:

faust-streaming 0.15's `Recovery.on_recovery_completed` calls `consumer.resume_partitions(...)`
and only then `consumer.perform_seek()`. The fetcher is already running (flow was resumed to read
the changelogs), so in between it fetches the stream partitions and agents start on those records.
When the seek lands it resets each partition's read offset to the committed one; a record from a
fetch made before the seek that arrives after it (further on in the partition) then opens a "gap"
and moves the read offset past everything in between, and those records, fetched again from the
committed offset, are dropped as already read. They are never processed and their offsets are
committed: lost. Upstream fixed the same ordering in `_resume_streams` (faust-streaming #216/#217)
but not here.

Seen on this project: a worker restarted with its state wiped (restoring from the changelogs, so
recovery takes a while) while events kept arriving lost 100-400 of 700 events in about one run in
ten on a loaded machine; worker logs showed the gap, then "DROPPED MESSAGE ROFF" for the records
in it. The fix is the upstream one: seek first, then resume. `install()` swaps in the corrected
method (a copy of Faust's, with those two steps in that order); it applies on every transport,
since the defect is Faust's, not the broker's. `tests/unit/test_faust_recovery_fix.py` checks the
order against a recording stub and fails once Faust's own method gets it right (drop this then).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka.consumer.fetcher import Fetcher
from aiokafka.errors import IllegalStateError
from aiokafka.structs import TopicPartition
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer, ensure_TP
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_original = Recovery.on_recovery_completed
_original_perform_seek = Consumer.perform_seek
_original_fetch_records = AIOKafkaConsumerThread._fetch_records
_original_seek_to = Fetcher.seek_to
_original_request_offset_reset = Fetcher.request_offset_reset


async def on_recovery_completed(self: Any, generation_id: int = 0) -> None:
    """Faust's `Recovery.on_recovery_completed`, seeking stream partitions before resuming them."""
    consumer = self.app.consumer
    self.log.info("Restore complete!")
    await self.app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callback_coros = [
        asyncio.ensure_future(
            table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table])
        )
        for table in self.tables.values()
    ]
    if callback_coros:
        await asyncio.wait(callback_coros)
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning(
            f"Recovery rebalancing again app id {self.app.consumer_generation_id} param {generation_id}"
        )
        return
    if assignment:
        self.log.info("Seek stream partitions to committed offsets (before resuming them).")
        await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
    consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    self.completed.set()
    self.app.flow_control.resume()
    consumer.resume_flow()
    await self.app._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not self.app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    self.app.on_rebalance_end()
    self.log.info("Worker ready")


async def perform_seek(self: Any) -> None:
    """Faust's `Consumer.perform_seek`, then partitions with nothing committed go to the beginning.

    SECOND WORKAROUND, same family. Faust seeks back to the committed offsets whenever it has
    dropped records it fetched (a rebalance stopped the flow mid-batch, or a fetch came while the
    flow was stopped). aiokafka's `seek_to_committed` moves only partitions with a committed offset
    above 0; one with nothing committed yet (a new topic, or the first seconds of a run, before
    the first commit) stays where the dropped fetch left it, so those records are never processed,
    and the next commit passes them. The chaos test lost 149-302 events that way, in about one run
    in three: whole ranges at the start of one worker's input partitions after a restart. Nothing
    committed means "start where the reset policy says", so with `earliest` they are sought to the
    beginning (re-reading, never skipping)."""
    committed = await self.seek_to_committed()
    _bookkeeping(self, committed)
    changelogs = self.app.tables.changelog_topics
    uncommitted = [
        TopicPartition(tp.topic, tp.partition)
        for tp, offset in committed.items()
        if not offset and tp.topic not in changelogs
    ]
    if uncommitted and self.app.conf.consumer_auto_offset_reset == "earliest":
        # Faust's aiokafka consumer delegates to its consumer thread, which has the method.
        await getattr(self, "_thread", self).seek_to_beginning(*uncommitted)


def _bookkeeping(self: Any, committed: Any) -> None:
    """What Faust's `perform_seek` records after its seek (its own code, so the seek is made once)."""
    self._read_offset.update(
        {tp: offset if offset is not None and offset >= 0 else None for tp, offset in committed.items()}
    )
    self._committed_offset.update(
        {ensure_TP(tp): offset if offset else None for tp, offset in committed.items() if offset is not None}
    )


async def fetch_records(
    self: Any,
    consumer: Any,
    active_partitions: Any,
    timeout: float | None = None,
    max_records: int | None = None,
) -> Any:
    """Faust's `AIOKafkaConsumerThread._fetch_records`, for the partitions active when it starts,
    and undone when a seek came while it waited.

    THIRD WORKAROUND. Faust hands its consumer thread its *live* set of active partitions, and
    aiokafka's `fetched_records` takes an empty set to mean every partition. During a recovery
    the stream partitions are paused (not in the set) and the set holds the changelogs being
    read; when recovery pauses those too, the set is empty while a fetch is still waiting, and
    the fetch takes the stream partitions' records, moving aiokafka's positions past them. Faust
    drops records of partitions that are not active, and it drops a whole fetch when the
    generation changed meanwhile, both trusting a later seek to bring them back; the seek to the
    committed offsets had already been made. When the partitions resume, their first record is
    beyond the committed offset, Faust marks the offsets in between as a "gap" of read records,
    and commits past them: the chaos test lost 90-226 events that way (every stage, all of one
    worker's partitions at once, gaps of 8-71 offsets in its log).

    So the fetch asks for a copy of the set taken when it starts (nothing when it is empty; None,
    a client-only app's "every partition", stays None), and a fetch during which a position was
    sought or reset puts the positions it took back to its first records and returns nothing:
    those records are fetched again from where the seek left them, whatever Faust's main thread
    would have done with these."""
    partitions = None if active_partitions is None else frozenset(active_partitions)
    if partitions is not None and not partitions:
        return {}
    fetcher = consumer._fetcher
    seeks = _seeks(fetcher)
    records = await _original_fetch_records(
        self, consumer, partitions, timeout=timeout, max_records=max_records
    )
    if records and _seeks(fetcher) != seeks:
        for tp, batch in records.items():
            if batch:
                with contextlib.suppress(IllegalStateError):  # no longer assigned
                    fetcher.seek_to(tp, batch[0].offset)
        return {}
    return records


def _seeks(fetcher: Any) -> int:
    return getattr(fetcher, "stream_app_seeks", 0)


def _counting(method: Any) -> Any:
    """`method` of aiokafka's `Fetcher`, counting on the fetcher each time positions move."""

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.stream_app_seeks = _seeks(self) + 1
        return method(self, *args, **kwargs)

    return counted


def install() -> None:
    Recovery.on_recovery_completed = on_recovery_completed  # type: ignore[method-assign]
    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]
    AIOKafkaConsumerThread._fetch_records = fetch_records  # type: ignore[method-assign]
    Fetcher.seek_to = _counting(_original_seek_to)  # type: ignore[method-assign]
    Fetcher.request_offset_reset = _counting(_original_request_offset_reset)  # type: ignore[method-assign]


__all__ = ["fetch_records", "install", "on_recovery_completed", "perform_seek"]
