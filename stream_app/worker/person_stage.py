"""The person stage's Faust adapter: changelogged tables under `PersonProcessor`, and its sends.

What the stage does (event-time order, merges, timers) is in `stream_app.people.processor`; what
it decides goes to the stage's outbox (`stream_app.worker.runtime`), sent when the batch ends. The
processor sees its tables through `BatchState` (`stream_app.worker.state`): each person's state,
alias and timer is read at most once and written at most once per batch, in `end_batch`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import faust
import orjson
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stream_app.audiences import AudienceEngine
from stream_app.metrics import Metrics
from stream_app.people.processor import Emit, PersonProcessor
from stream_app.rules.engine import RuleEngine
from stream_app.tags.engine import TagEngine
from stream_app.worker.runtime import Outbox, envelope_items
from stream_app.worker.state import BatchState, FaustTableStore
from stream_app.worker.tables import Tables


class PersonStage:
    state_after_outputs = True
    """A person's state says what was decided (an event applied, a fragment handed over): it is
    written only once the batch's outputs are acknowledged (`stage_runner.send_batch`)."""

    def __init__(
        self,
        app: faust.App,
        tables: Tables,
        tag_engine: TagEngine,
        rule_engine: RuleEngine,
        outbox: Outbox,
        topics: dict[str, str],
        partitions: int,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        audiences: AudienceEngine | None = None,
    ):
        self.outbox = outbox
        self.metrics = metrics
        self.topics = topics
        """The processor's outputs -> topic names."""
        self.states = tables("person-state", partitions=partitions, key_type=str, help="one_id -> state")
        self.aliases = tables(
            "person-aliases",
            partitions=partitions,
            key_type=str,
            value_type=str,
            help="merged one_id -> survivor",
        )
        timers = tables(
            "person-timers", partitions=partitions, key_type=str, help="one_id -> [partition, next due]"
        )
        # The processor's view of the tables: each key read and written once a batch (`end_batch`),
        # their changelogs sent with the stage's outbox.
        self.stores = [FaustTableStore(t, outbox=outbox) for t in (self.states, self.aliases, timers)]
        states, aliases, person_timers = (BatchState(store) for store in self.stores)
        self.batch_states = (states, aliases, person_timers)
        self.processor = PersonProcessor(
            tag_engine, rule_engine, states, aliases, person_timers, metrics, clock, audiences=audiences
        )
        self.app = app
        if audiences is not None and audiences.audiences:
            metrics.registry.register(_AudienceSizes(self))
        app.on_partitions_assigned.connect(self._on_assigned)

    async def _on_assigned(self, *args: Any, **kwargs: Any) -> None:
        self.processor.forget_timer_index()

    async def handle(self, record: Any) -> None:
        """One envelope of person-events: events, merge notices, people handed on."""
        partition = record.message.partition
        for value in envelope_items(record.value):
            with self.metrics.person_item_seconds.time():
                self._add(self.processor.handle(orjson.loads(value), partition))

    def end_batch(self) -> None:
        """Write what the batch changed, each key once (before the outbox is sent)."""
        for state in self.batch_states:
            state.flush()

    def persist_landed(self) -> None:
        """Where each changelog is acknowledged up to so far: the offsets recovery starts from."""
        landed = self.outbox.deliveries.take_landed()
        for store in self.stores:
            store.persist(landed)

    def advance(self, partition: int, watermark_ms: int) -> None:
        self._add(self.processor.advance(partition, watermark_ms))

    def close_event_time(self, partition: int) -> None:
        self._add(self.processor.close_event_time(partition))

    def take_handed_on(self, partition: int) -> int:
        return self.processor.take_handed_on(partition)

    def profile(self, one_id: str) -> dict[str, Any] | None:
        return self.processor.profile(one_id)

    def _add(self, emits: list[Emit]) -> None:
        for output, key, value in emits:
            # None: a tombstone (an exit on the compacted audience-members topic).
            payload = None if value is None else orjson.dumps(value)
            self.outbox.add(self.topics[output], key.encode(), payload)

    def audience_sizes(self) -> dict[str, int]:
        """Memberships per audience among the people of this worker's active partitions (read when
        `/metrics` is scraped: `stream_app_audience_members`)."""
        topic = self.topics["person_events"]
        mine = sorted(tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic)
        return self.processor.audience_sizes(mine)


class _AudienceSizes(Collector):
    """`stream_app_audience_members`, from the sizes the partitions keep with their people."""

    def __init__(self, stage: PersonStage):
        self.stage = stage

    def collect(self) -> Any:
        family = GaugeMetricFamily(
            "stream_app_audience_members",
            "Memberships of each audience among the people of this worker's partitions (an audience "
            "with `by` counts one per person and sub-key); sum over workers for the whole",
            labels=["audience"],
        )
        for audience, size in sorted(self.stage.audience_sizes().items()):
            family.add_metric([audience], size)
        yield family
