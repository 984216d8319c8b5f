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
