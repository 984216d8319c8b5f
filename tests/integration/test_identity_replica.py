"""The identifier-map replica on the embedded broker: it resumes from its stored offsets after a
restart, starts over when the topic no longer holds what it was built from, and the worker creates
the identity map compacted.

The oracle for what the replica must answer is the plain sequence of records produced: the last
owner written for each key wins (what a compacted topic keeps).
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from stream_app.config.topology import TopicSpec
from stream_app.io.kafka import ensure_topics, read_topics
from stream_app.worker.identity_replica import REPLICA_DIR, IdentityMapReplica
from tests.integration.helpers import end_offsets, metric, valid_event, wait_committed

pytestmark = pytest.mark.integration

PARTITIONS = 3


def _produce(bootstrap: str, topic: str, records: list[tuple[int, str, str]]) -> None:
    """(partition, identifier key, one_id) each, in order; a few records per batch, as the linker's are."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for partition, key, owner in records:
        producer.produce(topic, key=key.encode(), value=owner.encode(), partition=partition)
    assert producer.flush(30) == 0


def _records(start: int, stop: int, owner: Callable[[int], str] = lambda n: f"p_{n:016x}") -> list:
    return [(n % PARTITIONS, f"member_id:M{n:07d}", owner(n)) for n in range(start, stop)]


def _latest(*batches: list) -> dict[str, str]:
    latest: dict[str, str] = {}
    for batch in batches:
        for _, key, owner in batch:
            latest[key] = owner
    return latest


def _follow(replica: IdentityMapReplica, until: Callable[[], bool], timeout: float = 30.0) -> None:
    """Run the replica until `until()` holds, then stop it as Faust would (cancel the task)."""

    async def main() -> None:
        task = asyncio.create_task(replica.run())
        deadline = time.monotonic() + timeout
        try:
            while not until():
                if task.done():
                    task.result()  # raises what the replica died of
                if time.monotonic() > deadline:
                    raise AssertionError(f"replica at {replica.metrics.offset._value.get()} after {timeout}s")
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics([topic]).values():
        future.result(10)
    deadline = time.monotonic() + 10
    while topic in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, f"{topic} not deleted"
        time.sleep(0.1)


def _replica(broker, topic: str, path: Path) -> IdentityMapReplica:
    return IdentityMapReplica([broker.bootstrap], topic, PARTITIONS, path, 8 * 2**20)


def _answers(replica: IdentityMapReplica, keys) -> dict[str, str | None]:
    """What a stopped replica's store says (opened again read-only for the look-ups)."""
    replica.store.open()
    try:
        return {key: (v.decode() if (v := replica.store.get(key.encode())) else None) for key in keys}
    finally:
        replica.store.close()


def _at(replica: IdentityMapReplica, total: int) -> Callable[[], bool]:
    return lambda: replica.metrics.offset._value.get() == total


def test_a_restarted_replica_reads_only_what_came_after_it_stopped(broker, tmp_path):
    topic = f"idm-resume-{time.time_ns()}"
    ensure_topics(broker.bootstrap, [TopicSpec(name=topic, partitions=PARTITIONS)])
    path = tmp_path / REPLICA_DIR
    first = _records(0, 300)
    _produce(broker.bootstrap, topic, first)
    before = _replica(broker, topic, path)
    _follow(before, _at(before, len(first)))
    assert before.records == len(first)

    # Later: new people, and some old identifiers re-owned (a merge moved them).
    second = _records(300, 350) + _records(0, 20, owner=lambda n: f"p_{n + 1:016x}")
    _produce(broker.bootstrap, topic, second)
    after = _replica(broker, topic, path)
    _follow(after, _at(after, len(first) + len(second)))

    assert after.records == len(second), "read from the beginning again, not from its stored offsets"
    assert after.metrics.start_overs._value.get() == 0
    expected = _latest(first, second)
    assert _answers(after, expected) == expected


def test_a_topic_created_again_makes_the_replica_start_over(broker, tmp_path):
    topic = f"idm-recreated-{time.time_ns()}"
    spec = TopicSpec(name=topic, partitions=PARTITIONS)
    ensure_topics(broker.bootstrap, [spec])
    path = tmp_path / REPLICA_DIR
    old = _records(0, 300)
    _produce(broker.bootstrap, topic, old)
    before = _replica(broker, topic, path)
    _follow(before, _at(before, len(old)))

    # The embedded broker rebuilt (or the topic deleted and made again): fewer records than the
    # store has read, owned by other one_ids.
    _delete_topic(broker.bootstrap, topic)
    ensure_topics(broker.bootstrap, [spec])
    new = _records(1000, 1030, owner=lambda n: f"p_new{n:013x}")
    _produce(broker.bootstrap, topic, new)
    after = _replica(broker, topic, path)
    _follow(after, _at(after, len(new)))

    assert after.metrics.start_overs._value.get() == 1
    assert after.records == len(new)
    expected = {**{key: None for _, key, _ in old}, **_latest(new)}
    assert _answers(after, expected) == expected, "owners from the topic's previous life answered"


