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
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from stream_app.config import Settings, Topology
from stream_app.config.settings import KAFKA_ENV_PREFIX, KafkaSecurity
from stream_app.control import StageDone
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

MAX_SETTLE_ROUNDS = 100
"""Rounds of end-of-input markers behind people handed on between partitions (one per hop of
the longest merge chain in flight); more means something hands people on in a loop."""


class RunError(RuntimeError):
    pass


class LocalRun:
    """A broker and worker processes; a context manager that leaves no process behind.

    Worker 0 keeps its state and log in `run_dir`; more workers (`start_worker(1)`, ...) join the
    same consumer group, each with a directory and web port of its own, as separate machines would.
    """

    def __init__(self, settings: Settings, topology: Topology):
        self.settings = settings
        self.topology = topology
        self.broker: EmbeddedBroker | None = None
        self.workers: dict[int, subprocess.Popen[bytes]] = {}
        stamp = time.strftime("%Y%m%d-%H%M%S")
        embedded = settings.broker is None
        self.run_dir = settings.data_dir / "runs" / stamp if embedded else settings.data_dir
        self.web_ports = {0: free_port() if embedded else settings.web_port}
        self.url = settings.broker or ""
        self._on_wait: Callable[[], None] | None = None

    @property
    def bootstrap(self) -> str:
        return bootstrap_servers(self.url)

    @property
    def security(self) -> KafkaSecurity:
        return self.settings.kafka

    @property
    def web_port(self) -> int:
        return self.web_ports[0]

    def worker_dir(self, index: int = 0) -> Path:
        return self.run_dir if index == 0 else self.run_dir / f"worker-{index}"

    def worker_log_of(self, index: int) -> Path:
        return self.worker_dir(index) / "worker.log"

    @property
    def worker_log(self) -> Path:
        return self.worker_log_of(0)

    def start(self) -> LocalRun:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.broker is None:
            self.broker = EmbeddedBroker(log_path=self.run_dir / "broker.log").start()
            self.url = self.broker.url
        ensure_topics(
            self.bootstrap, self.topology.all_topics(), self.topology.replication_factor, self.security
        )
        self.start_worker()
        self.wait_ready()
        return self

    def worker_env(self, index: int = 0) -> dict[str, str]:
        """A worker's settings, all explicit: the child must not guess from its environment."""
        s = self.settings
        env = dict(os.environ)
        env.update(
            STREAM_APP_BROKER=self.url,
            STREAM_APP_DATA_DIR=str(self.worker_dir(index)),
            STREAM_APP_WEB_PORT=str(self.web_ports.setdefault(index, free_port())),
            STREAM_APP_WEB_HOST=s.web_host,
            STREAM_APP_TOPOLOGY=str(s.topology),
            STREAM_APP_APP_ID=s.app_id,
            STREAM_APP_LOG_LEVEL=s.log_level,
            STREAM_APP_LOG_FORMAT=s.log_format,
            STREAM_APP_PRODUCER_LINGER=str(s.producer_linger),
            STREAM_APP_FAST_REBALANCE="1" if s.fast_rebalance or is_embedded(self.url) else "0",
        )
        env = {k: v for k, v in env.items() if not k.startswith(KAFKA_ENV_PREFIX)}
        env.update(s.kafka.as_env())
        if s.pii_key is not None:
            env["STREAM_APP_PII_KEY"] = s.pii_key.get_secret_value()
        return env

    def start_worker(self, index: int = 0) -> None:
        self.worker_dir(index).mkdir(parents=True, exist_ok=True)
        self.workers[index] = spawn(
            [sys.executable, "-m", "stream_app", "worker"], self.worker_log_of(index), self.worker_env(index)
        )

    def wait_ready(self, index: int = 0, timeout: float = 120.0) -> None:
        """Until the worker has its partitions and their tables (its `/ready` answers 200)."""
        url = f"http://127.0.0.1:{self.web_ports[index]}/ready"
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError:  # URLError, HTTPError (503: not ready) and refused connections alike
                pass
            if time.monotonic() > deadline:
                log = self.worker_log_of(index)
                raise RunError(f"worker {index} not ready after {timeout:.0f}s; end of {log}:\n{tail(log)}")
            time.sleep(0.5)

    def kill_worker(self, index: int = 0) -> None:
        """SIGKILL, as a crash would: no shutdown, no final commit."""
        worker = self.workers.pop(index, None)
        if worker is not None:
            worker.kill()
            worker.wait(10)

    def check_alive(self) -> None:
        """Raise with the log of the broker or a worker if one of them has died."""
        if self.broker is not None and not self.broker.running:
            raise RunError(
                f"the embedded broker died; last lines of {self.broker.log_path}:\n"
                f"{tail(self.broker.log_path)}"
            )
        for index, worker in self.workers.items():
            if worker.poll() is not None:
                log = self.worker_log_of(index)
                raise RunError(
                    f"worker {index} exited with {worker.returncode}; last lines of {log}:\n{tail(log)}"
                )

    def stream_events(self, lines: list[bytes], on_sent=None) -> int:  # type: ignore[no-untyped-def]
        producer = make_producer(self.bootstrap, self.security)
        return produce_values(producer, self.topology.topics.touchpoints.name, lines, on_sent)

    def finish_input(
        self, close_event_time: bool, timeout: float, on_wait: Callable[[], None] | None = None
    ) -> None:
        """Mark the end of what was sent so far and wait until the pipeline has processed it.

        The last stage (the person stage) hands merged people's state on between its own
        partitions, along chains of merges of any length: after each round of markers in which a
        partition handed something on, another round follows it, until a round hands on nothing.

        `on_wait` is called between polls of the control topic (every ~0.2 s), e.g. to show progress.
        """
        self._on_wait = on_wait
        run_id = uuid.uuid4().hex[:12]
        producer = make_producer(self.bootstrap, self.security)
        send_markers(producer, self.topology.topics.touchpoints, run_id, close_event_time)
        stage, last = self.topology.stage_inputs()[-1]
        deadline = time.monotonic() + timeout
        reports = self._wait_done(run_id, last.partitions, deadline)
        for round_no in range(1, MAX_SETTLE_ROUNDS + 1):
            if not any(report.forwarded for report in reports):
                return
            settle_run = f"{run_id}.{round_no}"
            send_markers(producer, last, settle_run, close_event_time, stage=stage)
            reports = self._wait_done(settle_run, last.partitions, deadline)
        raise RunError(f"people still handed on between partitions after {MAX_SETTLE_ROUNDS} rounds")

    def _wait_done(self, run: str, partitions: int, deadline: float) -> list[StageDone]:
        control = self.topology.internal_topics.control.name
        left = max(1.0, deadline - time.monotonic())
        return wait_for_stage_done(
            self.bootstrap, control, run, partitions, left, self._still_waiting, self.security
        )

    def _still_waiting(self) -> None:
        self.check_alive()
        if self._on_wait is not None:
            self._on_wait()

    def scrape_metrics(self, index: int = 0, timeout: float = 2.0) -> str | None:
        """A worker's `/metrics` as Prometheus text, or None if it does not answer in `timeout`."""
        url = f"http://127.0.0.1:{self.web_ports[index]}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as answer:
                return str(answer.read().decode())
        except OSError:  # refused, timed out, or an HTTP error status: no scrape this time
            return None

    def read_outputs(self) -> dict[str, list[Record]]:
        names = [spec.name for spec in self.topology.output_topics()]
        return read_topics(self.bootstrap, names, security=self.security)

    def stop(self) -> None:
        for worker in self.workers.values():
            stop(worker)
        self.workers.clear()
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
