"""WORKAROUND for a Faust defect: a record fetched before a seek, delivered after it, makes Faust
commit past records it never processed.

faust-streaming 0.15's fetch loop (`Consumer._drain_messages`) treats a jump in a partition's
offsets (a record at offset m when it last read r < m - 1) as a *gap*: offsets a compacted topic or
transaction markers left out. It marks r+1 .. m-1 as done, so the next commit passes them, and
moves its read offset to m, so those records, when they do come, are dropped as already read.
That is right for a real hole. But a batch fetched before a seek (a rebalance or a recovery moved
the partition back to its committed offset) can still be delivered after it, and then the "gap"
is records that exist and were never processed: lost, and their offsets committed. The chaos test
(`tests/faults/test_chaos.py`, workers SIGKILLed at random while input flows) lost 149-302 valid
events in about one run of ten that way: whole ranges of one worker's input partitions after a
restart, never read by ingest, their invalid neighbours missing from the DLQ too.

The fix tells the two cases apart by asking the broker again. On a jump, the record is not
delivered; the partition is sought back to the last record read (re-reading one record, which
at-least-once allows), and the jump is remembered. A stale batch's records are all dropped this
way and read again in order. If the same record shows the same jump again, the hole is real and
Faust's own gap handling takes it, as before. `install()` swaps the corrected loop in (a copy of
Faust's with that one branch changed); `tests/unit/test_faust_gap_fix.py` drives it with a stub.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.transport import consumer as faust_consumer
from faust.types import TP

log = logging.getLogger(__name__)

_original = faust_consumer.Consumer._drain_messages


async def _deliver_or_recheck(self: Any, tp: TP, offset: int, r_offset: int) -> bool:
    """Whether the record at `offset`, `offset - r_offset` past the last read, may be delivered.

    The first jump from `r_offset` seeks back there and is remembered; the rest of that batch is
    dropped with it. The same jump seen again after the seek is a real hole."""
    pending: dict[TP, tuple[int, int]] | None = getattr(self, "_stream_app_rechecks", None)
    if pending is None:
        pending = self._stream_app_rechecks = {}
    sought, first_jump = pending.get(tp, (None, None))
    if sought == r_offset:
        if offset == first_jump:  # the broker says it again: a real hole (compaction, markers)
            del pending[tp]
            await self._add_gap(tp, r_offset + 1, offset)
            return True
        return False  # the rest of a batch already being read again
    pending[tp] = (r_offset, offset)
    log.info(
        "Faust gap workaround: %s jumped from offset %d to %d; reading again from %d",
        tp,
        r_offset,
        offset,
        r_offset,
    )
    await self.seek(tp, r_offset)
    return False


async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - Faust's loop
    """Faust's `Consumer._drain_messages`, with a jump in offsets checked before it counts as a gap."""
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = faust_consumer.CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = getmany(timeout=1.0)
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0

                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if (
                            gap > 1
                            and r_offset
                            and acks_enabled_for(message.topic)
                            and not await _deliver_or_recheck(self, tp, offset, r_offset)
                        ):
                            continue  # stale or not, it comes again after the seek
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                        set_read_offset(tp, offset)
                    else:
                        self.log.dev("DROPPED MESSAGE ROFF %r: k=%r v=%r", offset, message.key, message.value)
                unset_flag(flag_consumer_fetching)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)


def install() -> None:
    faust_consumer.Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]


__all__ = ["install"]
