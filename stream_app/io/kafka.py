"""Kafka at the edges with confluent-kafka: topic creation, producing files, reading topics to the end.

Every client here takes `security` (`STREAM_APP_KAFKA_*`; None: plaintext) through
`stream_app.io.security.confluent_config`.

Reading "to the end" uses librdkafka's partition-EOF events, which follow the Fetch high watermark;
that stays correct on the embedded Tansu broker, whose ListOffsets(latest) is not (see
`tansu_transport`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from stream_app.config.settings import KafkaSecurity
from stream_app.config.topology import TopicSpec
from stream_app.control import CONTROL_HEADER, Marker, StageDone
from stream_app.io.security import confluent_config

log = logging.getLogger(__name__)
LIBRDKAFKA_LOG = logging.getLogger("stream_app.librdkafka")
"""librdkafka's own log lines (confluent-kafka clients), through Python logging: without it they
go raw to stderr, and a worker's JSON log got a line that was not JSON. Warnings and worse only."""
LIBRDKAFKA_LOG.setLevel(logging.WARNING)


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def is_control(self) -> bool:
        return any(key == CONTROL_HEADER for key, _ in self.headers)


class KafkaToolError(RuntimeError):
    pass


def client_config(bootstrap: str, security: KafkaSecurity | None, **conf: Any) -> dict[str, Any]:
    """`conf` for a confluent-kafka client of `bootstrap`, with the security settings."""
    return {"bootstrap.servers": bootstrap, "logger": LIBRDKAFKA_LOG, **confluent_config(security), **conf}


def check_broker(bootstrap: str, security: KafkaSecurity | None = None, timeout: float = 5.0) -> None:
    """KafkaToolError, one line with librdkafka's last complaint, unless a broker answers in time.

    Quiet meanwhile: librdkafka would print each failed connection attempt to stderr.
    """
    complaints: list[str] = []
    admin = AdminClient(
        client_config(bootstrap, security, log_level=0, error_cb=lambda err: complaints.append(err.str()))
    )
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        admin.poll(0)  # delivers the complaints (error_cb) gathered meanwhile
        err = exc.args[0] if exc.args else None
        reason = complaints[0] if complaints else err.str() if isinstance(err, KafkaError) else str(exc)
        reason = re.sub(r" \(after \d+ms in state \w+\)$", "", reason)
        raise KafkaToolError(
            f"no Kafka broker answers at {bootstrap} within {timeout:.0f}s: {reason}"
        ) from None


def ensure_topics(
    bootstrap: str,
    specs: Iterable[TopicSpec],
    replication: int = 1,
    security: KafkaSecurity | None = None,
) -> list[str]:
    """Create the topics that do not exist yet, with their `config`; returns the names created.

    An existing topic is left as it is, but one whose config differs from its spec's (say an
    identity map created before it had to be compacted) is named in a warning.
    """
    admin = AdminClient(client_config(bootstrap, security))
    existing = admin.list_topics(timeout=10).topics
    specs = list(specs)
    for problem in _config_differences(admin, [s for s in specs if s.name in existing and s.config]):
        log.warning("%s", problem)
    wanted = [s for s in specs if s.name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                s.name, num_partitions=s.partitions, replication_factor=replication, config=dict(s.config)
            )
            for s in wanted
        ],
        operation_timeout=10,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except Exception as exc:  # noqa: BLE001 - a race with another creator is fine
            err = exc.args[0] if exc.args else None
            if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise KafkaToolError(f"cannot create topic {name}: {exc}") from exc
    return created


def _config_differences(admin: AdminClient, specs: list[TopicSpec]) -> list[str]:
    if not specs:
        return []
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs])
    found = {resource.name: future.result(timeout=10) for resource, future in futures.items()}
    problems = []
    for spec in specs:
        for key, wanted in sorted(spec.config.items()):
            entry = found[spec.name].get(key)
            actual = entry.value if entry is not None else "unset"
            if actual != wanted:
                problems.append(
                    f"topic {spec.name} has {key}={actual}, not {wanted}: stream_app leaves existing topics "
                    f"as they are; set it with kafka-configs.sh --alter --entity-type topics "
                    f"--entity-name {spec.name} --add-config {key}={wanted}"
                )
    return problems


