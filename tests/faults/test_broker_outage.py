"""Broker outages: a worker says once that the broker is gone, answers /ready 503 meanwhile, and
afterwards either carries on (the broker kept its data) or rebuilds (the embedded broker restarted
empty) or refuses with one clear line (a real Kafka without the data its state was built on).

Each test runs its own embedded broker: stopping the session broker would break other tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream_app.config import Settings, load_topology
from stream_app.config.topology import TopicSpec
from stream_app.io.broker import EmbeddedBroker, clear_ghost_topics, free_port
from stream_app.io.kafka import ensure_topics, read_topics
from stream_app.io.processes import tail
from stream_app.runner import LocalRun
from stream_app.worker.broker_health import EXIT_BROKER_DATA_LOST
from tests.integration.conftest import isolated_topology
from tests.integration.helpers import metric, valid_event

pytestmark = pytest.mark.integration

OUTAGE_S = 12.0
# What aiokafka logs, per failed request, while the broker is down (~3,400 lines in 21 s before).
CLIENT_NOISE = (
    "Unable connect to node",
    "Unable to update metadata",
    "NodeNotReadyError",
    "OffsetCommit failed",
    "Failed fetch messages",
    "Got error produce response",
    "KafkaConnectionError",
)

MONITOR_LINES = ("unreachable", "reachable again", "the Kafka client reported")


def _settings(tmp_path: Path, broker: str | None) -> Settings:
    return Settings(
        broker=broker,
        topology=isolated_topology(tmp_path),
        data_dir=tmp_path / "data",
        app_id=f"outage-{uuid.uuid4().hex[:8]}",
        web_port=free_port(),
        pii_key="outage-test-key",
        fast_rebalance=True,
    )


def _ready_status(port: int) -> int | None:
    """/ready's HTTP status; None when nothing answers (the process is gone)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=3) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


def _metric_or_none(port: int, name: str) -> float | None:
    try:
        return metric(port, name)
    except OSError:
        return None


@dataclass
class Samples:
    """What /ready and the broker metrics said, sampled while something happened."""

    ready: list[int | None] = field(default_factory=list)
    broker_up: list[float | None] = field(default_factory=list)
    outages: list[float | None] = field(default_factory=list)

    def take(self, port: int) -> None:
        self.ready.append(_ready_status(port))
        self.broker_up.append(_metric_or_none(port, "stream_app_broker_up"))
        self.outages.append(_metric_or_none(port, "stream_app_broker_outages_total"))


def _sample_for(seconds: float, port: int, until: Callable[[], bool] = lambda: False) -> Samples:
    samples = Samples()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not until():
        samples.take(port)
        time.sleep(0.5)
    return samples


def _lines(log: str, *needles: str) -> list[str]:
    return [line for line in log.splitlines() if any(n in line for n in needles)]


def _resolved_ids(run: LocalRun) -> set[str]:
    name = run.topology.topics.resolved.name
    return {orjson.loads(r.value)["event_id"] for r in read_topics(run.bootstrap, [name])[name]}


def _assert_quiet(log: str) -> None:
    summaries = _lines(log, *MONITOR_LINES)  # these quote the first client error they held back
    noise = [line for line in _lines(log, *CLIENT_NOISE) if line not in summaries]
    assert not noise, f"{len(noise)} Kafka client lines reached the log, e.g. {noise[:3]}"
    assert "Traceback" not in log, tail_of(log)
    assert "ConsistencyError" not in log


def tail_of(log: str, lines: int = 40) -> str:
    return "\n".join(log.splitlines()[-lines:])


