"""The broker monitor of a worker: probes the broker, says once that it is gone, guards local state.

- At start (`stream_app.worker.run`, before Faust's table recovery): wait for the broker, then
  compare the broker identity recorded in the data directory with what the broker says. If the
  broker lost the data the local state was built on, a `tansu://` (embedded, memory-only) broker
  gets the local state discarded and rebuilt, with one warning; a real Kafka gets one error line
  naming the directory and exit code `EXIT_BROKER_DATA_LOST`, no traceback.
- While running (a Faust task): probe every `PROBE_EVERY_S`; publish `stream_app_broker_up`,
  count outages; `/ready` answers 503 while the broker is unreachable; log through `OutageLog`.
  If the broker comes back without our data (a restarted embedded broker is empty), the worker
  says so once and exits with `EXIT_BROKER_DATA_LOST`: Faust cannot swap its tables' ground from
  under a running app, and the restart path above handles it.

Probes use a confluent-kafka admin client in a thread of its own (its librdkafka log silenced),
so they never wait on Faust's consumer and never add to the noise they are meant to replace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient

from stream_app.config import Topology
from stream_app.config.settings import KafkaSecurity
from stream_app.io.broker import clear_ghost_topics
from stream_app.io.kafka import client_config
from stream_app.io.urls import bootstrap_servers, is_embedded
from stream_app.metrics import Metrics
from stream_app.worker.broker_health import (
    EXIT_BROKER_DATA_LOST,
    BrokerIdentity,
    ClientLogGate,
    OutageLog,
    lost_data,
    normal_topic_id,
)

log = logging.getLogger(__name__)

PROBE_EVERY_S = 2.0
PROBE_EVERY_DOWN_S = 0.25
"""Short: the sooner a worker sees an emptied broker, the less it writes into it before it exits."""
PROBE_TIMEOUT_S = 1.0
LOST_CONFIRMATIONS = {True: 1, False: 2}
"""Probes that must agree the data is gone before a running worker exits, embedded or not: a real
Kafka gets a second look (metadata during a cluster restart); a memory-only broker never lies."""
IDENTITY_FILE = "broker-identity.json"


class BrokerMonitor:
    """One per worker process; `gate` goes on the log handlers, `run` is a Faust task."""

    def __init__(
        self,
        broker_url: str,
        data_dir: Path,
        topics: WorkerTopics,
        metrics: Metrics,
        security: KafkaSecurity | None = None,
    ):
        self.bootstrap = bootstrap_servers(broker_url)
        self.security = security
        self.embedded = is_embedded(broker_url)
        self.data_dir = data_dir
        self.state_dir = data_dir / "state"
        self.identity_file = data_dir / IDENTITY_FILE
        self.topics = topics
        self.watched = list(topics.watched)
        self.metrics = metrics
        self.outage = OutageLog(self.bootstrap)
        self.gate = ClientLogGate(self._client_error)
        self._admin: AdminClient | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="broker-probe")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._poked = False
        self._recorded: BrokerIdentity | None = None
        self._lost_streak = 0
        metrics.broker_up.set(1)

    @property
    def up(self) -> bool:
        return self.outage.up

    # -- probing (blocking; in the probe thread while running) ---------------------------------

    def admin_config(self) -> dict[str, Any]:
        # log_level 0: librdkafka would print its own connection errors to stderr.
        # and its reconnect backoff grows to 10 s by default: we want to see the broker back soon.
        return client_config(
            self.bootstrap,
            self.security,
            **{"log_level": 0, "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 250},
        )

    def probe(self) -> BrokerIdentity | None:
        """The broker's cluster id and the ids of the watched topics it has; None if unreachable."""
        if self._admin is None:
            self._admin = AdminClient(self.admin_config())
        try:
            metadata = self._admin.list_topics(timeout=PROBE_TIMEOUT_S)
        except KafkaException:
            return None
        present = [name for name in self.watched if name in metadata.topics]
        topic_ids: dict[str, str] = {}
        if present:
            futures = self._admin.describe_topics(TopicCollection(present), request_timeout=PROBE_TIMEOUT_S)
            for name, future in futures.items():
                try:
                    topic_ids[name] = normal_topic_id(future.result(PROBE_TIMEOUT_S).topic_id)
                except TimeoutError:  # no answer in time (a loaded machine): as unreachable, this once
                    return None
                except KafkaException as exc:
                    if _unknown_topic(exc):  # deleted between the two requests
                        continue
                    return None
        return BrokerIdentity(metadata.cluster_id, topic_ids)

    # -- at start ------------------------------------------------------------------------------

    def wait_until_reachable(self) -> BrokerIdentity:
        """Block until the broker answers, saying so once (and every 30 s) while it does not."""
        while True:
            identity = self.probe()
            self._probed(identity is not None, time.monotonic())
            if identity is not None:
                return identity
            time.sleep(PROBE_EVERY_DOWN_S)

    def check_at_start(self, now: BrokerIdentity) -> None:
        """Before Faust recovers tables: is the local state built on what this broker holds?

        Embedded broker without our data: discard local state (it rebuilds). Real Kafka: refuse,
        with one line saying what to do, and exit `EXIT_BROKER_DATA_LOST`.
        """
        recorded = self.read_identity()
        if not _has_files(self.state_dir):
            self.identity_file.unlink(missing_ok=True)  # nothing built on it any more
            return
        if recorded is None:
            log.info("no broker identity recorded in %s yet; recording it now", self.identity_file)
            return
        reason = lost_data(recorded, now)
        if reason is None:
            self._recorded = recorded
            return
        if self.embedded:
            shutil.rmtree(self.state_dir)
            self.identity_file.unlink(missing_ok=True)
            t = self.topics
            cleared = clear_ghost_topics(self.bootstrap, t.written, t.claim, t.inputs, t.group)
            log.warning(
                "local state in %s discarded because the embedded broker %s lost its data (%s); "
                "rebuilding from scratch%s",
                self.state_dir,
                self.bootstrap,
                reason,
                f"; {len(cleared)} topics it writes reset (Tansu workaround)" if cleared else "",
            )
            return
        log.error(
            "refusing to start: the broker %s does not hold the data the local state in %s was built "
            "on (%s). Delete %s to rebuild the state from this broker, or point STREAM_APP_BROKER at "
            "the cluster the state came from.",
            self.bootstrap,
            self.state_dir,
            reason,
            self.state_dir,
        )
        raise SystemExit(EXIT_BROKER_DATA_LOST)

    def record(self, now: BrokerIdentity) -> None:
        """Remember the broker the local state is (about to be) built on, plus topics new since."""
        updated = now if self._recorded is None else self._recorded.with_new_topics(now)
        if updated == self._recorded:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        partial = self.identity_file.with_suffix(".tmp")
        partial.write_bytes(updated.to_json())
        partial.replace(self.identity_file)  # atomic: never a half-written record
        self._recorded = updated

    def read_identity(self) -> BrokerIdentity | None:
        try:
            return BrokerIdentity.from_json(self.identity_file.read_bytes())
        except FileNotFoundError:
            return None
        except ValueError:
            log.warning("unreadable %s; treating it as absent", self.identity_file)
            return None

    # -- while running -------------------------------------------------------------------------

    async def run(self) -> None:
        """The Faust task: probe, publish, log; exit if the broker lost our data."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while True:
            identity = await self._loop.run_in_executor(self._executor, self.probe)
            self.observe(identity, time.monotonic())
            self._poked = False
            self._wake.clear()
            # Quick while the broker is away, or when a second look must confirm it lost our data.
            pause = PROBE_EVERY_S if self.up and not self._lost_streak else PROBE_EVERY_DOWN_S
            with contextlib.suppress(TimeoutError):  # the usual way round: nothing poked us
                await asyncio.wait_for(self._wake.wait(), timeout=pause)

    def observe(self, identity: BrokerIdentity | None, now: float) -> None:
        self._probed(identity is not None, now)
        if identity is None:
            return
        reason = lost_data(self._recorded, identity) if self._recorded is not None else None
        if reason is None:
            self._lost_streak = 0
            self.record(identity)
            return
        self._lost_streak += 1
        if self._lost_streak >= LOST_CONFIRMATIONS[self.embedded]:
            self._exit_lost(reason)

    def _exit_lost(self, reason: str) -> None:
        then = (
            "restarted, the worker discards its local state and rebuilds it (embedded broker)"
            if self.embedded
            else f"restarted, it will refuse to start until {self.state_dir} is deleted or "
            "STREAM_APP_BROKER points at the cluster the state came from"
        )
        log.error(
            "the broker %s lost the data this worker's local state was built on (%s); exiting with "
            "code %d: %s",
            self.bootstrap,
            reason,
            EXIT_BROKER_DATA_LOST,
            then,
        )
        logging.shutdown()
        # No graceful stop: it would commit offsets and flush tables to topics that are gone, and
        # the local state is worthless now anyway.
        os._exit(EXIT_BROKER_DATA_LOST)

    def _client_error(self, text: str) -> None:
        """From the log gate, on any thread: count it, and probe now rather than in 2 s."""
        self.outage.client_error(text)
        self.metrics.broker_client_errors.inc()
        if not self._poked and self._loop is not None and self._wake is not None:
            self._poked = True
            self._loop.call_soon_threadsafe(self._wake.set)

    def _probed(self, reachable: bool, now: float) -> None:
        outages = self.outage.outages
        for line in self.outage.probed(reachable, now):
            log.log(line.level, "%s", line.text)
        self.metrics.broker_outages.inc(self.outage.outages - outages)
        self.metrics.broker_up.set(1 if self.up else 0)


@dataclass(frozen=True)
class WorkerTopics:
    watched: list[str]
    """The topics local state depends on: what the stages read, and the tables' changelogs.
    Output topics are not among them: created again, they do not invalidate local state."""
    written: dict[str, int]
    """Every topic the app writes (all but its input), with its partitions: what a rebuild on an
    emptied embedded broker resets (`stream_app.io.broker.clear_ghost_topics`)."""
    inputs: dict[str, int]
    """The app's input topic(s), with partitions: written by others, so never reset if well-formed."""
    group: str
    """The app's consumer group."""
    claim: str
    """Created by the first worker of the app to rebuild on an emptied embedded broker."""

    @classmethod
    def of(cls, topology: Topology, app: faust.App) -> WorkerTopics:
        changelogs = {
            table.changelog_topic.get_topic_name(): int(table.changelog_topic.partitions or 1)
            for table in app.tables.values()
        }
        source = topology.topics.touchpoints.name
        inputs = {source} | {spec.name for spec in topology.internal_topics.__dict__.values()}
        written = {spec.name: spec.partitions for spec in topology.all_topics() if spec.name != source}
        written[f"{app.conf.id}-__assignor-__leader"] = 1  # Faust's LeaderAssignor topic
        return cls(
            watched=sorted(inputs | set(changelogs)),
            written={**written, **changelogs},
            inputs={source: topology.topics.touchpoints.partitions},
            group=app.conf.id,
            claim=f"{app.conf.id}-__rebuilt-on-this-broker",
        )


def _has_files(directory: Path) -> bool:
    return directory.is_dir() and any(p.is_file() for p in directory.rglob("*"))


def _unknown_topic(exc: KafkaException) -> bool:
    err = exc.args[0] if exc.args else None
    return isinstance(err, KafkaError) and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


__all__ = ["EXIT_BROKER_DATA_LOST", "BrokerMonitor", "WorkerTopics"]
