"""Faust's fetch loop with the gap workaround, driven by a stub consumer (no I/O).

The stub plays the broker for one partition: it holds the offsets that exist, a fetch position
that `seek` moves, and optionally a stale batch (fetched before a seek) that it delivers first.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.transport import consumer as faust_consumer

from stream_app.worker import faust_gap_fix

TP = ("touchpoints", 0)


class StubConsumer:
    consumer_stopped_errors = ()
    should_stop = False
    _commit_every = None
    _n_acked = 0

    def __init__(self, offsets: list[int], position: int, read_offset: int | None, stale: list[int]):
        self.offsets, self.position, self.stale = offsets, position, list(stale)
        self._read_offset = {TP: read_offset}
        self.delivered: list[int] = []
        self.gaps: list[tuple[int, int]] = []
        self.fetches = 0
        self._stopped = SimpleNamespace(is_set=lambda: self.fetches > 6)
        self.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
        self.log = SimpleNamespace(dev=lambda *a: None, info=lambda *a: None, exception=lambda *a: None)
        self.suspend_flow = asyncio.Event()
        self.transport = SimpleNamespace(app=SimpleNamespace(should_stop=False))

    async def getmany(self, timeout: float):
        self.fetches += 1
        batch, self.stale = (self.stale, []) if self.stale else (self._fetch(), [])
        for offset in batch:
            yield TP, SimpleNamespace(offset=offset, topic=TP[0], key=None, value=None)

    def _fetch(self) -> list[int]:
        batch = [o for o in self.offsets if o >= self.position]
        if batch:
            self.position = batch[-1] + 1
        return batch

    async def seek(self, tp, offset: int) -> None:  # as Faust's: the fetch position and read offset
        self.position = offset
        self._read_offset[tp] = offset

    async def callback(self, message) -> None:
        self.delivered.append(message.offset)

    async def wait_first(self, first, second):
        second.close()
        await first

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)

    async def _add_gap(self, tp, offset_from: int, offset_to: int) -> None:
        self.gaps.append((offset_from, offset_to))


def drain(drain_messages, consumer: StubConsumer) -> StubConsumer:
    fetcher = SimpleNamespace(_stopped=SimpleNamespace(is_set=lambda: False))
    asyncio.run(drain_messages(consumer, fetcher))
    return consumer


def test_a_stale_batch_after_a_seek_is_read_again_in_order_not_counted_as_a_gap():
    """Sought back to offset 3; a batch of 7-9 fetched before the seek arrives first."""
    fixed = drain(faust_gap_fix._drain_messages, StubConsumer(list(range(10)), 3, 3, stale=[7, 8, 9]))
    assert fixed.gaps == []
    assert sorted(set(fixed.delivered)) == list(range(3, 10))
    assert fixed.delivered[: fixed.delivered.index(9) + 1] == [3, 4, 5, 6, 7, 8, 9]


def test_a_real_hole_is_checked_once_then_taken_as_a_gap():
    """Offsets 3 and 4 do not exist (transaction markers): one record is read twice, then the
    gap is Faust's as before."""
    fixed = drain(faust_gap_fix._drain_messages, StubConsumer([0, 1, 2, 5, 6], 2, None, stale=[]))
    assert fixed.delivered == [2, 2, 5, 6]
    assert fixed.gaps == [(3, 5)]


def test_faust_itself_still_loses_the_records_behind_a_stale_batch():
    """Faust's own loop, same stub: 3-6 are counted as a gap and dropped when they come. Once
    this fails, Faust handles it: drop the workaround."""
    faust = drain(faust_gap_fix._original, StubConsumer(list(range(10)), 3, 3, stale=[7, 8, 9]))
    assert faust.gaps == [(4, 7)]
    assert not set(range(3, 7)) & set(faust.delivered)


def test_install_swaps_the_loop_in():
    try:
        faust_gap_fix.install()
        assert faust_consumer.Consumer._drain_messages is faust_gap_fix._drain_messages
    finally:
        faust_consumer.Consumer._drain_messages = faust_gap_fix._original
