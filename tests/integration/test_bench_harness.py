"""The broker rows of `make bench` on a few events: each returns a positive rate and sees every
event (the figures themselves are never asserted)."""

from __future__ import annotations

from bench import rows
from stream_app.sample import generate


def test_raw_ceiling_moves_every_event(broker):
    lines = generate(people=800, days=1, seed=9).lines[:2000]
    timed = rows.raw_ceiling(broker.bootstrap, lines)
    assert timed.events == len(lines) and timed.rate > 0


def test_faust_ceiling_worker_counts_every_event(broker, tmp_path):
    lines = generate(people=800, days=1, seed=9).lines[:2000]
    timed = rows.faust_ceiling(broker.url, broker.bootstrap, tmp_path, lines)
    assert timed.events == len(lines) and timed.rate > 0
    assert timed.peak_rss_kib > 0  # read from the worker's /proc while it ran


def test_two_workers_share_the_input_and_see_every_event(broker, tmp_path):
    from bench.two_workers import two_workers

    lines = generate(people=800, days=1, seed=9).lines[:2000]
    run = two_workers(broker.url, broker.bootstrap, tmp_path, lines)
    assert run.events == len(lines)
    assert run.cold.events == len(lines) - rows.WARMUP and run.cold.rate > 0 and run.warm.rate > 0
    assert len(run.cold.peaks_kib) == 2 and all(kib > 0 for kib in run.cold.peaks_kib + run.warm.peaks_kib)
    assert sum(run.shares) == 1.0 and all(share > 0 for share in run.shares), run.shares


def test_worker_memory_reads_each_point_after_every_event_so_far(broker, tmp_path):
    from bench.__main__ import distinct_people
    from bench.worker_memory import worker_memory

    day = generate(people=1500, days=1, seed=9)
    lines = day.lines[:3000]
    curve = worker_memory(
        broker.url, broker.bootstrap, tmp_path, lines, distinct_people(lines, day.truth), 300
    )
    assert [p.events for p in curve.points] == [2050, 3000]  # the probe, then the rest of the input
    first, last = curve.points
    assert 0 < first.people < last.people
    assert all(p.rss_kib > 0 and p.hwm_kib >= p.rss_kib and p.state_bytes > 0 for p in curve.points)
    assert set(curve.growth()) == {"rss_bytes_per_person", "state_bytes_per_person", "wal_bytes_per_person"}


def test_latency_probe_matches_an_action_to_every_trigger(broker, tmp_path):
    """A few seconds of live traffic at 5 events/s (allowed_lateness 0s for the run): every
    trigger's action reaches the outside consumer and is matched to it (the figures themselves
    are never asserted; the wait is a bound, not a target)."""
    from bench import latency

    case = latency.run_case(broker.url, broker.bootstrap, tmp_path, 5, 4, lateness="0s", wait_s=120)
    overall = case.overall()
    assert case.lateness == "0s" and case.sent == 20
    # A person in a rule's holdout gets a suppressed record instead (by design, not missing).
    assert overall.sent == 8 and overall.deferred == 0 and set(overall.suppressed) <= {"holdout"}
    held_out = sum(overall.suppressed.values())
    assert (overall.received + held_out, overall.missing) == (8, 0), case.to_json()
    decided = {rule: f.received + sum(f.suppressed.values()) for rule, f in case.figures.items()}
    assert decided == {"welcome": 3, "vip_store_visit": 3, "browse_interest": 2, "all": 8}
    assert len(overall.latencies_ms) == overall.received and all(ms > 0 for ms in overall.latencies_ms)
