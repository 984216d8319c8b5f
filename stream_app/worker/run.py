"""Running a Faust worker of the pipeline in this process (`stream-app worker`)."""

from __future__ import annotations

import logging
import os
import threading

import faust

from stream_app.config import Settings, Topology
from stream_app.io.kafka import ensure_topics
from stream_app.io.urls import bootstrap_servers
from stream_app.worker.app import Pipeline

SHUTDOWN_GRACE_S = 30.0


class _Worker(faust.Worker):
    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        # Faust's terminal spinner sets the root logger to DEBUG (to spin on every message), so
        # every library's debug call builds a record: ~10% of a worker's CPU. No spinner here.
        self.spinner = None

    def stop_and_shutdown(self) -> None:
        # A graceful stop flushes to the broker; with the broker gone (its parent died and took it
        # along) that waits forever. Never outlive the grace period.
        watchdog = threading.Timer(SHUTDOWN_GRACE_S, _give_up)
        watchdog.daemon = True
        watchdog.start()
        super().stop_and_shutdown()


def _give_up() -> None:
    logging.getLogger(__name__).error("shutdown took over %.0fs; exiting now", SHUTDOWN_GRACE_S)
    os._exit(1)


def run_worker(settings: Settings, topology: Topology) -> None:
    """Create missing topics, then run a Faust worker until SIGTERM/SIGINT."""
    if settings.broker is None:
        raise ValueError("a worker needs a broker URL (--broker or STREAM_APP_BROKER)")
    ensure_topics(bootstrap_servers(settings.broker), topology.all_topics(), topology.replication_factor)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(settings, topology)
    worker = _Worker(pipeline.app, loglevel=settings.log_level.upper())
    logging.getLogger("stream_app").setLevel(settings.log_level.upper())
    worker.execute_from_commandline()
