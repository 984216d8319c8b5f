"""A batch waits for the broker's acknowledgement of what it sent, reported from another thread."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from stream_app.worker.producer import Deliveries, DeliveryFailed


def _acknowledge_later(deliveries: Deliveries, count: int, error: str | None = None) -> threading.Thread:
    def run() -> None:
        for n in range(count):
            time.sleep(0.001)
            deliveries.on_delivery(error if n == count - 1 else None, None)  # type: ignore[arg-type]

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_wait_returns_only_once_every_record_produced_so_far_is_acknowledged():
    async def main() -> list[int]:
        deliveries = Deliveries()
        seen = []
        for _ in range(3):  # batches: each waits for its own records, reported one by one
            deliveries.produced += 50
            thread = _acknowledge_later(deliveries, 50)
            await deliveries.wait()
            seen.append(deliveries.acknowledged)
            thread.join()
        return seen

    assert asyncio.run(asyncio.wait_for(main(), 10)) == [50, 100, 150]


def test_wait_with_nothing_outstanding_returns_at_once():
    deliveries = Deliveries()
    asyncio.run(asyncio.wait_for(deliveries.wait(), 1))
    assert (deliveries.produced, deliveries.acknowledged) == (0, 0)


def test_a_failed_delivery_raises_in_the_waiting_stage():
    async def main() -> None:
        deliveries = Deliveries()
        deliveries.produced += 5
        thread = _acknowledge_later(deliveries, 5, error="MSG_SIZE_TOO_LARGE")
        try:
            await deliveries.wait()
        finally:
            thread.join()

    with pytest.raises(DeliveryFailed, match="1 records not delivered, first: MSG_SIZE_TOO_LARGE"):
        asyncio.run(asyncio.wait_for(main(), 10))


class _Msg:
    def __init__(self, topic: str, partition: int, offset: int):
        self._t, self._p, self._o = topic, partition, offset

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


def test_the_newest_offset_acknowledged_is_kept_per_partition_of_tracked_topics_only():
    deliveries = Deliveries()
    deliveries.tracked.add("state-changelog")
    for topic, partition, offset in [
        ("state-changelog", 0, 5),
        ("state-changelog", 0, 3),  # reports may come out of order across batches
        ("state-changelog", 1, 9),
        ("coupons", 0, 100),
    ]:
        deliveries.on_delivery(None, _Msg(topic, partition, offset))  # type: ignore[arg-type]
    assert deliveries.take_landed() == {("state-changelog", 0): 5, ("state-changelog", 1): 9}
    assert deliveries.take_landed() == {}
