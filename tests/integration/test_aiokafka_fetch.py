"""aiokafka on the embedded broker: what a fetch for an empty set of partitions takes.

The root of the third workaround in `stream_app.worker.faust_recovery_fix`: Faust hands its live
set of active partitions to aiokafka's `fetched_records`, which reads an empty set as "every
partition" and moves their positions past what it returns.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from confluent_kafka import Producer

from stream_app.config.topology import TopicSpec
from stream_app.io.kafka import ensure_topics

pytestmark = pytest.mark.integration


def test_a_fetch_for_no_partitions_takes_every_partitions_records(broker):
    topic = f"fetch-{time.time_ns()}"
    ensure_topics(broker.bootstrap, [TopicSpec(name=topic, partitions=2)])
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for n in range(10):
        producer.produce(topic, value=b"%d" % n, partition=n % 2)
    assert producer.flush(10) == 0
    first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)

    async def fetch(
        partitions: set[TopicPartition], want: int
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """Records taken per partition until `want` in all, and the positions then."""
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([first, second])
            await consumer.seek_to_beginning(first, second)
            taken: dict[TopicPartition, int] = {}
            deadline = time.monotonic() + 10
            while sum(taken.values()) < want and time.monotonic() < deadline:
                records = await consumer._fetcher.fetched_records(partitions, timeout=1.0)
                for tp, batch in records.items():
                    taken[tp] = taken.get(tp, 0) + len(batch)
            return taken, {tp: await consumer.position(tp) for tp in (first, second)}
        finally:
            await consumer.stop()

    taken, positions = asyncio.run(fetch(set(), want=10))
    assert taken == {first: 5, second: 5}, "aiokafka no longer reads an empty set as every partition"
    assert positions == {first: 5, second: 5}
    taken, positions = asyncio.run(fetch({first}, want=5))
    assert taken == {first: 5} and positions == {first: 5, second: 0}
