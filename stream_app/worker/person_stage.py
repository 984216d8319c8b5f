"""The person stage's Faust adapter: changelogged tables under `PersonProcessor`, and its sends.

What the stage does (event-time order, merges, timers) is in `stream_app.people.processor`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import faust
import orjson

from stream_app.metrics import Metrics
from stream_app.people.processor import Emit, PersonProcessor
from stream_app.rules.engine import RuleEngine
from stream_app.tags.engine import TagEngine


class PersonStage:
    def __init__(
        self,
        app: faust.App,
        tag_engine: TagEngine,
        rule_engine: RuleEngine,
        topics: dict[str, faust.TopicT],
        partitions: int,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ):
        self.topics = topics
        self.states = app.Table("person-state", partitions=partitions, key_type=str, help="one_id -> state")
        self.aliases = app.Table(
            "person-aliases",
            partitions=partitions,
            key_type=str,
            value_type=str,
            help="merged one_id -> survivor",
        )
        timers = app.Table(
            "person-timers", partitions=partitions, key_type=str, help="one_id -> [partition, next due]"
        )
        self.processor = PersonProcessor(
            tag_engine, rule_engine, self.states, self.aliases, timers, metrics, clock
        )
        app.on_partitions_assigned.connect(self._on_assigned)

    async def _on_assigned(self, *args: Any, **kwargs: Any) -> None:
        self.processor.forget_timer_index()

    async def handle(self, record: dict[str, Any], partition: int) -> None:
        await self._send(self.processor.handle(record, partition))

    async def advance(self, partition: int, watermark_ms: int) -> None:
        await self._send(self.processor.advance(partition, watermark_ms))

    async def close_event_time(self, partition: int) -> None:
        await self._send(self.processor.close_event_time(partition))

    def take_handed_on(self, partition: int) -> int:
        return self.processor.take_handed_on(partition)

    def profile(self, one_id: str) -> dict[str, Any] | None:
        return self.processor.profile(one_id)

    async def _send(self, emits: list[Emit]) -> None:
        for output, key, value in emits:
            await self.topics[output].send(key=key.encode(), value=orjson.dumps(value))
