"""A killed worker, started again, keeps its table state on the embedded broker.

This is where Tansu's end-offset defect bites (see `stream_app.io.tansu_transport`): Faust's table
recovery asks ListOffsets for the changelog's end and Tansu under-reports it. The `tansu://`
transport corrects it; the plain `kafka://` transport against the same broker shows the defect.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from confluent_kafka import Producer

from stream_app.config.topology import TopicSpec
from stream_app.io.kafka import ensure_topics, read_topics
from stream_app.io.processes import tail
from stream_app.io.tansu_transport import true_end_offsets
from stream_app.runner import LocalRun
from stream_app.worker.runtime import partition_for
from tests.integration.helpers import metric, valid_event, wait_committed

pytestmark = pytest.mark.integration


def test_tansu_lists_the_end_of_a_batch_wrongly_and_the_workaround_finds_it(broker):
    topic = f"hwm-{time.time_ns()}"
    ensure_topics(broker.bootstrap, [TopicSpec(name=topic, partitions=1)])
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 200})
    for n in range(10):
        producer.produce(topic, value=b"%d" % n, partition=0)
    producer.flush(10)

    async def offsets() -> tuple[int, int]:
        tp = TopicPartition(topic, 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
        await consumer.start()
        try:
            listed = (await consumer.end_offsets([tp]))[tp]
        finally:
            await consumer.stop()
        corrected = await true_end_offsets([broker.bootstrap], {tp: listed})
        return listed, corrected[tp]

    listed, corrected = asyncio.run(offsets())
    assert listed == 1, "the defect is gone: ListOffsets now answers the true end; drop the workaround"
    assert corrected == 10


def _restart_scenario(run: LocalRun, wipe_state: bool) -> list[dict]:
    topo = run.topology
    first = [valid_event(n) for n in range(300)]
    second = [valid_event(n) for n in range(300, 400)]
    run.stream_events(first)
    run.finish_input(close_event_time=False, timeout=120)
    wait_committed(
        run.bootstrap,
        run.settings.app_id,
        [topo.topics.touchpoints.name, topo.internal_topics.events_by_id.name],
    )
    run.kill_worker()
    if wipe_state:
        shutil.rmtree(run.run_dir / "state")
    run.start_worker()  # events keep coming while it starts and restores its tables
    # `first` again: every one is a duplicate now. `again`: the same people with a new device, so
    # the linker must find them in its restored tables rather than create them anew.
    again = [
        valid_event(n, event_id=f"again-{n:06d}", identities={"member_id": f"M{n:07d}", "device_id": f"d{n}"})
        for n in range(300)
    ]
    run.stream_events(first + second + again)
    run.finish_input(close_event_time=False, timeout=120)
    name = topo.topics.resolved.name
    # Read until the topic stops growing: the answer must not depend on when we looked.
    seen: list[dict] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = [orjson.loads(r.value) for r in read_topics(run.bootstrap, [name])[name]]
        if len({e["event_id"] for e in now}) >= 700 or (seen and len(now) == len(seen)):
            return now
        seen = now
        time.sleep(2)
    return seen


@pytest.mark.parametrize("wipe_state", [False, True], ids=["same-state-dir", "from-changelog"])
def test_killed_worker_keeps_its_table_state(env, wipe_state):
    with env.local_run() as run:
        resolved = _restart_scenario(run, wipe_state)
        counters = {
            name: metric(run.web_port, f"stream_app_{name}_total")
            for name in ("messages_in", "events_normalized", "events_duplicate", "identity_fast_path")
        }
        created = metric(run.web_port, "stream_app_identity_new_people_total")
        log = run.worker_log.read_text()
    ids = {e["event_id"] for e in resolved}
    expected = {f"{p}-{n:06d}" for p, r in (("ev", range(400)), ("again", range(300))) for n in r}
    signs = ("ERROR", "Traceback", "crashed", "_on_published error")
    errors = [line for line in log.splitlines() if any(sign in line for sign in signs)]
    missing, unexpected = sorted(expected - ids), sorted(ids - expected)
    assert ids == expected, (
        f"missing {len(missing)}: {missing[:10]}, unexpected {unexpected[:10]}; after the restart: "
        f"{counters}, people created {created}; worker errors: {errors[:10]}"
    )
    counts = Counter(e["event_id"] for e in resolved)
    duplicated = {i: c for i, c in counts.items() if c > 1}
    assert not duplicated, f"state lost: duplicates passed the de-duplicator: {duplicated}"
    one_id = {e["event_id"]: e["one_id"] for e in resolved}
    assert all(one_id[f"again-{n:06d}"] == one_id[f"ev-{n:06d}"] for n in range(300))
    assert created == 100, f"identity state lost: {created} people created after the restart, not 100"
    assert "ConsistencyError" not in log
    assert "tansu workaround: corrected end offsets" in log


def _orders(people: range, orders: Callable[[int], int], day: str, tag: str) -> list[bytes]:
    """`orders(n)` order_paid events of person n (member M{n}) on `day`."""
    return [
        valid_event(
            n,
            event_id=f"{tag}{k}-{n:06d}",
            event_type="order_paid",
            occurred_at=f"{day}T{10 + k}:00:00+08:00",
        )
        for n in people
        for k in range(orders(n))
    ]


def _person_state_records(run: LocalRun) -> list:
    name = f"{run.settings.app_id}-person-state-changelog"
    return read_topics(run.bootstrap, [name])[name]


def test_person_state_is_in_the_changelog_partition_of_its_person_and_restored_from_it(env):
    """The person stage writes each person's state once a batch, after the batch (`BatchState`):
    it must still land in the changelog partition of the person's own partition (where
    person-events routes the one_id), or a restarted worker restores it into the wrong
    partition, or not at all. Restarted without its state directory, the worker's order counts
    span both runs."""
    topo = env.topology
    partitions = topo.internal_topics.person_events.partitions
    first = _orders(range(60), lambda n: 1 + n % 3, "2026-11-22", "a")
    second = _orders(range(40), lambda n: 1, "2026-11-23", "b")
    expected = Counter(orjson.loads(line)["identities"]["member_id"] for line in first + second)
    with env.local_run() as run:
        run.stream_events(first)
        run.finish_input(close_event_time=True, timeout=120)
        wait_committed(
            run.bootstrap,
            run.settings.app_id,
            [
                topo.topics.touchpoints.name,
                topo.internal_topics.events_by_id.name,
                topo.internal_topics.person_events.name,
            ],
        )
        before = _person_state_records(run)
        run.kill_worker()
        shutil.rmtree(run.run_dir / "state")
        run.start_worker()
        run.stream_events(second)
        run.finish_input(close_event_time=True, timeout=120)
        records = _person_state_records(run)
        resolved = [
            orjson.loads(r.value)
            for r in read_topics(run.bootstrap, [topo.topics.resolved.name])[topo.topics.resolved.name]
        ]
        one_id = {e["identities"]["member_id"]: e["one_id"] for e in resolved}
        counts = {}
        for member, person in one_id.items():
            url = f"http://127.0.0.1:{run.web_port}/profiles/{person}"
            counts[member] = orjson.loads(urllib.request.urlopen(url, timeout=10).read())["tags"][
                "order_count"
            ]
    assert len(before) >= 60 and len(records) > len(before)
    misplaced = [
        (r.key, r.partition)
        for r in records
        if r.partition != partition_for(orjson.loads(r.key).encode(), partitions)
    ]
    assert not misplaced, f"person state in another partition's changelog: {misplaced[:5]}"
    assert set(one_id) == set(expected) and len(set(one_id.values())) == 60
    assert counts == dict(expected), "person state lost or counted twice across the restart"


def test_plain_kafka_transport_shows_the_defect(env):
    """Negative control: without the workaround the restarted worker fails recovery."""
    settings = env.settings.model_copy(update={"broker": env.settings.broker.replace("tansu://", "kafka://")})
    with LocalRun(settings, env.topology) as run:
        with pytest.raises(Exception) as failure:
            _restart_scenario(run, wipe_state=False)
        log = run.worker_log.read_text()
    assert "ConsistencyError" in log, f"{failure.value}\n{tail(run.worker_log)}"


def test_an_invalid_input_is_on_the_dlq_once_across_a_crash(env):
    """A worker killed while invalid input flows has written DLQ records for inputs whose offsets
    it had not committed yet; it reads them again after the restart: each must be recorded once."""
    topo = env.topology
    invalid = [b'{"event_id": "bad-%d", "truncated' % n for n in range(1000)]
    with env.local_run() as run:
        producing = threading.Thread(target=_trickle, args=(run, invalid, 0.004))
        producing.start()
        time.sleep(2.0)  # mid-stream, between two of the worker's offset commits
        run.kill_worker()
        run.start_worker()
        producing.join()
        run.wait_ready()
        run.finish_input(close_event_time=False, timeout=120)
        dlq = topo.topics.dlq.name
        records = [orjson.loads(r.value) for r in read_topics(run.bootstrap, [dlq])[dlq]]
        repeats = metric(run.web_port, "stream_app_dlq_repeats_skipped_total")
    sources = Counter((r["source"]["partition"], r["source"]["offset"]) for r in records)
    twice = {source: n for source, n in sources.items() if n > 1}
    assert len(sources) == len(invalid), f"{len(invalid) - len(sources)} invalid inputs not on the DLQ"
    assert not twice, f"{len(twice)} invalid inputs on the DLQ more than once ({repeats} skipped)"


def _trickle(run: LocalRun, lines: list[bytes], pause_s: float) -> None:
    """Produce `lines` at a steady pace, each on the broker before the next."""
    producer = Producer({"bootstrap.servers": run.bootstrap, "linger.ms": 0})
    for line in lines:
        producer.produce(run.topology.topics.touchpoints.name, value=line)
        producer.poll(0)
        time.sleep(pause_s)
    assert producer.flush(30) == 0
