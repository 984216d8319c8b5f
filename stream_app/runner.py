"""`stream-app run`: the whole job on one machine: broker (embedded unless one is given), a Faust
worker process, optionally a file of events streamed through it, and what came out.

The embedded broker keeps its topics in memory, so local table state is only valid for the broker
it was built against: each embedded run gets a fresh state directory under `DATA_DIR/runs/`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from stream_app.config import Settings, Topology
from stream_app.io.broker import EmbeddedBroker, free_port
from stream_app.io.kafka import (
    KafkaToolError,
    Record,
    ensure_topics,
    make_producer,
    produce_values,
    read_topics,
    send_markers,
    wait_for_stage_done,
)
from stream_app.io.processes import spawn, stop, tail
from stream_app.io.urls import bootstrap_servers, is_embedded


class RunError(RuntimeError):
    pass


class LocalRun:
    """A broker and one worker process; a context manager that leaves no process behind."""

    def __init__(self, settings: Settings, topology: Topology):
        self.settings = settings
        self.topology = topology
        self.broker: EmbeddedBroker | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        embedded = settings.broker is None
        self.run_dir = settings.data_dir / "runs" / stamp if embedded else settings.data_dir
        self.web_port = free_port() if embedded else settings.web_port
        self.url = settings.broker or ""

    @property
    def bootstrap(self) -> str:
        return bootstrap_servers(self.url)

    @property
    def worker_log(self) -> Path:
        return self.run_dir / "worker.log"

    def start(self) -> LocalRun:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.broker is None:
            self.broker = EmbeddedBroker(log_path=self.run_dir / "broker.log").start()
            self.url = self.broker.url
        ensure_topics(self.bootstrap, self.topology.all_topics(), self.topology.replication_factor)
        self.start_worker()
        return self

    def worker_env(self) -> dict[str, str]:
        """The worker's settings, all explicit: the child must not guess from its environment."""
        s = self.settings
        env = dict(os.environ)
        env.update(
            STREAM_APP_BROKER=self.url,
            STREAM_APP_DATA_DIR=str(self.run_dir),
            STREAM_APP_WEB_PORT=str(self.web_port),
            STREAM_APP_WEB_HOST=s.web_host,
            STREAM_APP_TOPOLOGY=str(s.topology),
            STREAM_APP_APP_ID=s.app_id,
            STREAM_APP_LOG_LEVEL=s.log_level,
            STREAM_APP_PRODUCER_LINGER=str(s.producer_linger),
            STREAM_APP_FAST_REBALANCE="1" if s.fast_rebalance or is_embedded(self.url) else "0",
        )
        if s.pii_key is not None:
            env["STREAM_APP_PII_KEY"] = s.pii_key.get_secret_value()
        return env

    def start_worker(self) -> None:
        self.worker = spawn(
            [sys.executable, "-m", "stream_app", "worker"], self.worker_log, self.worker_env()
        )

    def kill_worker(self) -> None:
        """SIGKILL, as a crash would: no shutdown, no final commit."""
        if self.worker is not None:
            self.worker.kill()
            self.worker.wait(10)
            self.worker = None

    def check_alive(self) -> None:
        """Raise with the log of the broker or worker if one of them has died."""
        if self.broker is not None and not self.broker.running:
            raise RunError(
                f"the embedded broker died; last lines of {self.broker.log_path}:\n"
                f"{tail(self.broker.log_path)}"
            )
        if self.worker is not None and self.worker.poll() is not None:
            raise RunError(
                f"the worker exited with {self.worker.returncode}; last lines of "
                f"{self.worker_log}:\n{tail(self.worker_log)}"
            )

    def stream_events(self, lines: list[bytes], on_sent=None) -> int:  # type: ignore[no-untyped-def]
        producer = make_producer(self.bootstrap)
        return produce_values(producer, self.topology.topics.touchpoints.name, lines, on_sent)

    def finish_input(self, close_event_time: bool, timeout: float) -> None:
        """Mark the end of what was sent so far and wait until the pipeline has processed it."""
        run_id = uuid.uuid4().hex[:12]
        send_markers(
            make_producer(self.bootstrap),
            self.topology.topics.touchpoints,
            run_id,
            close_event_time,
        )
        _, last = self.topology.stage_inputs()[-1]
        wait_for_stage_done(
            self.bootstrap,
            self.topology.internal_topics.control.name,
            run_id,
            last.partitions,
            timeout,
            self.check_alive,
        )

    def read_outputs(self) -> dict[str, list[Record]]:
        return read_topics(self.bootstrap, [spec.name for spec in self.topology.output_topics()])

    def stop(self) -> None:
        if self.worker is not None:
            stop(self.worker)
            self.worker = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def __enter__(self) -> LocalRun:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_event_lines(path: Path) -> list[bytes]:
    """Lines of a JSONL file as raw bytes (blank lines skipped, nothing else touched)."""
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def dump(outputs: dict[str, list[Record]], directory: Path) -> None:
    """Each topic's record values, one per line, to `directory/<topic>.jsonl`."""
    directory.mkdir(parents=True, exist_ok=True)
    for topic, records in outputs.items():
        with open(directory / f"{topic}.jsonl", "wb") as out:
            for record in records:
                out.write((record.value or b"null") + b"\n")


__all__ = ["KafkaToolError", "LocalRun", "RunError", "dump", "read_event_lines"]