def test_embedded_broker_restarted_empty_is_said_once_and_the_worker_rebuilds(tmp_path):
    settings = _settings(tmp_path, broker=None)  # LocalRun starts an embedded broker of its own
    with LocalRun(settings, load_topology(settings.topology)) as run:
        assert run.broker is not None
        run.stream_events([valid_event(n) for n in range(200)])
        run.finish_input(close_event_time=False, timeout=60)
        assert len(_resolved_ids(run)) == 200
        run.stream_events([valid_event(n) for n in range(200, 500)])  # still being processed ...
        run.broker.stop()  # ... when the broker goes
        during = _sample_for(OUTAGE_S, run.web_port)
        run.broker.start()  # same port, empty: Tansu keeps memory only
        back_at = time.monotonic()
        worker = run.workers[0]
        after = _sample_for(30, run.web_port, until=lambda: worker.poll() is not None)
        returncode = worker.poll()
        first_log = run.worker_log.read_text()
        assert returncode == EXIT_BROKER_DATA_LOST, (returncode, tail_of(first_log))
        run.workers.pop(0)
        run.start_worker()  # as a supervisor would
        run.wait_ready(timeout=60)
        recovery_s = time.monotonic() - back_at
        fresh = [valid_event(n, event_id=f"fresh-{n:06d}") for n in range(100)]
        run.stream_events(fresh)
        run.finish_input(close_event_time=False, timeout=60)
        resolved = _resolved_ids(run)
        up_again = metric(run.web_port, "stream_app_broker_up")
        run.check_alive()
        log = run.worker_log.read_text()

    unreachable = _lines(first_log, "unreachable")
    broker_lines = _lines(log, "unreachable", "reachable again", "lost the data", "lost its data")
    print(
        f"broker lines {len(broker_lines)}, unreachable lines {len(unreachable)}, "
        f"ready again {recovery_s:.1f} s after the broker came back; /ready during {during.ready}"
    )
    assert len(unreachable) in (1, 2), unreachable
    assert len(broker_lines) <= 5, broker_lines
    assert len(_lines(log, "lost the data this worker's local state was built on")) == 1
    assert len(_lines(log, "discarded because the embedded broker")) == 1
    _assert_quiet(log)
    # Readiness and metrics said so while the broker was away, and never claimed otherwise after.
    first_down = during.ready.index(503)
    assert set(during.ready[first_down:]) == {503}, during.ready
    assert 0 in during.broker_up and during.outages[-1] == 1, (during.broker_up, during.outages)
    assert 200 not in after.ready, after.ready
    assert up_again == 1
    assert {f"fresh-{n:06d}" for n in range(100)} <= resolved
    assert log.count("[^_Worker]: Starting...") == 2, "one exit, one restart: no crash loop"


class CuttableProxy:
    """A TCP relay in front of the broker that can be cut (connections closed, new ones refused)
    and restored on the same port: an outage of a broker that keeps its data."""

    def __init__(self, target_port: int, port: int | None = None):
        self.target = ("127.0.0.1", target_port)
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None

    def start(self) -> CuttableProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def cut(self) -> None:
        with self._lock:
            doomed, self._sockets = self._sockets, set()
            listener, self._listener = self._listener, None
        for sock in [*doomed, *([listener] if listener else [])]:
            with contextlib.suppress(OSError):  # already closed by the other side
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass  # the connection was cut or closed: the relay ends with it
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):  # the other pump closed it first
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def test_a_broker_that_comes_back_with_its_data_is_reconnected_without_a_restart(tmp_path):
    broker_port = free_port()
    proxy = CuttableProxy(broker_port).start()
    broker = EmbeddedBroker(tmp_path / "broker.log", port=broker_port, advertised_port=proxy.port).start()
    try:
        settings = _settings(tmp_path, broker=broker.url)
        with LocalRun(settings, load_topology(settings.topology)) as run:
            run.stream_events([valid_event(n) for n in range(200)])
            run.finish_input(close_event_time=False, timeout=60)
            run.stream_events([valid_event(n) for n in range(200, 400)])
            proxy.cut()
            during = _sample_for(OUTAGE_S, run.web_port)
            proxy.start()
            back_at = time.monotonic()
            run.wait_ready(timeout=60)  # raises if the worker died
            recovery_s = time.monotonic() - back_at
            run.stream_events([valid_event(n) for n in range(400, 500)])
            run.finish_input(close_event_time=False, timeout=60)
            resolved = _resolved_ids(run)
            outages = metric(run.web_port, "stream_app_broker_outages_total")
            run.check_alive()
            log = run.worker_log.read_text()
    finally:
        proxy.cut()
        broker.stop()

    broker_lines = _lines(log, "unreachable", "reachable again", "lost the data")
    print(f"broker lines {len(broker_lines)}, ready again {recovery_s:.1f} s after; /ready {during.ready}")
    assert {f"ev-{n:06d}" for n in range(500)} <= resolved
    assert len(_lines(log, "unreachable")) in (1, 2) and len(_lines(log, "reachable again")) == 1
    assert len(broker_lines) <= 4, broker_lines
    assert not _lines(log, "lost the data")
    _assert_quiet(log)
    first_down = during.ready.index(503)
    assert set(during.ready[first_down:]) == {503}, during.ready
    assert 0 in during.broker_up and outages == 1
    assert log.count("[^_Worker]: Starting...") == 1, "the same process throughout"