def require_topic(bootstrap: str, topic: str, security: KafkaSecurity | None = None) -> int:
    """The partition count of `topic`; KafkaToolError if it does not exist."""
    # All topics, not just `topic`: asking for one by name auto-creates it on some brokers (Tansu).
    admin = AdminClient(client_config(bootstrap, security))
    metadata = admin.list_topics(timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise KafkaToolError(
            f"topic {topic!r} does not exist (a worker creates the topology's topics at start)"
        )
    return len(metadata.partitions)


def make_producer(bootstrap: str, security: KafkaSecurity | None = None, **extra: object) -> Producer:
    conf = client_config(
        bootstrap, security, **{"linger.ms": 5, "enable.idempotence": True, "compression.type": "none"}
    )
    conf.update(extra)
    return Producer(conf)


def produce_values(
    producer: Producer,
    topic: str,
    values: Iterable[bytes],
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Produce each value (no key); returns the count. Fails if any delivery failed."""
    errors: list[str] = []

    def delivered(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    count = 0
    for value in values:
        while True:
            try:
                producer.produce(topic, value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if on_sent is not None:
            on_sent(count)
        producer.poll(0)
    _flush(producer)
    if errors:
        raise KafkaToolError(f"{len(errors)} deliveries failed, first: {errors[0]}")
    return count


def _flush(producer: Producer, timeout: float = 120.0) -> None:
    """Wait until every message is delivered: a marker must never overtake the events before it."""
    remaining = producer.flush(timeout)
    if remaining:
        raise KafkaToolError(f"{remaining} messages still undelivered after {timeout:.0f}s")


def send_markers(
    producer: Producer, spec: TopicSpec, run: str, close_event_time: bool, stage: str = ""
) -> None:
    """A marker to every partition of `spec` (for `stage`, else its first reader), after everything
    produced so far."""
    marker = Marker(run, close_event_time, from_partition=0, sources=1, stage=stage).encode()
    for partition in range(spec.partitions):
        producer.produce(spec.name, value=marker, partition=partition, headers=[(CONTROL_HEADER, b"1")])
    _flush(producer)


def _consumer(bootstrap: str, security: KafkaSecurity | None, group: str | None = None) -> Consumer:
    return Consumer(
        client_config(
            bootstrap,
            security,
            **{
                "group.id": group or f"stream-app-tool-{time.time_ns()}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            },
        )
    )


def iter_topics(
    bootstrap: str,
    topics: Iterable[str],
    *,
    from_beginning: bool = True,
    until_end: bool = True,
    idle_timeout: float = 10.0,
    security: KafkaSecurity | None = None,
) -> Iterator[Record]:
    """Records of every partition of `topics`, read by one consumer.

    `until_end`: stop once every partition has reached its end (as of reaching it). Otherwise
    follow the topics until `idle_timeout` seconds pass without a record.
    """
    names = list(topics)
    consumer = _consumer(bootstrap, security)
    try:
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        partitions = []
        existing = consumer.list_topics(timeout=10).topics  # by name would auto-create on Tansu
        for name in names:
            metadata = existing.get(name)
            if metadata is None or metadata.error is not None:
                raise KafkaToolError(f"topic {name!r} does not exist")
            partitions += [TopicPartition(name, p, start) for p in metadata.partitions]
        consumer.assign(partitions)
        remaining = {(p.topic, p.partition) for p in partitions}
        last_activity = time.monotonic()
        while True:
            if until_end and not remaining:
                return
            if time.monotonic() - last_activity > idle_timeout:
                if until_end:
                    raise KafkaToolError(f"timed out reading to the end of {sorted(remaining)}")
                return
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            last_activity = time.monotonic()
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    remaining.discard((msg.topic(), msg.partition()))
                    continue
                raise KafkaToolError(f"reading {msg.topic()}: {msg.error()}")
            yield Record(
                msg.topic(),
                msg.partition(),
                msg.offset(),
                msg.key(),
                msg.value(),
                tuple(msg.headers() or ()),
            )
    finally:
        consumer.close()


def read_topics(
    bootstrap: str,
    topics: Iterable[str],
    idle_timeout: float = 10.0,
    security: KafkaSecurity | None = None,
) -> dict[str, list[Record]]:
    """Every record now in each of `topics`, control markers left out, in partition order."""
    names = list(topics)
    found: dict[str, list[Record]] = {name: [] for name in names}
    for record in iter_topics(bootstrap, names, idle_timeout=idle_timeout, security=security):
        if not record.is_control:
            found[record.topic].append(record)
    for records in found.values():
        records.sort(key=lambda r: (r.partition, r.offset))
    return found


def wait_for_stage_done(
    bootstrap: str,
    control_topic: str,
    run: str,
    partitions: int,
    timeout: float,
    still_alive: Callable[[], None] = lambda: None,
    security: KafkaSecurity | None = None,
) -> list[StageDone]:
    """Block until every partition of the last stage reported `run` done (or raise on timeout);
    their reports, one per partition.

    `still_alive` is called between polls and raises if a process the run depends on has died.
    """
    consumer = _consumer(bootstrap, security)
    try:
        consumer.assign([TopicPartition(control_topic, 0, OFFSET_BEGINNING)])
        done: dict[int, StageDone] = {}
        deadline = time.monotonic() + timeout
        while len(done) < partitions:
            if time.monotonic() > deadline:
                raise KafkaToolError(
                    f"run {run}: only {len(done)}/{partitions} partitions done after {timeout:.0f}s"
                )
            still_alive()
            msg = consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            report = StageDone.decode(msg.value())
            if report.run == run:
                done.setdefault(report.partition, report)  # a redelivered report changes nothing
    finally:
        consumer.close()
    return list(done.values())
