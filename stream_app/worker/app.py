"""The Faust app: topics, tables and agents of the stream_app topology.

    touchpoints ─ingest─▶ events-by-id ─dedupe─▶ linker (1 partition) ─link─▶ touchpoints-resolved
        │                 (key event_id)   table      tables identity-*         identity-merges
        └─▶ touchpoints-dlq                event-ids                            identity-conflicts
                                                                                person-events (key one_id)

Agents decode, call the pure cores (`stream_app.ingest`, `stream_app.identity`), write state and
send what they decided. Each agent runs one task (Faust's `concurrency > 1` has an offset-commit
bug) and passes on the control records that travel with the events (`stream_app.control`): progress
markers of bounded runs, and watermarks, made by ingest for each input partition and carried along
every path to the person stage, whose event time they are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import faust
import orjson
from faust.transport.drivers.aiokafka import server_list
from faust.types import TP
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_app.config import Settings, Topology
from stream_app.config.topology import TopicSpec, duration_ms
from stream_app.control import (
    Barrier,
    Marker,
    StageDone,
    Watermark,
    WatermarkTracker,
    decode_control,
    is_control,
    source_watermark,
)
from stream_app.identity import IdentityResolver, IdentityRules
from stream_app.identity import records as identity_records
from stream_app.identity.resolver import known_owner
from stream_app.identity.store import BufferedIdentityStore, json_value_store
from stream_app.ingest import Accepted, Ingestor, PiiHasher, Rejected
from stream_app.ingest.dedupe import (
    EventIdExpiry,
    is_first_delivery,
    position,
    recorded_position,
    remembered,
)
from stream_app.io.urls import normalize_broker_url
from stream_app.metrics import Metrics
from stream_app.rules.engine import RuleEngine
from stream_app.tags.engine import TagEngine
from stream_app.worker import faust_recovery_fix
from stream_app.worker.broker_monitor import BrokerMonitor, WorkerTopics
from stream_app.worker.dlq_ledger import DlqLedger
from stream_app.worker.identity_replica import REPLICA_DIR, IdentityMapReplica
from stream_app.worker.identity_web import register_identity_views
from stream_app.worker.person_stage import PersonStage
from stream_app.worker.profile_web import register_profile_views
from stream_app.worker.runtime import (
    BATCH_MAX,
    ENVELOPES_MAX,
    Outbox,
    as_current,
    batches,
    envelope_items,
)
from stream_app.worker.table_scan import scan_partition

log = logging.getLogger(__name__)

_METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST.split("; charset")[0]
WATERMARK_INTERVAL_S = 1.0
"""How often ingest announces its input partitions' event time."""
IDLE_AFTER_MS = 10_000
"""Wall-clock quiet time after which an input partition read to its end follows the wall clock."""
SWEEP_INTERVAL_MS = 1_000
"""How often, at most, each de-duplication partition walks on through its keys to expire them."""
HEARTBEAT_MS = 5_000
"""An unchanged watermark is repeated this often, for stages that restarted and forgot it."""


def broker_url(settings: Settings) -> str:
    return normalize_broker_url(settings.broker or "kafka://localhost:9092")


def faust_settings(settings: Settings, topology: Topology) -> dict[str, Any]:
    """Every Faust setting stream_app decides, passed explicitly (so STREAM_APP_* wins)."""
    conf: dict[str, Any] = {
        "broker": broker_url(settings),
        "store": "rocksdb://",
        "datadir": str(settings.data_dir / "state"),
        # Bind where told (loopback by default), advertise where peers can reach this worker.
        "web_bind": settings.web_host,
        "web_port": settings.web_port,
        "canonical_url": settings.advertised_web_url(),
        # Faust's built-in views answer table look-ups (identifiers -> one_id) to anyone who asks.
        "web_tables_enabled": False,
        "web_router_enabled": False,
        "web_graph_enabled": False,
        "web_stats_enabled": False,
        "topic_replication_factor": topology.replication_factor,
        "topic_partitions": topology.topics.touchpoints.partitions,
        "consumer_auto_offset_reset": "earliest",
        "processing_guarantee": "at_least_once",
        "table_standby_replicas": 0,
        "producer_linger": settings.producer_linger,
    }
    if settings.fast_rebalance:
        # A restarted worker otherwise waits ~30 s for the dead member's session to expire.
        conf.update(
            broker_session_timeout=6.0,
            broker_heartbeat_interval=1.0,
            broker_rebalance_timeout=10.0,
        )
    return conf


