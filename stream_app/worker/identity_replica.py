"""Each worker's replica of the identifier -> one_id map, for the identity fast path.

The linker (single writer) publishes every owner change to the `identity_map` topic. Every worker
reads all of its partitions (no consumer group: a replica, like a Kafka Streams GlobalKTable) into
memory, and answers "are all of this event's identifiers known, and one person?" locally. If so the
event needs no linking and is resolved where it is; otherwise it goes to the linker. A stale
replica only sends more events to the linker, or names a one_id that a later merge retired, which
`identity-merges` maps on (as it does for every consumer).

Faust's own GlobalTable is not used: it has open bugs with several workers (faust-streaming #283).
"""

from __future__ import annotations

import asyncio
import logging

import aiokafka
from aiokafka.structs import TopicPartition

log = logging.getLogger(__name__)


class IdentityMapReplica:
    def __init__(self, bootstrap: list[str], topic: str, partitions: int):
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.owners: dict[str, str] = {}
        self.get = self.owners.get
        self.records = 0

    async def run(self) -> None:
        """Follow the topic from its beginning until cancelled."""
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        try:
            consumer.assign([TopicPartition(self.topic, p) for p in range(self.partitions)])
            await consumer.seek_to_beginning()
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for records in batches.values():
                    for record in records:
                        self.owners[record.key.decode()] = record.value.decode()
                    self.records += len(records)
        except asyncio.CancelledError:
            raise
        finally:
            await consumer.stop()
