"""Which inputs are on the DLQ already: each invalid input is recorded once, also across crashes.

A worker killed after writing DLQ records, but before committing its input offsets, reads those
inputs again when it (or another worker) takes the partition up. Remembering "recorded up to input
offset N" in a changelogged table is not enough on its own: a crash between the DLQ write and the
table write would still repeat one record. So the DLQ itself is the ledger's truth:

- the DLQ records of input partition p all go to DLQ partition p % (DLQ partitions), keyed by
  their source position (`topic:partition:offset`);
- the table keeps, per input partition, the newest (input offset, DLQ offset) known to be on the
  broker: where to start looking;
- the first time a partition rejects an input after it was (re)assigned, the ledger reads the DLQ
  partition from that DLQ offset to its end and takes the highest input offset found there.

Inputs are read in offset order, so "offset <= the highest recorded" is exactly "already on the
DLQ". Bound: one table key per input partition; a catch-up reads the DLQ records written since the
last one remembered (all of the DLQ partition only when nothing was ever remembered).
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from typing import Any

import aiokafka
import orjson
from aiokafka.structs import TopicPartition

from stream_app.config.settings import KafkaSecurity
from stream_app.io.security import aiokafka_config

log = logging.getLogger(__name__)

CATCH_UP_TIMEOUT_S = 30.0


class DlqLedger:
    def __init__(
        self,
        table: MutableMapping[str, Any],
        bootstrap: list[str],
        input_topic: str,
        dlq_topic: str,
        dlq_partitions: int,
        security: KafkaSecurity | None = None,
    ):
        self.security = security
        self.table = table
        """input partition -> [highest input offset recorded, its DLQ offset]"""
        self.bootstrap = bootstrap
        self.input_topic = input_topic
        self.dlq_topic = dlq_topic
        self.dlq_partitions = dlq_partitions
        self._caught_up: set[int] = set()

    def dlq_partition(self, input_partition: int) -> int:
        return input_partition % self.dlq_partitions

    def forget_catch_up(self) -> None:
        """After a rebalance: another worker may have written to the DLQ for our partitions."""
        self._caught_up.clear()

    async def recorded(self, partition: int, offset: int) -> bool:
        """Whether the input at (partition, offset) is on the DLQ already."""
        if partition not in self._caught_up:
            await self._catch_up(partition)
            self._caught_up.add(partition)
        highest = self.table.get(str(partition))
        return highest is not None and offset <= highest[0]

    def remember(self, partition: int, offset: int, dlq_offset: int) -> None:
        """The input's DLQ record is on the broker (acknowledged) at `dlq_offset`."""
        self.table[str(partition)] = [offset, dlq_offset]

    async def _catch_up(self, partition: int) -> None:
        known = self.table.get(str(partition))
        start = known[1] + 1 if known else 0
        found = await self._highest_on_dlq(partition, start)
        if found is not None and (known is None or found[0] > known[0]):
            log.info(
                "DLQ ledger: input partition %d was recorded up to offset %d before a restart",
                partition,
                found[0],
            )
            self.remember(partition, *found)

    async def _highest_on_dlq(self, partition: int, start: int) -> tuple[int, int] | None:
        """(input offset, DLQ offset) of the newest record of `partition` on the DLQ from `start`."""
        tp = TopicPartition(self.dlq_topic, self.dlq_partition(partition))
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            **aiokafka_config(self.security),
        )
        await consumer.start()
        found: tuple[int, int] | None = None
        try:
            consumer.assign([tp])
            consumer.seek(tp, start)
            deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
            while True:
                batches = await consumer.getmany(tp, timeout_ms=200, max_records=5000)
                for record in batches.get(tp, []):
                    source = _source(record.value)
                    if source is not None and source[0] == self.input_topic and source[1] == partition:
                        found = (
                            (source[2], record.offset)
                            if found is None
                            else max(found, (source[2], record.offset))
                        )
                # The Fetch high watermark is the true end, also on the embedded broker.
                end = consumer.highwater(tp)
                if end is not None and await consumer.position(tp) >= end:
                    return found
                if time.monotonic() > deadline:
                    log.warning(
                        "DLQ ledger: could not read %s to its end in %.0fs; an input rejected before a "
                        "crash may be recorded twice",
                        tp,
                        CATCH_UP_TIMEOUT_S,
                    )
                    return found
        finally:
            await consumer.stop()


def _source(value: bytes | None) -> tuple[str, int, int] | None:
    try:
        source = orjson.loads(value or b"null")["source"]
        return str(source["topic"]), int(source["partition"]), int(source["offset"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # not a DLQ record of ours