@dataclass(frozen=True)
class _TopicNames:
    """The names of the topics stages write through their outboxes."""

    events_by_id: str
    linker: str
    person_events: str
    identity_map: str
    resolved: str
    merges: str
    conflicts: str
    dlq: str

    def __init__(self, topology: Topology) -> None:
        t, i = topology.topics, topology.internal_topics
        for name, spec in [
            ("events_by_id", i.events_by_id),
            ("linker", i.linker),
            ("person_events", i.person_events),
            ("identity_map", i.identity_map),
            ("resolved", t.resolved),
            ("merges", t.identity_merges),
            ("conflicts", t.identity_conflicts),
            ("dlq", t.dlq),
        ]:
            object.__setattr__(self, name, spec.name)


class Pipeline:
    """Builds the Faust app for one topology; `app` is what a Faust worker runs."""

    def __init__(
        self,
        settings: Settings,
        topology: Topology,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.topology = topology
        self.metrics = metrics or Metrics()
        self.clock = clock
        key, is_default = settings.pii_key_bytes()
        if is_default:
            log.warning(
                "STREAM_APP_PII_KEY is not set: hashing phones and emails with the PUBLIC "
                "development key. Anyone can reverse-look-up these hashes. Set a secret key."
            )
        hasher = PiiHasher(key, topology.identifiers.default_phone_region)
        self.ingestor = Ingestor.from_topology(topology, hasher)
        faust_recovery_fix.install()
        self.app = faust.App(settings.app_id, **faust_settings(settings, topology))

        self._topics: dict[str, faust.TopicT] = {}
        t, internal = topology.topics, topology.internal_topics
        self.touchpoints = self._topic(t.touchpoints)
        self.control = self._topic(internal.control)

        self.seen_event_ids = self.app.Table(
            "event-ids",
            partitions=internal.events_by_id.partitions,
            key_type=str,
            help="event_id -> [position of the record that first carried it, event time]; "
            "bounded by dedupe.retention of event time",
        )
        self._swept_at: dict[int, int] = {}
        self.dedupe_expiry = EventIdExpiry(
            # Its values are plain JSON lists ([position, event time]).
            partial(scan_partition, self.seen_event_ids, decode_value=orjson.loads),
            self._forget_event_id,
            duration_ms(topology.dedupe.retention),
        )
        bootstrap = server_list(self.app.conf.broker, 9092)  # for the worker's own plain consumers
        self.dlq_ledger = DlqLedger(
            self.app.Table(
                "dlq-ledger",
                partitions=t.touchpoints.partitions,
                key_type=str,
                help="input partition -> [highest input offset on the DLQ, its DLQ offset]",
            ),
            bootstrap,
            t.touchpoints.name,
            t.dlq.name,
            t.dlq.partitions,
        )
        self.app.on_partitions_assigned.connect(self._on_assigned)
        identity_tables = [
            self.app.Table(
                f"identity-{name}",
                partitions=internal.linker.partitions,
                key_type=str,
                help=text,
            )
            for name, text in [
                ("owners", "identifier key -> one_id"),
                ("profiles", "one_id -> profile (identifiers, evidence)"),
                ("aliases", "merged one_id -> survivor"),
                ("refusals", "identifier key -> refused links"),
            ]
        ]
        self.identity_store = json_value_store(*identity_tables)
        self._pending_identity = BufferedIdentityStore(self.identity_store)
        rules = IdentityRules(
            limits=dict(topology.identity.limits),
            shareable_types=frozenset(topology.identity.shareable_types),
        )
        self.resolver = IdentityResolver(self._pending_identity, rules)
        self.replica = IdentityMapReplica(
            bootstrap,
            internal.identity_map.name,
            internal.identity_map.partitions,
            settings.data_dir / "state" / REPLICA_DIR,
            settings.identity_replica_memory_bytes,
            settings.identity_replica_hot_keys,
            self.metrics.registry,
        )
        self.app.task(self.replica.run)

        self._names = _TopicNames(topology)
        n = self._names
        partitions = {spec.name: spec.partitions for spec in topology.all_topics()}
        enveloped = frozenset({n.events_by_id, n.linker, n.person_events})
        self._outboxes = {
            stage: Outbox(self._produce, partitions, enveloped)
            for stage in ("ingest", "dedupe", "link", "people")
        }
        self.people = PersonStage(
            self.app,
            TagEngine.from_specs(topology.tags),
            RuleEngine(topology.rules, topology.contact_policy, topology.stores),
            self._outboxes["people"],
            {
                "person_events": n.person_events,
                "profile_updates": t.profile_updates.name,
                "coupons": t.coupons.name,
                "guide_alerts": t.guide_alerts.name,
                "actions_suppressed": t.actions_suppressed.name,
            },
            internal.person_events.partitions,
            self.metrics,
            clock,
        )
        self.lateness_ms = duration_ms(topology.allowed_lateness)
        self._newest: dict[int, tuple[int, int]] = {}
        """Input partition -> (newest event time ingested, wall clock then)."""
        self._known_since: dict[int, int] = {}
        """Input partition -> wall clock when this worker first announced it."""
        self._read_to: dict[int, int] = {}
        """Input partition -> offset of the last record ingest took up."""
        self._unacked_dlq: dict[int, tuple[Any, int, Any]] = {}
        """Input partition -> (event, offset, delivery) of its newest DLQ record not yet acknowledged."""
        self._ingested: dict[int, int] = {}
        """Input partition -> newest event time in what ingest has added but not yet sent."""
        writers = {
            "ingest": [f"ingest:{p}" for p in range(t.touchpoints.partitions)],
            "dedupe": [f"dedupe:{q}" for q in range(internal.events_by_id.partitions)],
            "link": [f"link:{n}" for n in range(internal.linker.partitions)],
        }
        self._trackers = {
            "dedupe": [WatermarkTracker(writers["ingest"]) for _ in range(internal.events_by_id.partitions)],
            "link": [WatermarkTracker(writers["dedupe"]) for _ in range(internal.linker.partitions)],
            "people": [
                WatermarkTracker(writers["dedupe"] + writers["link"])
                for _ in range(internal.person_events.partitions)
            ],
        }
        self._downstream = {
            "ingest": [n.events_by_id],
            "dedupe": [n.linker, n.person_events],
            "link": [n.person_events],
        }
        self._announced: dict[str, tuple[int, bool, int]] = {}
        self.app.timer(interval=WATERMARK_INTERVAL_S)(self._announce_input_watermarks)

        self._stage_inputs = {name: spec for name, spec in topology.stage_inputs()}
        stage_names = list(self._stage_inputs)
        self._next_stage = dict(zip(stage_names, [*stage_names[1:], None], strict=True))
        self._barriers = {name: Barrier() for name in stage_names}
        handlers = {
            "ingest": self._ingest,
            "dedupe": self._dedupe,
            "link": self._link,
            "people": self._people,
        }
        for stage, handle in handlers.items():
            agent = partial(self._run_stage, stage, handle=handle)
            self.app.agent(self._topic(self._stage_inputs[stage]), name=stage)(agent)
        self.broker = BrokerMonitor(
            broker_url(settings), settings.data_dir, WorkerTopics.of(topology, self.app), self.metrics
        )
        self.app.task(self.broker.run)
        self.app.page("/metrics")(self._metrics_view())
        self.app.page("/ready")(self._ready_view())
        register_identity_views(self.app, identity_tables[0], self.identity_store)
        register_profile_views(self.app, self.people, self.replica)

    async def _on_assigned(self, *args: Any, **kwargs: Any) -> None:
        self.dlq_ledger.forget_catch_up()
        self.dedupe_expiry.forget_cursors()

    def _topic(self, spec: TopicSpec) -> faust.TopicT:
        if spec.name not in self._topics:
            self._topics[spec.name] = self.app.topic(
                spec.name, key_serializer="raw", value_serializer="raw", partitions=spec.partitions
            )
        return self._topics[spec.name]

    async def _produce(self, *args: Any) -> Any:
        return await self.app.producer.send(*args)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- the stage loop ----------------------------------------------------------------------

    async def _run_stage(
        self, stage: str, stream: faust.StreamT, handle: Callable[[Any], Awaitable[None]]
    ) -> None:
        """Every stage's agent: batches in; control records handled here, once, behind what the
        batch sent before them; records to `handle`, which adds what it decides to the outbox."""
        async for events in batches(stream, BATCH_MAX if stage == "ingest" else ENVELOPES_MAX):
            for event in events:
                with as_current(event):
                    if is_control(event.headers):
                        await self._send(stage)
                        await self._on_control(stage, event.message.partition, event.value)
                    else:
                        await handle(event)
            await self._send(stage)

    async def _send(self, stage: str) -> list[Any]:
        futures = await self._outboxes[stage].send()
        if stage == "ingest":
            await self._remember_dlq()
            # After the send: a watermark announced from here on comes behind these events.
            for partition, newest in self._ingested.items():
                before = self._newest.get(partition, (newest, 0))[0]
                self._newest[partition] = (max(before, newest), self._now_ms())
            self._ingested.clear()
        return futures

    # -- ingest ------------------------------------------------------------------------------

    async def _ingest(self, event: Any) -> None:
        message = event.message
        self._read_to[message.partition] = message.offset  # (the record is done below)
        self.metrics.messages_in.inc()
        with self.metrics.ingest_seconds.time():
            outcome = self.ingestor.process(event.value, self._now_ms())
        if isinstance(outcome, Accepted):
            self._accept(outcome)
            t = outcome.event["event_time_ms"]
            self._ingested[message.partition] = max(t, self._ingested.get(message.partition, t))
        else:
            await self._reject(event, outcome)

    async def _reject(self, event: Any, rejected: Rejected) -> None:
        """To the DLQ once per input position, also when the input is read again after a crash."""
        message = event.message
        topic, partition, offset = message.topic, message.partition, message.offset
        if await self.dlq_ledger.recorded(partition, offset):
            self.metrics.dlq_repeats_skipped.inc()
            return
        self.metrics.events_dlq.labels(rejected.reason).inc()
        source = {"topic": topic, "partition": partition, "offset": offset}
        record = self.ingestor.dlq_record(event.value, rejected, source, self._now_ms())
        key = f"{topic}:{partition}:{offset}".encode()
        dlq_partition = self.dlq_ledger.dlq_partition(partition)
        sent = await self._produce(self._names.dlq, key, orjson.dumps(record), dlq_partition, None, None)
        self._unacked_dlq[partition] = (event, offset, sent)

    async def _remember_dlq(self) -> None:
        """Once a batch's DLQ records are acknowledged: the newest per input partition, in the
        ledger (a crash before this is caught up from the DLQ itself)."""
        unacked, self._unacked_dlq = self._unacked_dlq, {}
        for partition, (event, offset, sent) in unacked.items():
            dlq_offset = (await sent).offset
            with as_current(event):
                self.dlq_ledger.remember(partition, offset, dlq_offset)

    def _accept(self, accepted: Accepted) -> None:
        event = accepted.event
        self.metrics.valid(event["event_type"], event["channel"])
        for id_type in accepted.dropped_identifiers:
            self.metrics.identifiers_dropped.labels(id_type).inc()
        self._outboxes["ingest"].add(
            self._names.events_by_id, accepted.event_id.encode(), orjson.dumps(event)
        )

    # -- dedupe ------------------------------------------------------------------------------

    async def _dedupe(self, record: Any) -> None:
        message = record.message
        for index, value in enumerate(envelope_items(record.value)):
            normalized = orjson.loads(value)
            event_id = normalized["event_id"]
            here = position(message.partition, message.offset, index)
            if not is_first_delivery(recorded_position(self.seen_event_ids.get(event_id)), here):
                self.metrics.events_duplicate.inc()
                continue
            # Decided before remembering; the outbox is flushed before the input offset is
            # committed, and a redelivery of this same record passes again (at-least-once).
            self._to_identity(value, normalized)
            self.seen_event_ids[event_id] = remembered(here, int(normalized["event_time_ms"]))
            self.dedupe_expiry.added(message.partition)
            self.metrics.events_out.inc()

    def _forget_event_id(self, event_id: Any) -> None:
        del self.seen_event_ids[event_id]
        self.metrics.dedupe_event_ids_expired.inc()

    def _sweep_event_ids(self, partition: int, watermark_ms: int) -> None:
        """Within a record of `partition` (Faust writes the deletions to that changelog partition);
        at most once a second per partition, however many writers send it watermarks."""
        wall = self._now_ms()
        if wall - self._swept_at.get(partition, 0) < SWEEP_INTERVAL_MS:
            return
        self._swept_at[partition] = wall
        self.dedupe_expiry.sweep(partition, watermark_ms)
        self.metrics.dedupe_event_ids.set(sum(self.dedupe_expiry.sizes.values()))

    def _to_identity(self, value: bytes, event: dict[str, Any]) -> None:
        """Resolve here when the replica already knows the answer; otherwise ask the linker."""
        one_id = known_owner(self.replica.get, identity_records.event_keys(event))
        if one_id is None:
            self._outboxes["dedupe"].add(self._names.linker, None, value, partition=0)
            return
        self.metrics.identity_fast_path.inc()
        self._publish_resolved("dedupe", event, one_id)

    # -- identity ----------------------------------------------------------------------------

    async def _link(self, record: Any) -> None:
        """One envelope: resolve its events in order, then send merges, await their acks, commit
        the identity state, publish the owners (a replay after the commit would not merge again,
        so the merge records must be on the broker first)."""
        outbox = self._outboxes["link"]
        merged = created = 0
        for value in envelope_items(record.value):
            event = orjson.loads(value)
            with self.metrics.identity_seconds.time():
                resolution = self.resolver.resolve(
                    identity_records.event_keys(event), event["event_id"], event["event_time_ms"]
                )
            one_id = resolution.one_id.encode()
            self._publish_resolved("link", event, resolution.one_id)
            for merge in resolution.merges:
                merge_record = identity_records.merge_record(merge, event)
                outbox.add(self._names.merges, one_id, orjson.dumps(merge_record))
                notice = orjson.dumps({"kind": "merge", **merge_record})
                # To the merged person's partition: the per-person stages move its state from there.
                outbox.add(self._names.person_events, merge.merged_one_id.encode(), notice)
                self.metrics.identity_merges.inc()
            for conflict in resolution.conflicts:
                conflict_record = identity_records.conflict_record(conflict, event)
                outbox.add(self._names.conflicts, one_id, orjson.dumps(conflict_record))
                self.metrics.identity_conflicts.labels(conflict.reason.split(":")[0]).inc()
            merged += len(resolution.merges)
            created += resolution.created
        futures = await self._send("link")
        if merged:
            for future in futures:
                await future
        for key, owner in self._pending_identity.commit().items():
            outbox.add(self._names.identity_map, key.encode(), owner.encode())
        self.metrics.identity_profiles_created.inc(created)

    def _publish_resolved(self, stage: str, event: dict[str, Any], one_id: str) -> None:
        resolved = orjson.dumps(identity_records.resolved(event, one_id))
        key = one_id.encode()
        outbox = self._outboxes[stage]
        outbox.add(self._names.resolved, key, resolved)
        outbox.add(self._names.person_events, key, b'{"kind":"event","event":' + resolved + b"}")

    # -- people: tags and trigger rules ----------------------------------------------------

    async def _people(self, record: Any) -> None:
        partition = record.message.partition
        for value in envelope_items(record.value):
            with self.metrics.tags_seconds.time():
                self.people.handle(orjson.loads(value), partition)

    # -- watermarks ---------------------------------------------------------------------------

    async def _announce_input_watermarks(self) -> None:
        """Each input partition this worker reads: nothing older than its watermark will come."""
        name = self.topology.topics.touchpoints.name
        mine = sorted(tp.partition for tp in self.app.consumer.assignment() if tp.topic == name)
        for partition in mine:
            # Never read here: quiet since this worker first announced it.
            never_read = (None, self._known_since.setdefault(partition, self._now_ms()))
            newest, seen_at = self._newest.get(partition, never_read)
            caught_up = self._read_to_end(TP(name, partition))
            mark = source_watermark(
                newest, seen_at, self._now_ms(), self.lateness_ms, IDLE_AFTER_MS, caught_up
            )
            await self._pass_on("ingest", replace(mark, writer=f"ingest:{partition}"))

    def _read_to_end(self, tp: TP) -> bool:
        """Whether ingest has processed everything the partition holds (as of the last fetch)."""
        end = self.app.consumer.highwater(tp)
        if end is None:
            return False
        done = self._read_to.get(tp.partition)
        # Not read since start: where the group's committed offset left it (Faust's own record).
        next_offset = done + 1 if done is not None else (self.app.consumer._committed_offset.get(tp) or 0)
        return next_offset >= end

    async def _on_watermark(self, stage: str, partition: int, mark: Watermark) -> None:
        tracker = self._trackers[stage][partition]
        now = tracker.observe(mark)
        if now is None:
            return
        if stage == "people":
            self.people.advance(partition, now)
            await self._send(stage)
        else:
            if stage == "dedupe":
                self._sweep_event_ids(partition, now)
            # Never passed on as idle: a stage whose inputs were idle may be busy with records
            # behind them by the time others hear of it. Only an input partition can be idle.
            await self._pass_on(stage, Watermark(f"{stage}:{partition}", now))

    async def _pass_on(self, stage: str, mark: Watermark) -> None:
        """To every partition this stage writes to, when it moved (or as a heartbeat)."""
        wall = self._now_ms()
        t, idle, at = self._announced.get(mark.writer, (None, None, 0))
        if (t, idle) == (mark.t, mark.idle) and wall - at < HEARTBEAT_MS:
            return
        self._announced[mark.writer] = (mark.t, mark.idle, wall)
        for topic in self._downstream[stage]:
            await self._outboxes[stage].send_control(topic, mark.encode())

    # -- progress markers --------------------------------------------------------------------

    async def _on_control(self, stage: str, partition: int, value: bytes) -> None:
        control = decode_control(value)
        if isinstance(control, Watermark):
            if stage != "ingest":  # nobody sends watermarks into the input; ignore strays
                await self._on_watermark(stage, partition, control)
            return
        await self._on_marker(stage, partition, control)

    async def _on_marker(self, stage: str, partition: int, marker: Marker) -> None:
        stage = marker.stage or stage
        if not self._barriers[stage].observe(partition, marker):
            return
        handed_on = 0
        reader = "people" if stage == "people-settle" else stage
        if reader == "people":
            if marker.close_event_time:
                self.people.close_event_time(partition)
            await self._send(reader)
            # What was handed on before the first round's markers is ahead of them; what came
            # after may not be, and the run needs another round behind it.
            handed_on = self.people.take_handed_on(partition)
        await self.app.producer.flush()  # everything sent before the marker is on the broker
        next_stage = self._next_stage[stage]
        sources = self._stage_inputs[stage].partitions
        if next_stage is not None:
            downstream = self._stage_inputs[next_stage].name
            forwarded = Marker(marker.run, marker.close_event_time, partition, sources, next_stage).encode()
            await self._outboxes[reader].send_control(downstream, forwarded)
        else:
            done = StageDone(marker.run, stage, partition, sources, forwarded=handed_on)
            await self.control.send(value=done.encode(), partition=0)
        await self.app.producer.flush()

    # -- web ---------------------------------------------------------------------------------

    def _metrics_view(self) -> type[View]:
        registry = self.metrics.registry

        class MetricsView(View):
            async def get(self, request: Request) -> Response:
                # aiohttp sets the charset itself and refuses one inside content_type.
                return self.bytes(generate_latest(registry), content_type=_METRICS_CONTENT_TYPE)

        return MetricsView

    def _ready_view(self) -> type[View]:
        app, broker = self.app, self.broker

        class ReadyView(View):
            """200 once the worker has partitions and has restored their tables; 503 before that,
            while a rebalance is going on and while the broker is unreachable (a readiness probe)."""

            async def get(self, request: Request) -> Response:
                assigned = len(app.consumer.assignment())
                recovered = app.tables.recovery.completed.is_set()
                broker_up = broker.up
                ready = bool(assigned) and recovered and not app.rebalancing and broker_up
                state = {
                    "ready": ready,
                    "assigned_partitions": assigned,
                    "tables_recovered": recovered,
                    "broker_up": broker_up,
                }
                return self.json(state, status=200 if ready else 503)

        return ReadyView
