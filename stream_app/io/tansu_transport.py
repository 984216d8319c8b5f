"""WORKAROUND for a Tansu defect: ListOffsets(latest) under-reports a partition's end offset.

Tansu 0.6 (memory engine) answers ListOffsets(latest) with the *base offset of the newest record
batch + 1* instead of the last offset + 1: ten records produced in one batch read as an end offset
of 1. Faust's table recovery asks for end offsets that way (`Recovery._build_highwaters` ->
`end_offsets()`), so a worker restarted with its RocksDB state crashes with `ConsistencyError`, and a
worker restoring from the changelog would stop early and lose records.

The Fetch response's `high_watermark` is correct. So for every partition with a non-zero answer
we fetch from (answer - 1), the base offset of the newest batch, and take the high watermark that
fetch reports. This transport is loaded only for `tansu://` URLs (the embedded broker); a real
Kafka (`kafka://`) gets Faust's plain aiokafka transport.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import aiokafka
from aiokafka.structs import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 10.0
"""After this long without a fetch answer for every partition, say so (once) and keep asking."""
GIVE_UP_S = 300.0
"""After this long, raise: the worker stops (and is restarted) rather than recover short."""


class EndOffsetsUnknown(RuntimeError):
    """No fetch answered for a partition: its true end offset, and so its recovery, is unknown."""


async def true_end_offsets(
    bootstrap: Iterable[str] | str,
    listed: Mapping[Any, int],
    timeout: float = PROBE_TIMEOUT_S,
    give_up_s: float = GIVE_UP_S,
    consumer: Any = None,
) -> dict[Any, int]:
    """End offsets corrected from the Fetch high watermark; keys are returned as given.

    `listed` are the (possibly low) end offsets from ListOffsets. Partitions answered with 0 are
    empty and need no probe. A partition whose fetch is not answered is never given its listed
    end: a table recovered up to it stops short and loses what comes after (before, a slow answer
    under load fell back to it after `timeout`). `consumer`: an unstarted aiokafka consumer (tests).
    """
    result = dict(listed)
    probe = {TopicPartition(tp.topic, tp.partition): tp for tp, end in listed.items() if end > 0}
    if not probe:
        return result
    if consumer is None:
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
        )
    await consumer.start()
    try:
        consumer.assign(list(probe))
        for tp, original in probe.items():
            consumer.seek(tp, listed[original] - 1)
        pending = set(probe)
        started = time.monotonic()
        warned = False
        while pending:
            waited = time.monotonic() - started
            if waited > give_up_s:
                raise EndOffsetsUnknown(f"tansu workaround: no fetch answer for {pending} in {waited:.0f} s")
            if waited > timeout and not warned:
                log.warning(
                    "tansu workaround: no fetch answer yet for %s after %.0f s; asking on", pending, waited
                )
                warned = True
            await consumer.getmany(*pending, timeout_ms=200)
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    result[probe[tp]] = max(highwater, listed[probe[tp]])
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return result


class TansuConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        listed = await super()._highwaters(partitions)
        if self.consumer.in_transaction:
            return listed
        transport = self.transport
        servers = faust_aiokafka.server_list(transport.url, transport.default_port)
        corrected = await true_end_offsets(servers, listed)
        changed = {tp: (listed[tp], end) for tp, end in corrected.items() if end != listed[tp]}
        if changed:
            log.info("tansu workaround: corrected end offsets %s", changed)
        return corrected


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> TansuConsumerThread:
        return TansuConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with the end-offset workaround; URL scheme `tansu://`."""

    Consumer = Consumer


__all__ = ["Transport", "true_end_offsets"]
