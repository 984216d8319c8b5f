"""The broker-based rows, each on its own fresh topics of one embedded broker: the raw ceiling
(confluent-kafka), the Faust ceiling (`bench.faust_ceiling` in its own process) and the full
pipeline (`LocalRun`, cold people then warm people).

Only public pieces of stream_app are used: `LocalRun`, `EmbeddedBroker`, the `io.kafka` helpers,
`Settings`, `faust_settings` (inside the ceiling's worker) and the topology loader.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.core import again
from bench.procstat import reset_peak, tree_size, vm_kib
from stream_app.config import Settings, load_topology
from stream_app.config.topology import TopicSpec
from stream_app.io.broker import free_port
from stream_app.io.kafka import ensure_topics, make_producer, produce_values
from stream_app.io.processes import spawn, stop, tail
from stream_app.runner import LocalRun

REPO = Path(__file__).resolve().parents[1]
INPUT_PARTITIONS = 8
WARMUP = 50
"""Events sent and waited for before the clock starts: the worker has joined and is ready."""
PIPELINE_PROBE = 10_000
"""Events the first pipeline row sends to learn its rate before it plans its size: a 2,000-event
probe ended in ~4 s of which ~1 s was processing (the rest a bounded run's end), and the plan then
kept every row at a few thousand events, too few to show throughput (on 30,000 events the same
tree ran at 1,748 and 2,987 events/s cold and warm, against 613 and 811 on 3,854)."""


class BenchError(RuntimeError):
    pass


@dataclass
class Timed:
    events: int
    seconds: float
    peak_rss_kib: int = 0
    """The worker's peak resident set (VmHWM) over this phase; the largest, with several workers."""
    peaks_kib: list[int] = field(default_factory=list)
    """Each worker's peak over this phase, in worker order."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def isolated_topology(tmp: Path, tag: str) -> Path:
    """topology.yaml with every topic name prefixed: each row gets topics of its own."""
    data = yaml.safe_load((REPO / "topology.yaml").read_text())
    for section in ("topics", "internal_topics"):
        for spec in data[section].values():
            spec["name"] = f"{tag}-{spec['name']}"
    path = tmp / f"{tag}-topology.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def bench_settings(broker_url: str, topology: Path, data_dir: Path, app_id: str) -> Settings:
    return Settings(
        broker=broker_url,
        topology=topology,
        data_dir=data_dir,
        app_id=app_id,
        web_port=free_port(),
        pii_key="bench",
        fast_rebalance=True,
        log_level="warning",
    )


def delete_topics(bootstrap: str, prefixes: tuple[str, ...]) -> None:
    """Drop a row's topics, so the broker's memory does not carry it into the next row."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefixes)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result(60)


# -- raw ceiling -------------------------------------------------------------------------------


def raw_ceiling(bootstrap: str, lines: list[bytes]) -> Timed:
    """consume → orjson.loads → orjson.dumps → produce, over a pre-filled 8-partition topic, with
    the project's producer settings; the clock runs from the first poll to the last delivery."""
    tag = f"raw{uuid.uuid4().hex[:6]}"
    source, sink = f"{tag}-in", f"{tag}-out"
    ensure_topics(bootstrap, [TopicSpec(name=n, partitions=INPUT_PARTITIONS) for n in (source, sink)])
    produce_values(make_producer(bootstrap), source, lines)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": tag,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    producer = make_producer(bootstrap)
    consumer.assign([TopicPartition(source, p, OFFSET_BEGINNING) for p in range(INPUT_PARTITIONS)])
    loads, dumps, produce, poll = orjson.loads, orjson.dumps, producer.produce, producer.poll
    seen, started = 0, time.perf_counter()
    deadline = time.monotonic() + 120
    try:
        while seen < len(lines):
            if time.monotonic() > deadline:
                raise BenchError(f"raw ceiling: {seen}/{len(lines)} records after 120 s")
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    continue
                value = msg.value()
                # Malformed input goes out as it came, as a DLQ record would.
                with contextlib.suppress(orjson.JSONDecodeError):
                    value = dumps(loads(value))
                while True:
                    try:
                        produce(sink, value)
                        break
                    except BufferError:
                        poll(0.01)
                seen += 1
            poll(0)
        producer.flush(60)
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
        delete_topics(bootstrap, (tag,))
    return Timed(seen, elapsed)


# -- Faust ceiling -----------------------------------------------------------------------------


def faust_ceiling(broker_url: str, bootstrap: str, tmp: Path, lines: list[bytes]) -> Timed:
    """A Faust worker with the pipeline's Faust settings, `take(2000)` and count; the clock runs
    from the first event produced to the worker's report of the last one."""
    tag = f"fc{uuid.uuid4().hex[:6]}"
    topology_path = isolated_topology(tmp, tag)
    topic = load_topology(topology_path).topics.touchpoints.name
    ensure_topics(bootstrap, [TopicSpec(name=topic, partitions=INPUT_PARTITIONS)])
    data_dir = tmp / tag
    settings = bench_settings(broker_url, topology_path, data_dir, tag)
    report = data_dir / "report.json"
    env = dict(os.environ)
    env.update(
        STREAM_APP_BROKER=broker_url,
        STREAM_APP_TOPOLOGY=str(topology_path),
        STREAM_APP_DATA_DIR=str(data_dir),
        STREAM_APP_APP_ID=tag,
        STREAM_APP_WEB_PORT=str(settings.web_port),
        STREAM_APP_LOG_LEVEL=settings.log_level,
        STREAM_APP_FAST_REBALANCE="1",
        STREAM_APP_PII_KEY="bench",
        BENCH_TOPIC=topic,
        BENCH_PARTITIONS=str(INPUT_PARTITIONS),
        BENCH_WARMUP=str(WARMUP),
        BENCH_EXPECT=str(WARMUP + len(lines)),
        BENCH_REPORT=str(report),
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
    )
    log = data_dir / "worker.log"
    worker = spawn([sys.executable, "-m", "bench.faust_ceiling"], log, env)
    try:
        producer = make_producer(bootstrap)
        produce_values(producer, topic, lines[:WARMUP])
        _wait_report(report, WARMUP, worker, log, timeout=120)
        started = time.time()
        produce_values(producer, topic, lines)
        done = _wait_report(report, WARMUP + len(lines), worker, log, timeout=600)
        peak = vm_kib(worker.pid)
    finally:
        stop(worker)
        delete_topics(bootstrap, (tag,))
    return Timed(len(lines), done - started, peak)


def _wait_report(
    report: Path, seen: int, worker: subprocess.Popen[bytes], log: Path, timeout: float
) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise BenchError(f"Faust ceiling worker exited with {worker.returncode}:\n{tail(log)}")
        try:
            state = orjson.loads(report.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            state = {"seen": 0}
        if state["seen"] >= seen:
            return float(state["t"])
        time.sleep(0.05)
    raise BenchError(f"Faust ceiling: fewer than {seen} records after {timeout:.0f}s:\n{tail(log)}")


# -- the pipeline --------------------------------------------------------------------------------


@dataclass
class PipelineRun:
    cold: Timed
    warm: Timed
    state_bytes: int
    people: int
    profile: Path | None = None

    @property
    def state_bytes_per_person(self) -> float:
        return self.state_bytes / self.people if self.people else 0.0


@dataclass
class PipelinePlan:
    """How many events the pipeline rows take: all of them, or what fits the time left."""

    events: int
    probe: int = 0
    notes: list[str] = field(default_factory=list)


def pipeline(
    broker_url: str,
    bootstrap: str,
    tmp: Path,
    lines: list[bytes],
    people_of: Callable[[list[bytes]], int],
    plan: Callable[[float], int] | None = None,
    profile: Path | None = None,
) -> PipelineRun:
    """The whole topology on one worker: cold people (every person new, through the linker), then
    the same people again under new event ids (the fast path), each until every event is fully
    processed (`finish_input`). `plan(cold_rate_of_a_probe) -> events`: decide how many events fit
    (the first run); otherwise all of `lines`. `profile`: py-spy records the warm phase there."""
    tag = f"pl{uuid.uuid4().hex[:6]}"
    topology_path = isolated_topology(tmp, tag)
    settings = bench_settings(broker_url, topology_path, tmp / tag, tag)
    topology = load_topology(topology_path)
    with LocalRun(settings, topology) as run:
        try:
            cold, warm, lines = cold_then_warm(run, lines, plan, profile)
        finally:
            run.stop()
            delete_topics(bootstrap, (tag,))
    state = tree_size(run.worker_dir(0), skip_suffixes=(".log",))
    return PipelineRun(cold, warm, state, people_of(lines), profile)


def cold_then_warm(
    run: LocalRun,
    lines: list[bytes],
    plan: Callable[[float], int] | None = None,
    profile: Path | None = None,
) -> tuple[Timed, Timed, list[bytes]]:
    """On a started `LocalRun` (one worker or several, all ready): `WARMUP` events and
    `finish_input` first, then the cold phase and the warm phase, each timed from its first event
    produced to `finish_input` returning, the phases' lines spread over the input partitions
    (`stream_spread`). Each worker's peak RSS is read after each phase (VmHWM,
    started again between them). Returns the phases and the lines the cold phase took."""
    pids = [run.workers[index].pid for index in sorted(run.workers)]
    warming = time.perf_counter()
    run.stream_events(lines[:WARMUP])
    run.finish_input(close_event_time=False, timeout=120)
    started = time.perf_counter()
    # A bounded run's end (markers through every stage, the producer flushed) costs seconds of its
    # own whatever the input: the warm-up round is nearly all of it, so the probe's rate leaves it
    # out (else a short probe reads as a slow pipeline and the plan takes almost nothing).
    end_of_run = started - warming
    if plan is not None:
        probe = min(len(lines), WARMUP + PIPELINE_PROBE)
        stream_spread(run, lines[WARMUP:probe])
        run.finish_input(close_event_time=False, timeout=600)
        rate = (probe - WARMUP) / max(0.2, time.perf_counter() - started - end_of_run)
        lines = lines[: max(probe, min(len(lines), plan(rate)))]
        stream_spread(run, lines[probe:])
    else:
        stream_spread(run, lines[WARMUP:])
    run.finish_input(close_event_time=False, timeout=900)
    cold = Timed(len(lines) - WARMUP, time.perf_counter() - started)
    _read_peaks(cold, pids)
    known = again(lines, "-again")
    spy = _py_spy(pids[0], profile) if profile is not None else None
    started = time.perf_counter()
    stream_spread(run, known)
    run.finish_input(close_event_time=False, timeout=900)
    warm = Timed(len(known), time.perf_counter() - started)
    if spy is not None:
        _stop_spy(spy)
    _read_peaks(warm, pids)
    return cold, warm, lines


def stream_spread(run: LocalRun, lines: list[bytes]) -> None:
    """Produce `lines` to the input topic round-robin over its partitions (no key, as
    `LocalRun.stream_events`). Its producer places keyless records in sticky batches (librdkafka
    keeps one partition for ~10 ms), so a burst of a few thousand lines lands in one or two of the
    eight partitions, and one of two workers would get nearly all of it (seen: 1% / 99%); a live
    feed, spread over time and producers, fills every partition, and so does this."""
    spec = run.topology.topics.touchpoints
    producer = make_producer(run.bootstrap)
    errors: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    for n, line in enumerate(lines):
        while True:
            try:
                producer.produce(spec.name, value=line, partition=n % spec.partitions, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60) or errors:
        raise BenchError(f"input not delivered: {len(producer)} queued, errors {errors[:3]}")


def _read_peaks(phase: Timed, pids: list[int]) -> None:
    """Each worker's VmHWM into `phase`, then started again from its current RSS for the next phase
    (if the kernel refuses, the next phase's peak is the peak since the worker started)."""
    phase.peaks_kib = [vm_kib(pid) for pid in pids]
    phase.peak_rss_kib = max(phase.peaks_kib, default=0)
    for pid in pids:
        reset_peak(pid)


def _stop_spy(spy: subprocess.Popen[bytes]) -> None:
    """SIGINT: py-spy writes its file on an interrupt, not on SIGTERM."""
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(30)
    except subprocess.TimeoutExpired:
        stop(spy)


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy (not a dependency: `pip install py-spy`) sampling the worker into a raw
    (collapsed-stack) file until stopped."""
    binary = Path(sys.executable).with_name("py-spy")
    if not binary.exists():
        raise BenchError("--profile needs py-spy in the venv: .venv/bin/pip install py-spy")
    out.parent.mkdir(parents=True, exist_ok=True)
    return spawn(
        [str(binary), "record", "--pid", str(pid), "--format", "raw", "--output", str(out)]
        + ["--nolineno", "--nonblocking"],
        out.with_suffix(".log"),
    )
