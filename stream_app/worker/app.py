"""The Faust app for one topology: a factory that wires the stages, their state and the web views.

    touchpoints ─ingest─▶ events-by-id ─dedupe─▶ linker (1 partition) ─link─▶ touchpoints-resolved
        │                 (key event_id)   table      tables identity-*         identity-merges
        └─▶ touchpoints-dlq                event-ids                            identity-conflicts
                                                                                person-events (key one_id)

Each stage is a pure core (`stream_app.ingest`, `.identity`, `.people`) under a thin adapter
(`worker/ingest_stage.py`, `dedupe_stage.py`, `link_stage.py`, `person_stage.py`);
`worker/stage_runner.py` runs them as Faust agents, one task each (Faust's `concurrency > 1` has an
offset-commit bug), in batches, and passes on the control records that travel with the events
(`stream_app.control`): progress markers of bounded runs, and watermarks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import faust
import mode
from faust.exceptions import ConsumerNotStarted
from faust.transport.drivers.aiokafka import server_list
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_app.audiences import AudienceEngine
from stream_app.config import Settings, Topology
from stream_app.config.topology import TopicSpec, duration_ms
from stream_app.identity import IdentityResolver, IdentityRules
from stream_app.identity.store import BufferedIdentityStore, json_value_store
from stream_app.ingest import Ingestor, PiiHasher
from stream_app.io.security import confluent_config, faust_config
from stream_app.io.urls import normalize_broker_url
from stream_app.metrics import Metrics
from stream_app.rules.engine import RuleEngine
from stream_app.tags.engine import TagEngine
from stream_app.worker import faust_recovery_fix, fetch_wait
from stream_app.worker.broker_monitor import BrokerMonitor, WorkerTopics
from stream_app.worker.dedupe_stage import DedupeStage
from stream_app.worker.dlq_ledger import DlqLedger
from stream_app.worker.identity_replica import REPLICA_DIR, IdentityMapReplica
from stream_app.worker.identity_web import register_identity_views
from stream_app.worker.ingest_stage import IngestStage
from stream_app.worker.link_stage import LinkStage
from stream_app.worker.person_stage import PersonStage
from stream_app.worker.producer import StageProducer
from stream_app.worker.profile_web import register_profile_views
from stream_app.worker.runtime import Outbox, TopicNames
from stream_app.worker.stage_runner import StageRunner
from stream_app.worker.summary_log import INTERVAL_S as SUMMARY_INTERVAL_S
from stream_app.worker.summary_log import SummaryLog
from stream_app.worker.tables import TableMemory, Tables
from stream_app.worker.worker_metrics import WorkerCollector

log = logging.getLogger(__name__)

_METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST.split("; charset")[0]
WATERMARK_INTERVAL_S = 0.1
"""How often ingest announces its input partitions' event time: what an action may wait beyond
the allowed lateness (each announcement is one record per partition downstream, for all writers)."""


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
        # An agent that raises stops the worker (exit, log, restart by whoever runs it) instead of
        # leaving a live process whose stage no longer reads: Faust's default supervisor left one
        # stalled after a crash. At-least-once makes the restart safe.
        "agent_supervisor": mode.CrashingSupervisor,
        "table_standby_replicas": 0,
        "producer_linger": settings.producer_linger,
        **faust_config(settings.kafka),
    }
    if settings.fast_rebalance:
        # A restarted worker otherwise waits ~30 s for the dead member's session to expire.
        conf.update(
            broker_session_timeout=6.0,
            broker_heartbeat_interval=1.0,
            broker_rebalance_timeout=10.0,
        )
    return conf


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
        self.metrics = metrics = metrics or Metrics()
        self.clock = clock
        key, is_default = settings.pii_key_bytes()
        if is_default:
            log.warning(
                "STREAM_APP_PII_KEY is not set: hashing phones and emails with the PUBLIC "
                "development key. Anyone can reverse-look-up these hashes. Set a secret key."
            )
        faust_recovery_fix.install()
        fetch_wait.install()
        self.app = app = faust.App(settings.app_id, **faust_settings(settings, topology))
        self._topics: dict[str, faust.TopicT] = {}
        t, internal = topology.topics, topology.internal_topics
        names = TopicNames.of(topology)
        partitions = {spec.name: spec.partitions for spec in topology.all_topics()}
        enveloped = frozenset({names.events_by_id, names.linker, names.person_events})

        bootstrap = server_list(app.conf.broker, 9092)  # for the worker's own plain clients
        self.producer = StageProducer(
            ",".join(bootstrap),
            settings.producer_linger,
            # librdkafka's own log lines through Python's logging (JSON logs stay JSON).
            {**confluent_config(settings.kafka), "logger": logging.getLogger("stream_app.librdkafka")},
        )
        self.producer.flush_before_commit(app.producer)
        app.on_before_shutdown.connect(self._close_producer)

        def outbox() -> Outbox:
            return Outbox(self.producer, partitions, enveloped)

        # Every partition of every table below: dlq-ledger, event-ids, person x3, identity x4.
        databases = (
            t.touchpoints.partitions
            + internal.events_by_id.partitions
            + 3 * internal.person_events.partitions
            + 4 * internal.linker.partitions
        )
        tables = Tables(app, TableMemory(settings.table_memory_bytes, databases))
        dlq_ledger = DlqLedger(
            tables(
                "dlq-ledger",
                partitions=t.touchpoints.partitions,
                key_type=str,
                help="input partition -> [highest input offset on the DLQ, its DLQ offset]",
            ),
            bootstrap,
            t.touchpoints.name,
            t.dlq.name,
            t.dlq.partitions,
            settings.kafka,
        )
        ingest = IngestStage(
            app,
            Ingestor.from_topology(topology, PiiHasher(key, topology.identifiers.default_phone_region)),
            dlq_ledger,
            outbox(),
            names,
            t.touchpoints.name,
            duration_ms(topology.allowed_lateness),
            metrics,
            self._now_ms,
        )
        replica = IdentityMapReplica(
            bootstrap,
            internal.identity_map.name,
            internal.identity_map.partitions,
            settings.data_dir / "state" / REPLICA_DIR,
            settings.identity_replica_memory_bytes,
            settings.identity_replica_hot_keys,
            metrics.registry,
            settings.kafka,
        )
        app.task(replica.run)
        dedupe = DedupeStage(
            tables,
            internal.events_by_id.partitions,
            duration_ms(topology.dedupe.retention),
            replica,
            outbox(),
            names,
            metrics,
            self._now_ms,
        )

        async def on_assigned(*args: Any, **kwargs: Any) -> None:
            dlq_ledger.forget_catch_up()
            dedupe.forget_cursors()

        app.on_partitions_assigned.connect(on_assigned)
        identity_tables = [
            tables(f"identity-{name}", partitions=internal.linker.partitions, key_type=str, help=text)
            for name, text in [
                ("owners", "identifier key -> one_id"),
                ("profiles", "one_id -> profile (identifiers, evidence)"),
                ("aliases", "merged one_id -> survivor"),
                ("refusals", "identifier key -> refused links"),
            ]
        ]
        identity_store = json_value_store(*identity_tables)
        pending_identity = BufferedIdentityStore(identity_store)
        rules = IdentityRules(
            limits=dict(topology.identity.limits),
            shareable_types=frozenset(topology.identity.shareable_types),
        )
        link = LinkStage(
            IdentityResolver(pending_identity, rules), pending_identity, outbox(), names, metrics
        )
        people = PersonStage(
            app,
            tables,
            TagEngine.from_specs(topology.tags),
            RuleEngine(topology.rules, topology.contact_policy, topology.stores),
            outbox(),
            {
                "person_events": names.person_events,
                "profile_updates": t.profile_updates.name,
                "coupons": t.coupons.name,
                "guide_alerts": t.guide_alerts.name,
                "actions_suppressed": t.actions_suppressed.name,
                "conversions": t.conversions.name,
                "audience_changes": t.audience_changes.name,
                "audience_members": t.audience_members.name,
            },
            internal.person_events.partitions,
            metrics,
            clock,
            AudienceEngine.from_specs(topology.audiences, topology.tags),
        )
        stages = {"ingest": ingest, "dedupe": dedupe, "link": link, "people": people}
        self.runner = StageRunner(
            app, topology, names, stages, self._topic(internal.control), self._topic, self._now_ms, metrics
        )
        app.timer(interval=WATERMARK_INTERVAL_S)(self.runner.announce_input_watermarks)

        self.broker = BrokerMonitor(
            broker_url(settings), settings.data_dir, WorkerTopics.of(topology, app), metrics, settings.kafka
        )
        app.task(self.broker.run)
        summary = SummaryLog(metrics, time.monotonic)
        app.timer(interval=SUMMARY_INTERVAL_S)(summary.log)
        stage_topics = {stage: spec.name for stage, spec in self.runner.inputs.items()}
        watermarks = self.runner.trackers
        ready = self.readiness
        WorkerCollector(app, stage_topics, watermarks, lambda: ready()["ready"], clock).register(
            metrics.registry
        )
        app.page("/metrics")(self._metrics_view())
        app.page("/ready")(self._ready_view())
        register_identity_views(app, identity_tables[0], identity_store)
        register_profile_views(app, people, replica)

    def _topic(self, spec: TopicSpec) -> faust.TopicT:
        if spec.name not in self._topics:
            self._topics[spec.name] = self.app.topic(
                spec.name, key_serializer="raw", value_serializer="raw", partitions=spec.partitions
            )
        return self._topics[spec.name]

    async def _close_producer(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.producer.close)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- web ---------------------------------------------------------------------------------

    def _metrics_view(self) -> type[View]:
        registry = self.metrics.registry

        class MetricsView(View):
            async def get(self, request: Request) -> Response:
                # aiohttp sets the charset itself and refuses one inside content_type.
                return self.bytes(generate_latest(registry), content_type=_METRICS_CONTENT_TYPE)

        return MetricsView

    def readiness(self) -> dict[str, Any]:
        """Ready once the worker has partitions and has restored their tables; not while a
        rebalance is going on or while the broker is unreachable (`/ready`, `stream_app_ready`)."""
        app = self.app
        try:
            assigned = len(app.consumer.assignment())
        except ConsumerNotStarted:  # asked while the worker starts (a probe does not wait)
            assigned = 0
        recovered = app.tables.recovery.completed.is_set()
        broker_up = self.broker.up
        return {
            "ready": bool(assigned) and recovered and not app.rebalancing and broker_up,
            "assigned_partitions": assigned,
            "tables_recovered": recovered,
            "broker_up": broker_up,
        }

    def _ready_view(self) -> type[View]:
        readiness = self.readiness

        class ReadyView(View):
            """200 when ready (`Pipeline.readiness`), 503 with the reasons before that."""

            async def get(self, request: Request) -> Response:
                state = readiness()
                return self.json(state, status=200 if state["ready"] else 503)

        return ReadyView