def test_a_real_kafka_without_the_data_gets_one_clear_refusal(tmp_path):
    """`kafka://` (no embedded rebuild): the worker names the state directory and exits 3."""
    broker = EmbeddedBroker(tmp_path / "broker.log").start()
    try:
        settings = _settings(tmp_path, broker=broker.url.replace("tansu://", "kafka://"))
        topology = load_topology(settings.topology)
        with LocalRun(settings, topology) as run:
            run.stream_events([valid_event(n) for n in range(50)])
            run.finish_input(close_event_time=False, timeout=60)
        broker.stop()
        broker.start()  # the "cluster" lost everything
        before = run.worker_log.read_text()
        run.start_worker()
        worker = run.workers.pop(0)
        returncode = worker.wait(60)
        log = run.worker_log.read_text()[len(before) :]
        created = set(read_topics_names(broker.bootstrap))
    finally:
        broker.stop()
    refusals = _lines(log, "refusing to start")
    assert returncode == EXIT_BROKER_DATA_LOST, tail(run.worker_log)
    assert len(refusals) == 1 and str(settings.data_dir / "state") in refusals[0], log
    assert "Delete" in refusals[0] and "STREAM_APP_BROKER" in refusals[0]
    assert "Traceback" not in log
    assert not created & {spec.name for spec in topology.all_topics()}, "created topics on the wrong cluster"


def read_topics_names(bootstrap: str) -> list[str]:
    from confluent_kafka.admin import AdminClient

    return list(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


def test_tansu_takes_produces_to_a_topic_it_lacks_and_clear_ghost_topics_undoes_them(tmp_path):
    """Why `clear_ghost_topics` exists: a client with metadata from before a restart writes into
    the emptied broker, which acknowledges it; the topic created afterwards is haunted by it: the
    record is in it (when the client's metadata request auto-created the topic first) or new
    produces collide with the stored batch (when not). Fails once Tansu refuses such produces."""
    broker = EmbeddedBroker(tmp_path / "broker.log").start()
    topic, spec = "ghosts", TopicSpec(name="ghosts", partitions=4)

    async def produce(value: bytes) -> int:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000)
        await producer.start()
        try:
            return (await asyncio.wait_for(producer.send_and_wait(topic, value, partition=3), 20)).offset
        finally:
            await producer.stop()

    async def scenario() -> tuple[int, str, int]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"before", partition=3)
            broker.stop()
            broker.start()  # empty now
            ghost = await asyncio.wait_for(producer.send_and_wait(topic, b"ghost", partition=3), 20)
        finally:
            await producer.stop()
        ensure_topics(broker.bootstrap, [spec])
        try:
            first = f"stored at {await produce(b'new')}"
        except KafkaError as exc:
            first = type(exc).__name__
        clear_ghost_topics(broker.bootstrap, {topic: spec.partitions}, "ghosts-claim")
        ensure_topics(broker.bootstrap, [spec])
        return ghost.offset, first, await produce(b"new")

    try:
        ghost_offset, first, offset_after_clear = asyncio.run(scenario())
    finally:
        broker.stop()
    assert ghost_offset == 0, "the emptied broker acknowledged a produce to a topic it did not have"
    assert first in ("UnknownError", "stored at 1"), (
        f"first produce to the new topic: {first}; Tansu no longer keeps ghosts: drop clear_ghost_topics"
    )
    assert offset_after_clear == 0


def test_clear_ghost_topics_resets_what_the_app_writes_and_misshapen_inputs_once(tmp_path):
    broker = EmbeddedBroker(tmp_path / "broker.log").start()
    try:
        specs = [TopicSpec(name="in-auto", partitions=4), TopicSpec(name="in-ok", partitions=8)]
        specs.append(TopicSpec(name="out", partitions=8))
        ensure_topics(broker.bootstrap, specs)
        args = (broker.bootstrap, {"out": 8, "changelog": 2}, "claim", {"in-auto": 8, "in-ok": 8}, "grp")
        first = clear_ghost_topics(*args)
        left = set(read_topics_names(broker.bootstrap))
        second = clear_ghost_topics(*args)  # a peer rebuilding later leaves it all alone
    finally:
        broker.stop()
    assert sorted(first) == ["changelog", "in-auto", "out"]
    assert left == {"claim", "in-ok"}
    assert second == []
