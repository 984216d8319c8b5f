"""Running a Faust worker of the pipeline in this process (`stream-app worker`).

Before Faust starts (and so before it recovers tables from changelogs), the broker monitor
(`stream_app.worker.broker_monitor`) waits for the broker and checks that it still holds the data
the local state was built on; the Kafka client's warnings are gated on the log handlers.

Logging: Faust sets up the root logger when the worker starts; before that, and on every handler
Faust installs, `stream_app.logs` masks phones and emails and, with `STREAM_APP_LOG_FORMAT=json`,
writes one JSON object per line (Faust's start-up banner, which is not a log record, left out).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import faust

from stream_app import logs
from stream_app.config import Settings, Topology
from stream_app.io.kafka import ensure_topics
from stream_app.io.urls import bootstrap_servers
from stream_app.worker import gc_pauses
from stream_app.worker.app import Pipeline

SHUTDOWN_GRACE_S = 30.0
ORPHAN_GRACE_S = 5.0
"""The grace when the worker's parent has died (`run`'s worker, stopped by PR_SET_PDEATHSIG along with
the embedded broker): nothing can be flushed to a broker that is gone, and at-least-once makes the
exit safe; a stop that waited for it kept the process around for the whole grace."""
_PARENT = os.getppid()
_LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"  # as Faust's, until it has set up


class _Worker(faust.Worker):
    def __init__(self, app: faust.App, log_gate: logging.Filter, log_format: str, **kwargs: Any):
        self.log_gate = log_gate
        self.log_format = log_format
        super().__init__(app, quiet=log_format == "json", **kwargs)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        # Faust's terminal spinner sets the root logger to DEBUG (to spin on every message), so
        # every library's debug call builds a record: ~10% of a worker's CPU. No spinner here.
        self.spinner = None
        # aiokafka logs every failed request while the broker is down (thousands of lines a
        # minute): the broker monitor summarises them instead.
        for handler in logger.handlers:
            handler.addFilter(self.log_gate)
            logs.apply(handler, self.log_format)

    def stop_and_shutdown(self) -> None:
        # A graceful stop flushes to the broker; with the broker gone (its parent died and took it
        # along) that waits forever. Never outlive the grace period.
        orphaned = os.getppid() != _PARENT
        watchdog = threading.Timer(ORPHAN_GRACE_S if orphaned else SHUTDOWN_GRACE_S, _give_up)
        watchdog.daemon = True
        watchdog.start()
        super().stop_and_shutdown()


def _give_up() -> None:
    logging.getLogger(__name__).error("shutdown took too long; exiting now")
    os._exit(1)


def run_worker(settings: Settings, topology: Topology) -> None:
    """Wait for the broker, check local state against it, create missing topics, then run a Faust
    worker until SIGTERM/SIGINT. Exits with `EXIT_BROKER_DATA_LOST` (no traceback) when a real
    Kafka does not hold the data the local state was built on."""
    if settings.broker is None:
        raise ValueError("a worker needs a broker URL (--broker or STREAM_APP_BROKER)")
    level = settings.log_level.upper()
    logging.basicConfig(format=_LOG_FORMAT, level=level, force=True)  # Faust replaces it at start
    for handler in logging.getLogger().handlers:
        logs.apply(handler, settings.log_format)
    logging.getLogger("stream_app").setLevel(level)
    pipeline = Pipeline(settings, topology)
    gc_pauses.GcPauses(pipeline.metrics.registry).install()  # once per process: gc.callbacks is global
    if settings.gc_freeze:

        async def refreeze(*args: Any, **kwargs: Any) -> None:
            gc_pauses.freeze("rebalance complete")

        pipeline.app.on_rebalance_complete.connect(refreeze)
    monitor = pipeline.broker
    # Before topics are created (a wrong cluster gets nothing) and before Faust recovers tables.
    monitor.check_at_start(monitor.wait_until_reachable())
    ensure_topics(
        bootstrap_servers(settings.broker), topology.all_topics(), topology.replication_factor, settings.kafka
    )
    monitor.record(monitor.wait_until_reachable())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    worker = _Worker(pipeline.app, monitor.gate, settings.log_format, loglevel=level)
    if settings.gc_freeze:
        gc_pauses.freeze("start-up")
    worker.execute_from_commandline()
