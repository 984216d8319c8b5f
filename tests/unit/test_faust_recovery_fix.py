"""The Faust workarounds around recoveries and seeks (no I/O: stubs of the methods they wrap)."""

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
    from aiokafka.consumer.fetcher import Fetcher
    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    before = (
        Recovery.on_recovery_completed,
        Consumer.perform_seek,
        AIOKafkaConsumerThread._fetch_records,
        Fetcher.seek_to,
        Fetcher.request_offset_reset,
    )
    yield
    (
        Recovery.on_recovery_completed,
        Consumer.perform_seek,
        AIOKafkaConsumerThread._fetch_records,
        Fetcher.seek_to,
        Fetcher.request_offset_reset,
    ) = before


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


# -- the third workaround: a fetch for the partitions active when it starts, undone by a seek --

A, B = TopicPartition("touchpoints", 0), TopicPartition("events-by-id", 0)


def _record(offset: int) -> SimpleNamespace:
    return SimpleNamespace(offset=offset)


def _fetch(monkeypatch, active, fetched):
    """Runs the workaround with Faust's own `_fetch_records` replaced by `fetched(partitions,
    fetcher)`; returns (what it returned, the partitions Faust's method was asked for, the seeks)."""
    asked: list[frozenset] = []
    sought: list[tuple[TopicPartition, int]] = []
    fetcher = SimpleNamespace(seek_to=lambda tp, offset: sought.append((tp, offset)))

    async def original(self, consumer, partitions, timeout=None, max_records=None):
        asked.append(partitions)
        return fetched(partitions, fetcher)

    monkeypatch.setattr(faust_recovery_fix, "_original_fetch_records", original)
    consumer = SimpleNamespace(_fetcher=fetcher)
    result = asyncio.run(faust_recovery_fix.fetch_records(object(), consumer, active, timeout=1.0))
    return result, asked, sought


def test_a_fetch_asks_for_the_partitions_active_when_it_starts(monkeypatch):
    active = {A}

    def fetched(partitions, fetcher):
        active.clear()  # recovery pauses the changelogs while the fetch waits
        return {tp: [_record(7)] for tp in partitions}

    result, asked, sought = _fetch(monkeypatch, active, fetched)
    assert asked == [frozenset({A})]
    assert result == {A: [_record(7)]} and sought == []


def test_no_active_partition_fetches_nothing(monkeypatch):
    """aiokafka would read an empty set as every partition (see the integration test)."""
    result, asked, _ = _fetch(monkeypatch, set(), lambda partitions, fetcher: {B: [_record(1)]})
    assert result == {} and asked == []


def test_a_client_only_app_still_asks_for_every_partition(monkeypatch):
    """Faust passes None (not an empty set) when it means every partition."""
    result, asked, _ = _fetch(monkeypatch, None, lambda partitions, fetcher: {B: [_record(1)]})
    assert asked == [None] and result == {B: [_record(1)]}


def test_a_fetch_during_which_a_position_moved_is_put_back(monkeypatch):
    def fetched(partitions, fetcher):
        fetcher.stream_app_seeks = 1  # a seek to the committed offsets while the fetch waited
        return {A: [_record(285), _record(286)], B: [_record(40)]}

    result, _, sought = _fetch(monkeypatch, {A, B}, fetched)
    assert result == {}
    assert sorted(sought) == sorted([(A, 285), (B, 40)])


def test_seeks_are_counted_on_the_fetcher():
    from aiokafka.consumer.fetcher import Fetcher

    faust_recovery_fix.install()
    fetcher = object.__new__(Fetcher)
    fetcher._subscriptions = SimpleNamespace(seek=lambda tp, offset: None)
    fetcher._records = {}
    fetcher._notify = lambda future: None
    fetcher._wait_consume_future = None
    fetcher.seek_to(A, 5)
    fetcher.seek_to(A, 6)
    assert faust_recovery_fix._seeks(fetcher) == 2


def test_install_swaps_the_fetch():
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    faust_recovery_fix.install()
    assert AIOKafkaConsumerThread._fetch_records is faust_recovery_fix.fetch_records
