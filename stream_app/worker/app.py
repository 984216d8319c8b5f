"""The Faust app: topics, tables and agents of the stream_app topology.

    touchpoints ──ingest──▶ stream-app-events-by-id ──dedupe──▶ stream-app-normalized
        │ (invalid)            (key = event_id)            (table: event-ids)
        └────────▶ touchpoints-dlq

Agents decode, call the pure core (`stream_app.ingest`), write state and send what it decided.
Each agent runs one task (Faust's `concurrency > 1` has an offset-commit bug) and handles the
progress markers of bounded runs (`stream_app.control`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_app.config import Settings, Topology
from stream_app.config.topology import TopicSpec
from stream_app.control import CONTROL_HEADER, Barrier, Marker, StageDone, is_control
from stream_app.ingest import Accepted, Ingestor, PiiHasher
from stream_app.ingest.dedupe import is_first_delivery, position
from stream_app.io.urls import normalize_broker_url
from stream_app.metrics import Metrics

log = logging.getLogger(__name__)

_CONTROL_HEADERS = {CONTROL_HEADER: b"1"}
_METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST.split("; charset")[0]


def faust_settings(settings: Settings, topology: Topology) -> dict[str, Any]:
    """Every Faust setting stream_app decides, passed explicitly (so STREAM_APP_* wins)."""
    conf: dict[str, Any] = {
        "broker": normalize_broker_url(settings.broker or "kafka://localhost:9092"),
        "store": "rocksdb://",
        "datadir": str(settings.data_dir / "state"),
        "web_host": settings.web_host,
        "web_port": settings.web_port,
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
        self.app = faust.App(settings.app_id, **faust_settings(settings, topology))

        t, internal = topology.topics, topology.internal_topics
        self.touchpoints = self._topic(t.touchpoints)
        self.dlq = self._topic(t.dlq)
        self.events_by_id = self._topic(internal.events_by_id)
        self.normalized = self._topic(internal.normalized)
        self.control = self._topic(internal.control)
        self.seen_event_ids = self.app.Table(
            "event-ids",
            partitions=internal.events_by_id.partitions,
            key_type=str,
            value_type=str,
            help="event_id -> position of the record that first carried it",
        )
        self._barriers = {"ingest": Barrier(), "dedupe": Barrier()}
        self.app.agent(self.touchpoints, name="ingest")(self._ingest_agent)
        self.app.agent(self.events_by_id, name="dedupe")(self._dedupe_agent)
        self.app.page("/metrics")(self._metrics_view())

    def _topic(self, spec: TopicSpec) -> faust.TopicT:
        return self.app.topic(
            spec.name, key_serializer="raw", value_serializer="raw", partitions=spec.partitions
        )

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- agents -----------------------------------------------------------------------------

    async def _ingest_agent(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            if is_control(event.headers):
                await self._on_marker("ingest", message.partition, event.value, self.events_by_id)
                continue
            self.metrics.messages_in.inc()
            with self.metrics.ingest_seconds.time():
                outcome = self.ingestor.process(event.value, self._now_ms())
            if isinstance(outcome, Accepted):
                await self._accept(outcome)
            else:
                self.metrics.events_dlq.labels(outcome.reason).inc()
                source = {
                    "topic": message.topic,
                    "partition": message.partition,
                    "offset": message.offset,
                }
                record = self.ingestor.dlq_record(event.value, outcome, source, self._now_ms())
                await self.dlq.send(value=orjson.dumps(record))

    async def _accept(self, accepted: Accepted) -> None:
        event = accepted.event
        self.metrics.valid(event["event_type"], event["channel"])
        for id_type in accepted.dropped_identifiers:
            self.metrics.identifiers_dropped.labels(id_type).inc()
        await self.events_by_id.send(key=accepted.event_id.encode(), value=orjson.dumps(event))

    async def _dedupe_agent(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            if is_control(event.headers):
                await self._on_marker("dedupe", message.partition, event.value, None)
                continue
            event_id = message.key.decode()
            here = position(message.partition, message.offset)
            if not is_first_delivery(self.seen_event_ids.get(event_id), here):
                self.metrics.events_duplicate.inc()
                continue
            # Send before remembering: a crash in between re-sends (at-least-once), never loses.
            await self.normalized.send(key=message.key, value=event.value)
            self.seen_event_ids[event_id] = here
            self.metrics.events_out.inc()

    # -- progress markers --------------------------------------------------------------------

    async def _on_marker(
        self, stage: str, partition: int, value: bytes, downstream: faust.TopicT | None
    ) -> None:
        marker = Marker.decode(value)
        if not self._barriers[stage].observe(partition, marker):
            return
        await self.app.producer.flush()  # everything sent before the marker is on the broker
        if downstream is not None:
            sources = self._partitions(stage)
            forwarded = Marker(marker.run, marker.close_event_time, partition, sources).encode()
            for target in range(self._partitions_of(downstream)):
                await downstream.send(value=forwarded, partition=target, headers=_CONTROL_HEADERS)
        else:
            done = StageDone(marker.run, stage, partition, self._partitions(stage))
            await self.control.send(value=done.encode(), partition=0)
        await self.app.producer.flush()

    def _partitions(self, stage: str) -> int:
        spec = {
            "ingest": self.topology.topics.touchpoints,
            "dedupe": self.topology.internal_topics.events_by_id,
        }[stage]
        return spec.partitions

    def _partitions_of(self, topic: faust.TopicT) -> int:
        return int(topic.partitions or 1)

    # -- web ---------------------------------------------------------------------------------

    def _metrics_view(self) -> type[View]:
        registry = self.metrics.registry

        class MetricsView(View):
            async def get(self, request: Request) -> Response:
                # aiohttp sets the charset itself and refuses one inside content_type.
                return self.bytes(generate_latest(registry), content_type=_METRICS_CONTENT_TYPE)

        return MetricsView
