"""WORKAROUND: Faust's worker consumer asks the broker to hold each fetch up to 1.5 s.

faust-streaming 0.15 builds its worker's `AIOKafkaConsumer` with `fetch_max_wait_ms=1500`, hard-coded
(aiokafka's and Kafka's own default is 500). A broker answers a fetch as soon as there is data, in
theory; the embedded broker (Tansu) answered a fetch that asked for 1.5 s only ~0.4 s after a record
arrived, and one that asked for 500 ms within ~6 ms (measured: one record every 0.37 s on an idle
topic). With records arriving on several partitions a record still waited up to the whole wait (a
partition with records fetched is left out of the next fetch until they are consumed): the live
probe's events reached ingest 16-270 ms after they were produced at 500 ms, 8-71 ms at 100 ms. Every
hop between two stages is such a fetch, so the wait came four times into the time from an event to
its action. `install()` makes the worker's consumer ask for `FETCH_MAX_WAIT_MS` instead: 50 ms, an
empty fetch 20 times a second per worker when nothing comes, which a broker hardly notices.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

FETCH_MAX_WAIT_MS = 50

_original = AIOKafkaConsumerThread._create_worker_consumer


def _create_worker_consumer(self: AIOKafkaConsumerThread, transport: Any) -> Any:
    consumer = _original(self, transport)
    consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by aiokafka when it starts its fetcher
    return consumer


def install() -> None:
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]


__all__ = ["FETCH_MAX_WAIT_MS", "install"]
