"""The Faust recovery workaround seeks stream partitions before resuming them (no I/O: a stub)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from stream_app.worker import faust_recovery_fix


class _Recorder:
    """Makes stand-ins for Faust's methods that write down that they were called."""

    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, name):
        def record(*args, **kwargs):
            self.calls.append(name)

        return record


def _stub_recovery(calls: _Recorder) -> SimpleNamespace:
    async def seek():
        calls.calls.append("perform_seek")

    async def nothing(*args, **kwargs):
        return None

    async def wait(coro, timeout=None):
        await coro

    consumer = SimpleNamespace(
        assignment=lambda: {"touchpoints-0", "event-ids-changelog-0"},
        perform_seek=seek,
        resume_partitions=calls("resume_partitions"),
        resume_flow=calls("resume_flow"),
    )
    app = SimpleNamespace(
        consumer=consumer,
        on_rebalance_complete=SimpleNamespace(send=nothing),
        consumer_generation_id=3,
        conf=SimpleNamespace(broker_request_timeout=10),
        flow_control=SimpleNamespace(resume=calls("flow_control.resume")),
        _fetcher=SimpleNamespace(maybe_start=nothing),
        assignor=SimpleNamespace(assigned_standbys=lambda: set()),
        on_rebalance_end=calls("on_rebalance_end"),
    )
    return SimpleNamespace(
        app=app,
        log=SimpleNamespace(info=lambda *a: None, warning=lambda *a: None, dev=lambda *a: None),
        tables={},
        actives_for_table={},
        standbys_for_table={},
        completed=SimpleNamespace(set=calls("completed")),
        _set_recovery_ended=calls("recovery_ended"),
        _wait=wait,
        _is_changelog_tp=lambda tp: "changelog" in tp,
    )


def _order(method) -> list[str]:
    calls = _Recorder()
    recovery = _stub_recovery(calls)
    recovery.tables = SimpleNamespace(
        values=lambda: [], on_actives_ready=calls("actives_ready"), on_standbys_ready=calls("standbys_ready")
    )
    asyncio.run(method(recovery, generation_id=3))
    return [c for c in calls.calls if c in ("perform_seek", "resume_partitions")]


def test_stream_partitions_are_sought_before_they_resume():
    assert _order(faust_recovery_fix.on_recovery_completed) == ["perform_seek", "resume_partitions"]


def test_faust_itself_still_resumes_first():
    """When this fails, Faust seeks first on its own: drop `faust_recovery_fix`."""
    assert _order(faust_recovery_fix._original) == ["resume_partitions", "perform_seek"]


def test_install_swaps_the_method(monkeypatch):
    from faust.tables.recovery import Recovery

    monkeypatch.setattr(Recovery, "on_recovery_completed", faust_recovery_fix._original)
    faust_recovery_fix.install()
    assert Recovery.on_recovery_completed is faust_recovery_fix.on_recovery_completed


@pytest.fixture(autouse=True)
def _restore():
    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer

    before, seek_before = Recovery.on_recovery_completed, Consumer.perform_seek
    yield
    Recovery.on_recovery_completed, Consumer.perform_seek = before, seek_before


NEW, SEEN = TopicPartition("touchpoints", 0), TopicPartition("touchpoints", 1)


def test_aiokafka_still_leaves_a_partition_with_nothing_committed_where_it_was():
    """The root of the second workaround: `seek_to_committed` moves only partitions with a
    commit above 0. When this fails, aiokafka seeks the others too: drop `perform_seek`."""
    sought: list[tuple[TopicPartition, int]] = []
    consumer = object.__new__(AIOKafkaConsumer)
    consumer._subscription = SimpleNamespace(assigned_partitions=lambda: {NEW, SEEN})

    async def committed(tp):
        return {NEW: None, SEEN: 5}[tp]

    consumer.committed = committed
    consumer._fetcher = SimpleNamespace(seek_to=lambda tp, offset: sought.append((tp, offset)))
    assert asyncio.run(AIOKafkaConsumer.seek_to_committed(consumer)) == {NEW: None, SEEN: 5}
    assert sought == [(SEEN, 5)]


def test_a_partition_with_nothing_committed_is_sought_to_the_beginning():
    sought: list[tuple] = []
    changelog = TopicPartition("app-event-ids-changelog", 0)

    async def seek_to_committed():
        return {NEW: None, SEEN: 5, changelog: None}

    async def seek_to_beginning(*partitions):
        sought.append(partitions)

    consumer = SimpleNamespace(
        seek_to_committed=seek_to_committed,
        seek_to_beginning=seek_to_beginning,
        _read_offset={},
        _committed_offset={},
        app=SimpleNamespace(
            tables=SimpleNamespace(changelog_topics={changelog.topic}),
            conf=SimpleNamespace(consumer_auto_offset_reset="earliest"),
        ),
    )
    asyncio.run(faust_recovery_fix.perform_seek(consumer))
    assert sought == [(NEW,)]  # not the changelog: recovery places those itself
    assert consumer._read_offset == {NEW: None, SEEN: 5, changelog: None}
    assert consumer._committed_offset == {SEEN: 5}


def test_install_swaps_perform_seek():
    from faust.transport.consumer import Consumer

    faust_recovery_fix.install()
    assert Consumer.perform_seek is faust_recovery_fix.perform_seek
