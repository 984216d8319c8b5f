"""What a worker's Faust machinery knows, exported at scrape time: lag, rebalances, recovery,
watermark delay, table sizes.

Why not Faust's own Prometheus sensor (`faust.sensors.prometheus.PrometheusMonitor`): it updates
labelled series on every input record and every table access (`track_tp_end_offset`,
`on_message_in`, `on_stream_event_in`, `on_table_get/set`), ~7 µs each through prometheus-client's
`labels()` on this machine, so ~30 µs an input record where the whole person stage costs ~30 µs an
event; its latencies are milliseconds and its names (`..._total_rebalances`, a gauge that goes
down; `..._offset_commited`) are not Prometheus's conventions. The bookkeeping it exports is
Faust's base `Monitor`, which every Faust app keeps anyway. So this collector reads that (and the
consumer, the recovery service and the stores) when Prometheus asks, and costs nothing per event.

Everything is read on the event loop (the /metrics view runs there), so no state moves under it.
Private Faust attributes read here (`Consumer._committed_offset`, `Recovery._recovery_started_at`,
`Store._dbs`) are those of faust-streaming 0.15, the version pinned; each read falls back to
nothing if the attribute is gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stream_app.control import WatermarkTracker


class WorkerCollector(Collector):
    """One per worker: `register()` puts it on the worker's registry, next to `Metrics`."""

    def __init__(
        self,
        app: faust.App,
        stage_inputs: Mapping[str, str],
        watermarks: Mapping[str, list[WatermarkTracker]],
        ready: Callable[[], bool],
        clock: Callable[[], float] = time.time,
    ):
        self.app = app
        self.stage_inputs = dict(stage_inputs)
        """Stage -> the topic it reads: the topics whose lag is the pipeline's."""
        self.watermarks = watermarks
        """Stage -> its input partitions' watermark trackers (the stage runner's)."""
        self.ready = ready
        """What `/ready` answers (True: 200)."""
        self.clock = clock

    def register(self, registry: CollectorRegistry) -> WorkerCollector:
        registry.register(self)
        return self

    def describe(self) -> Iterable[Metric]:
        # Said up front so the registry need not call collect() (and start Faust's consumer) to learn them.
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        ready, lag, rebalances, rebalancing, last_rebalance, in_recovery, remaining, recovery_s = families[:8]
        delay, keys, sst = families[8:]
        ready.add_metric([], 1 if self.ready() else 0)
        assigned = self._assignment()
        consumer = self.app.consumer if assigned else None
        committed: Mapping[Any, int | None] = getattr(consumer, "_committed_offset", {}) if consumer else {}
        inputs = set(self.stage_inputs.values())
        for tp in sorted(assigned):
            if tp.topic not in inputs or consumer is None:
                continue
            end, done = consumer.highwater(tp), committed.get(tp)
            if end is not None and done is not None and done >= 0:
                lag.add_metric([tp.topic, str(tp.partition)], max(0, end - done))

        app = self.app
        rebalances.add_metric([], app.rebalancing_count)
        rebalancing.add_metric([], 1 if app.rebalancing else 0)
        latencies = app.monitor.rebalance_end_latency
        if latencies:
            last_rebalance.add_metric([], latencies[-1])

        recovery = app.tables.recovery  # type: ignore[attr-defined]  # TableManager, not its interface
        in_recovery.add_metric([], 1 if recovery.in_recovery else 0)
        remaining.add_metric([], recovery.active_remaining_total() if recovery.in_recovery else 0)
        started = getattr(recovery, "_recovery_started_at", None)
        ended = getattr(recovery, "_recovery_ended_at", None)
        if started is not None:
            until = time.monotonic() if recovery.in_recovery or ended is None else ended
            recovery_s.add_metric([], max(0.0, until - started))

        now_ms = self.clock() * 1000
        mine = {(tp.topic, tp.partition) for tp in assigned}
        for stage, trackers in self.watermarks.items():
            topic = self.stage_inputs[stage]
            marks = [t.current() for partition, t in enumerate(trackers) if (topic, partition) in mine]
            known = [mark for mark in marks if mark is not None]
            if known:
                delay.add_metric([stage], max(0.0, (now_ms - min(known)) / 1000))

        for name, table in sorted(app.tables.items()):
            dbs = getattr(table.data, "_dbs", None)
            if not dbs:
                continue
            keys.add_metric([name], sum(_property(db, "rocksdb.estimate-num-keys") for db in dbs.values()))
            sst.add_metric([name], sum(_property(db, "rocksdb.total-sst-files-size") for db in dbs.values()))
        return families

    def _assignment(self) -> set[Any]:
        try:
            return set(self.app.consumer.assignment())
        except ConsumerNotStarted:  # scraped while the worker starts
            return set()

    @staticmethod
    def _families() -> list[GaugeMetricFamily | CounterMetricFamily]:
        return [
            GaugeMetricFamily("stream_app_ready", "1 while the worker's /ready answers 200, else 0"),
            GaugeMetricFamily(
                "stream_app_consumer_lag",
                "Records in a stage's input partition after the group's committed offset (from the "
                "last fetch's high watermark), per partition this worker reads",
                labels=["topic", "partition"],
            ),
            CounterMetricFamily(
                "stream_app_rebalances", "Consumer group rebalances this worker took part in"
            ),
            GaugeMetricFamily(
                "stream_app_rebalancing", "1 while a rebalance (with its recovery) is going on"
            ),
            GaugeMetricFamily(
                "stream_app_last_rebalance_seconds",
                "From the start of the last completed rebalance to the end of its table recovery",
            ),
            GaugeMetricFamily(
                "stream_app_recovery_in_progress", "1 while tables are restored from changelogs"
            ),
            GaugeMetricFamily(
                "stream_app_recovery_remaining_records", "Changelog records still to restore (0 when none)"
            ),
            GaugeMetricFamily(
                "stream_app_recovery_seconds",
                "How long the running table recovery has taken so far, else how long the last one took",
            ),
            GaugeMetricFamily(
                "stream_app_watermark_delay_seconds",
                "Wall clock minus the lowest event-time watermark of the stage's partitions on this "
                "worker: how far behind real time rules and absences are decided (a replay of old "
                "events shows their age)",
                labels=["stage"],
            ),
            GaugeMetricFamily(
                "stream_app_table_keys_estimated",
                "Keys in the table's RocksDB stores on this worker (RocksDB's estimate)",
                labels=["table"],
            ),
            GaugeMetricFamily(
                "stream_app_table_sst_bytes",
                "Bytes of the table's RocksDB SST files on this worker (memtables not yet flushed excluded)",
                labels=["table"],
            ),
        ]


def _property(db: Any, name: str) -> int:
    try:
        return int(db.property_int_value(name) or 0)
    except Exception:  # a store closed under a rebalance: counts as empty this scrape
        return 0
