"""`stream_app.control.SourceLag`: an input partition's smallest recent lag, the clock a quiet
partition follows, checked against a brute-force minimum over the window."""

from hypothesis import given
from hypothesis import strategies as st

from stream_app.control import SourceLag, source_watermark


@given(
    st.lists(st.tuples(st.integers(0, 3_000), st.integers(-500, 5_000)), min_size=1, max_size=60),
    st.integers(100, 6_000),
)
def test_seen_at_is_the_newest_event_plus_the_smallest_lag_in_the_window(steps, window):
    """Oracle: every (wall, lag) kept, the minimum over those within the window of the newest."""
    lag = SourceLag(window)
    wall, history = 1_000_000, []
    for advance, delay in steps:
        wall += advance
        event = wall - delay
        history.append((wall, delay))
        lag.observe(event, wall)
        expected = event + min(d for w, d in history if w >= wall - window)
        assert lag.seen_at(event) == expected
        assert len(lag) <= sum(1 for w, _ in history if w >= wall - window)


def test_the_end_of_a_burst_does_not_hold_a_quiet_partition_back():
    """The probe's case: a burst read with a growing backlog (the last event 550 ms late), then
    quiet. Followed from the newest event's own lag, the partition passes an event that arrives
    at once only that lag (550 ms) + the lateness after it; from the smallest recent lag, 40 ms + it."""
    lateness = 250
    lag = SourceLag(5_000)
    burst = [(1_000 + 10 * k, 1_040 + 40 * k) for k in range(18)]  # events 10 ms apart, read ever later
    for t, wall in burst:
        lag.observe(t, wall)
    newest, read_at = burst[-1]
    assert read_at - newest == 550
    now = read_at + 2_000
    held = source_watermark(newest, read_at, now, lateness, 10_000, caught_up=True)
    followed = source_watermark(newest, lag.seen_at(newest), now, lateness, 10_000, caught_up=True)
    assert now - held.t == 550 + lateness
    assert now - followed.t == 40 + lateness


def test_a_source_that_falls_behind_counts_once_the_window_has_passed():
    """A producer sending 1 s later than before: its lag counts again after the window."""
    lag = SourceLag(5_000)
    assert lag.seen_at(0) is None
    lag.observe(0, 50)
    assert lag.seen_at(0) == 50
    lag.observe(2_000, 3_000)
    assert lag.seen_at(2_000) == 2_050  # the smaller lag of 3 s ago still stands
    lag.observe(6_000, 7_000)
    assert lag.seen_at(6_000) == 7_000  # 50 ms at wall 50 is out of the window


def test_a_quiet_partition_keeps_the_lag_of_its_last_traffic():
    """Nothing observed for a minute: the window has not moved, the smallest lag stands."""
    lag = SourceLag(5_000)
    lag.observe(0, 40)
    lag.observe(1_000, 1_900)
    assert lag.seen_at(1_000) == 1_040  # asked whenever: the window moves with events only
