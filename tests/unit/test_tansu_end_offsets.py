"""The Tansu end-offset workaround never settles for the under-reported end (no broker).

Faust recovers a table up to the end offsets it is given. Before, a fetch that was not answered
within 10 s (a loaded machine) made the workaround fall back to ListOffsets' answer, which Tansu
under-reports: the table was recovered short, and the records after that point were lost (the
linker then minted new one_ids for identifiers it already had: people split).
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka.structs import TopicPartition

from stream_app.io.tansu_transport import EndOffsetsUnknown, true_end_offsets

TP = TopicPartition("identity-owners-changelog", 0)


class SlowConsumer:
    """Answers the fetch (its high watermark) only after `answer_after` calls to `getmany`."""

    def __init__(self, answer_after: int, highwater: int = 120) -> None:
        self.answer_after, self._highwater, self.calls, self.stopped = answer_after, highwater, 0, False

    async def start(self) -> None: ...

    async def stop(self) -> None:
        self.stopped = True

    def assign(self, partitions: list[TopicPartition]) -> None: ...

    def seek(self, tp: TopicPartition, offset: int) -> None:
        assert offset == 9  # the base offset of the newest batch (listed end less one)

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int) -> dict:
        self.calls += 1
        await asyncio.sleep(0.01)
        return {}

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._highwater if self.calls > self.answer_after else None


def test_a_slow_answer_is_waited_for_and_said_once(caplog):
    consumer = SlowConsumer(answer_after=10)  # ~0.1 s, past the 0.02 s after which it warns
    with caplog.at_level(logging.WARNING, logger="stream_app.io.tansu_transport"):
        ends = asyncio.run(true_end_offsets("x", {TP: 10}, timeout=0.02, give_up_s=30, consumer=consumer))
    assert ends == {TP: 120}  # the fetch's high watermark, not ListOffsets' 10
    assert len([r for r in caplog.records if "no fetch answer yet" in r.message]) == 1
    assert consumer.stopped


def test_no_answer_at_all_raises_instead_of_recovering_short():
    consumer = SlowConsumer(answer_after=10**9)
    with pytest.raises(EndOffsetsUnknown):
        asyncio.run(true_end_offsets("x", {TP: 10}, timeout=0.01, give_up_s=0.1, consumer=consumer))
    assert consumer.stopped


def test_an_empty_partition_needs_no_probe():
    consumer = SlowConsumer(answer_after=10**9)
    assert asyncio.run(true_end_offsets("x", {TP: 0}, consumer=consumer)) == {TP: 0}
    assert consumer.calls == 0
