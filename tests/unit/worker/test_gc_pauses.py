"""The worker's garbage-collection timing and freezing (`stream_app.worker.gc_pauses`), and how the
latency probe reads the pauses back from a worker's /metrics (`bench.latency.gc_summary`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from bench.latency import gc_summary
from stream_app.worker.gc_pauses import GcPauses, freeze


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sample(registry: CollectorRegistry, name: str, generation: str, le: str | None = None) -> float:
    labels = {"generation": generation} if le is None else {"generation": generation, "le": le}
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def collect(pauses: GcPauses, clock: Clock, generation: int, seconds: float) -> None:
    pauses.on_gc("start", {"generation": generation})
    clock.now += seconds
    pauses.on_gc("stop", {"generation": generation, "collected": 0, "uncollectable": 0})


def test_each_collection_is_timed_by_generation() -> None:
    registry, clock = CollectorRegistry(), Clock()
    pauses = GcPauses(registry, clock=clock)
    for generation, seconds in [(0, 0.001), (0, 0.002), (2, 0.2), (1, 0.01)]:
        collect(pauses, clock, generation, seconds)
    assert sample(registry, "stream_app_gc_pause_seconds_count", "0") == 2
    assert sample(registry, "stream_app_gc_pause_seconds_count", "2") == 1
    assert sample(registry, "stream_app_gc_pause_seconds_sum", "0") == pytest.approx(0.003)
    assert sample(registry, "stream_app_gc_pause_seconds_bucket", "2", "0.1") == 0
    assert sample(registry, "stream_app_gc_pause_seconds_bucket", "2", "0.25") == 1
    assert pauses.longest == {0: pytest.approx(0.002), 2: pytest.approx(0.2), 1: pytest.approx(0.01)}


def test_a_stop_without_its_start_is_not_counted() -> None:
    """Installed while a collection runs: its stop comes without a start."""
    registry, clock = CollectorRegistry(), Clock()
    pauses = GcPauses(registry, clock=clock)
    pauses.on_gc("stop", {"generation": 2, "collected": 0})
    assert pauses.count == {}
    assert sample(registry, "stream_app_gc_pause_seconds_count", "2") == 0


def test_a_long_pause_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    registry, clock = CollectorRegistry(), Clock()
    pauses = GcPauses(registry, clock=clock, log_over_s=0.05)
    with caplog.at_level("INFO", logger="stream_app.worker.gc_pauses"):
        collect(pauses, clock, 2, 0.01)
        collect(pauses, clock, 2, 0.3)
    logged = [r.getMessage() for r in caplog.records]
    assert logged == ["gc pause: generation 2, 0.300 s, 0 collected"]


@pytest.fixture
def installed() -> Iterator[GcPauses]:
    pauses = GcPauses(CollectorRegistry())
    pauses.install()
    pauses.install()  # twice: still one hook
    try:
        yield pauses
    finally:
        pauses.uninstall()
    assert pauses.on_gc not in gc.callbacks


def test_installed_it_times_the_interpreters_own_collections(installed: GcPauses) -> None:
    assert gc.callbacks.count(installed.on_gc) == 1
    before = installed.count.get(2, 0)
    gc.collect()
    assert installed.count.get(2, 0) == before + 1


def test_freeze_leaves_what_lives_now_out_of_later_collections() -> None:
    gc.unfreeze()
    try:
        kept = [[n] for n in range(1000)]  # tracked containers, alive
        freeze("test")
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


def test_the_probe_reads_the_pauses_between_two_scrapes() -> None:
    """bench.latency.gc_summary on real /metrics text: what happened between the scrapes only."""
    registry, clock = CollectorRegistry(), Clock()
    pauses = GcPauses(registry, clock=clock)
    collect(pauses, clock, 2, 0.3)  # before the live traffic
    collect(pauses, clock, 0, 0.001)
    before = generate_latest(registry).decode()
    for seconds in (0.2, 0.01, 0.07):
        collect(pauses, clock, 2, seconds)
    collect(pauses, clock, 1, 0.004)
    after = generate_latest(registry).decode()
    summary = gc_summary(before, after)
    assert summary["2"] == {"count": 3.0, "seconds": pytest.approx(0.28), "over_50ms": 2.0}
    assert summary["1"] == {"count": 1.0, "seconds": pytest.approx(0.004), "over_50ms": 0.0}
    assert summary["0"] == {"count": 0.0, "seconds": 0.0, "over_50ms": 0.0}
