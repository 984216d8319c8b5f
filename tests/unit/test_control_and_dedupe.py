from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.control import (
    Barrier,
    Marker,
    StageDone,
    Watermark,
    Watermarks,
    WatermarkTracker,
    decode_control,
    is_control,
    source_watermark,
)
from stream_app.ingest.dedupe import EventIdExpiry, is_first_delivery, position, remembered


@given(st.integers(1, 12), st.data())
def test_barrier_completes_once_whatever_the_order_and_redeliveries(sources, data):
    deliveries = data.draw(
        st.lists(st.integers(0, sources - 1), min_size=0, max_size=40)
        .map(lambda extra: extra + list(range(sources)))
        .flatmap(st.permutations)
    )
    barrier = Barrier()
    completions = [barrier.observe(5, Marker("r", False, p, sources)) for p in deliveries]
    assert completions.count(True) == 1
    first_complete = completions.index(True)
    assert set(deliveries[: first_complete + 1]) == set(range(sources))


def test_barrier_keeps_runs_and_partitions_apart():
    barrier = Barrier()
    assert not barrier.observe(0, Marker("a", False, 0, 2))
    assert not barrier.observe(1, Marker("a", False, 1, 2))
    assert not barrier.observe(0, Marker("b", False, 1, 2))
    assert barrier.observe(0, Marker("a", False, 1, 2))


def test_marker_roundtrip_and_header_detection():
    marker = Marker("r1", True, 3, 8)
    assert decode_control(marker.encode()) == marker
    done = StageDone("r1", "dedupe", 2, 8)
    assert StageDone.decode(done.encode()) == done
    assert is_control({"stream-app-control": b"1"})
    assert is_control([("x", b""), ("stream-app-control", b"1")])
    assert not is_control(None) and not is_control({}) and not is_control([("x", b"1")])


def test_dedupe_lets_redeliveries_through_but_not_duplicates():
    here = position(3, 10)
    assert is_first_delivery(None, here)
    assert is_first_delivery(here, here)
    assert not is_first_delivery(here, position(3, 11))


def test_a_watermark_waits_for_every_writer_and_is_the_slowest_of_them():
    tracker = WatermarkTracker(["ingest:0", "ingest:1", "ingest:2"])
    assert tracker.observe(Watermark("ingest:0", 500)) is None
    assert tracker.observe(Watermark("ingest:1", 300)) is None
    assert tracker.observe(Watermark("someone-else", 1)) is None  # not a writer of this input
    assert tracker.observe(Watermark("ingest:2", 900)) == 300
    assert tracker.observe(Watermark("ingest:1", 100)) == 300  # a writer's time never goes back
    assert tracker.observe(Watermark("ingest:1", 700)) == 500


def test_idle_writers_do_not_hold_event_time_back_until_all_are_idle():
    tracker = WatermarkTracker(["a", "b"])
    tracker.observe(Watermark("a", 0, idle=True))  # a partition nobody has written to
    assert tracker.observe(Watermark("b", 400)) == 400
    assert tracker.observe(Watermark("b", 450, idle=True)) == 450  # all idle: the most advanced
    assert tracker.observe(Watermark("a", 200)) == 200  # written to now: it counts again


def test_a_partition_read_to_its_end_follows_the_clock_at_once_and_is_idle_after_a_while():
    # Just sent on: the newest event time less the lateness.
    assert source_watermark(10_000, 5_000, 5_000, 300, 1_000, caught_up=True) == Watermark("", 9_700)
    # 500 ms later, nothing new: event time moved on by as much (live traffic is not held back).
    assert source_watermark(10_000, 4_500, 5_000, 300, 1_000, caught_up=True) == Watermark("", 10_200)
    # Quiet for the idle time: still following the clock, and left out of the minimum downstream.
    quiet = source_watermark(10_000, 1_000, 5_000, 300, 1_000, caught_up=True)
    assert quiet == Watermark("", 13_700, idle=True)


def test_only_a_partition_empty_for_the_idle_time_is_left_out():
    assert source_watermark(None, 0, 5_000, 300, 1_000, caught_up=True) == Watermark("", 0, idle=True)
    assert source_watermark(None, 0, 5_000, 300, 1_000, caught_up=False) == Watermark("", 0)
    # Known for less than the idle time: it may be about to get its first record; hold back.
    assert source_watermark(None, 4_500, 5_000, 300, 1_000, caught_up=True) == Watermark("", 0)


def test_a_partition_with_records_to_read_does_not_follow_the_clock():
    """Quiet because the worker is busy elsewhere is not quiet: its backlog must not turn late."""
    assert source_watermark(10_000, 1_000, 60_000, 300, 1_000, caught_up=False) == Watermark("", 9_700)


def test_control_records_decode_to_what_was_sent():
    marks = Watermarks((Watermark("dedupe:3", 123, idle=True), Watermark("dedupe:4", 99)))
    marker = Marker("r1", True, from_partition=2, sources=8, stage="people")
    assert decode_control(marks.encode()) == marks and decode_control(marker.encode()) == marker


def _expiry_over(table: dict, min_batch: int, retention: int) -> EventIdExpiry:
    def scan(partition, after, limit):
        keys = sorted(k for k in table if after is None or k > after)[:limit]
        return [(k, table[k]) for k in keys]

    return EventIdExpiry(scan, table.__delitem__, retention_ms=retention, min_batch=min_batch)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 400), min_size=1, max_size=40), st.integers(1, 50))
def test_expiry_forgets_only_what_is_past_the_retention_and_then_all_of_it(bursts, retention):
    """Bursts of inserts (one tick each, event time one step a tick): an id within the retention
    is never forgotten; once inserts stop, every id past it is gone within a walk of the table."""
    table: dict[str, list] = {}
    expiry = _expiry_over(table, min_batch=8, retention=retention)
    serial = 0
    for tick, burst in enumerate(bursts):
        for _ in range(burst):
            table[f"e{serial:06d}"] = remembered(f"0:{serial}", tick)
            expiry.added(0)
            serial += 1
        expiry.sweep(0, watermark_ms=tick)
        within = sum(1 for _, t in table.values() if t >= tick - retention)
        assert within == sum(bursts[max(0, tick - retention) : tick + 1]), "an id in the retention went"
    end = len(bursts) + retention
    for tick in range(end, end + len(table) // 8 + 2):
        expiry.sweep(0, watermark_ms=tick)
    assert table == {}


def test_expiry_keeps_up_with_a_steady_insert_rate():
    """At a steady rate the walk (twice the inserts a tick) keeps the table near one retention."""
    table: dict[str, list] = {}
    expiry = _expiry_over(table, min_batch=8, retention=10)
    for tick in range(200):
        for n in range(50):
            table[f"e{tick:04d}{n:02d}"] = remembered(f"0:{tick}:{n}", tick)
            expiry.added(0)
        expiry.sweep(0, watermark_ms=tick)
        assert len(table) <= 2 * 50 * 11 + 16