def test_the_worker_creates_the_identity_map_compacted(env, broker):
    spec = env.topology.internal_topics.identity_map
    ensure_topics(broker.bootstrap, env.topology.all_topics())
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, spec.name)])
    configs = next(iter(futures.values())).result(timeout=10)
    assert configs["cleanup.policy"].value == "compact"
    other = env.topology.internal_topics.person_events.name
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, other)])
    plain = next(iter(futures.values())).result(timeout=10).get("cleanup.policy")  # Tansu omits defaults
    assert plain is None or plain.value == "delete"


def test_an_existing_identity_map_that_is_not_compacted_is_named_in_a_warning(env, broker, caplog):
    spec = env.topology.internal_topics.identity_map
    ensure_topics(broker.bootstrap, [TopicSpec(name=spec.name, partitions=spec.partitions)])  # as before
    with caplog.at_level("WARNING", logger="stream_app.io.kafka"):
        assert ensure_topics(broker.bootstrap, env.topology.all_topics()) != []  # the others created
    warnings = [r.getMessage() for r in caplog.records if spec.name in r.getMessage()]
    # A real Kafka reports its default (delete); Tansu reports nothing for a config never set.
    assert len(warnings) == 1, warnings
    assert any(f"cleanup.policy={was}, not compact" in warnings[0] for was in ("delete", "unset")), warnings


def _profile(port: int, person: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/profiles/{person}", timeout=10) as answer:
        return orjson.loads(answer.read())


def test_a_restarted_worker_resumes_its_replica_and_still_knows_everyone(env):
    topo = env.topology
    identity_map = topo.internal_topics.identity_map.name
    with env.local_run() as run:
        first = [valid_event(n) for n in range(200)]
        run.stream_events(first)
        run.finish_input(close_event_time=False, timeout=120)
        wait_committed(
            run.bootstrap,
            run.settings.app_id,
            [
                topo.topics.touchpoints.name,
                topo.internal_topics.events_by_id.name,
                topo.internal_topics.linker.name,
            ],
        )
        built = sum(end_offsets(run.bootstrap, [identity_map]).values())
        _wait_metric(run, "stream_app_identity_replica_offset", built)
        run.kill_worker()
        run.start_worker()
        run.wait_ready()

        # New people: new owners on the identity map, which the replica reads on top of the old.
        run.stream_events([valid_event(n) for n in range(200, 260)])
        run.finish_input(close_event_time=False, timeout=120)
        total = sum(end_offsets(run.bootstrap, [identity_map]).values())
        _wait_metric(run, "stream_app_identity_replica_offset", total)
        read_after = metric(run.web_port, "stream_app_identity_replica_records_read_total")
        start_overs = metric(run.web_port, "stream_app_identity_replica_start_overs_total")
        resolved = read_topics(run.bootstrap, [topo.topics.resolved.name])[topo.topics.resolved.name]
        one_id = {e["event_id"]: e["one_id"] for e in (orjson.loads(r.value) for r in resolved)}
        old_people = {n: _profile(run.web_port, f"member_id:M{n:07d}") for n in (0, 57, 199)}
        log = run.worker_log.read_text()

    assert built > 0 and total > built
    assert start_overs == 0
    assert read_after == total - built, (
        f"read {read_after} identity-map records after the restart; {total - built} were new "
        f"({total} in all): it did not resume from its stored offsets"
    )
    for n, profile in old_people.items():
        assert profile["one_id"] == one_id[f"ev-{n:06d}"]
        assert f"member_id:M{n:07d}" in profile["identifiers"]
    assert "identity replica: resuming" in log


def _wait_metric(run, name: str, value: float, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while (now := metric(run.web_port, name)) != value:
        run.check_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} is {now}, not {value}, after {timeout}s")
        time.sleep(0.2)


def test_a_running_replica_answers_the_latest_owner_of_an_identifier_it_looked_up_before(broker, tmp_path):
    """Its hot keys follow the records it applies: no stale owner after a merge re-owned one."""
    topic = f"idm-hot-{time.time_ns()}"
    ensure_topics(broker.bootstrap, [TopicSpec(name=topic, partitions=PARTITIONS)])
    first = _records(0, 50)
    _produce(broker.bootstrap, topic, first)
    replica = IdentityMapReplica(
        [broker.bootstrap], topic, PARTITIONS, tmp_path / REPLICA_DIR, 8 * 2**20, 1000
    )
    keys = [key for _, key, _ in first]
    seen: dict[str, list[str | None]] = {}
    moved = _records(0, 10, owner=lambda n: f"p_{n + 1:016x}")

    def looked_up_then_moved() -> bool:
        if not seen and replica.metrics.offset._value.get() == len(first):
            seen["before"] = [replica.get(key) for key in keys]
            _produce(broker.bootstrap, topic, moved)
        elif seen and replica.metrics.offset._value.get() == len(first) + len(moved):
            seen["after"] = [replica.get(key) for key in keys]
            return True
        return False

    _follow(replica, looked_up_then_moved)
    assert seen["before"] == [_latest(first)[key] for key in keys]
    assert seen["after"] == [_latest(first, moved)[key] for key in keys]
