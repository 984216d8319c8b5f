"""`stream_app.progress`: per-stage progress of a bounded run from scrapes of a worker's /metrics."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from stream_app.metrics import Metrics
from stream_app.progress import Snapshot, actions_by_rule, lines_past, parse_metrics, stage_progress


def _samples(
    read: int,
    valid: int,
    duplicate: int,
    normalized: int,
    fast: int,
    linked: int,
    items: int,
    merges: int,
) -> dict[str, float]:
    return {
        "stream_app_messages_in_total": read,
        "stream_app_events_valid_total": valid,
        "stream_app_events_duplicate_total": duplicate,
        "stream_app_events_normalized_total": normalized,
        "stream_app_identity_fast_path_total": fast,
        "stream_app_identity_resolve_seconds_count": linked,
        "stream_app_person_item_seconds_count": items,
        "stream_app_identity_merges_total": merges,
    }


# A run of 100 lines, scraped at 0 s, 2 s and 4 s. At 2 s ingest has read 40 lines (4 invalid),
# dedupe dropped 2 resends and passed 20 on (5 resolved at once, 10 resolved by the linker so
# far), the person stage handled 8 items of which 2 were one merge's notice and absorb.
SCRAPES = [
    Snapshot(0.0, {}),
    Snapshot(2.0, _samples(40, 36, 2, 20, 5, 10, 8, 1)),
    Snapshot(4.0, _samples(100, 90, 5, 60, 20, 30, 40, 3)),
]


def test_lines_past_each_stage():
    # At 2 s: 4 invalid + 2 resends are past every stage; dedupe 6 + 20; link 6 + 5 + 10;
    # people 6 + (8 items - 2 for the merge).
    assert lines_past(SCRAPES[1].samples) == {"ingest": 40, "dedupe": 26, "link": 21, "people": 12}
    # At 4 s: 10 invalid + 5 resends; dedupe 15 + 60; link 15 + 20 + 30; people 15 + (40 - 6).
    assert lines_past(SCRAPES[2].samples) == {"ingest": 100, "dedupe": 75, "link": 65, "people": 49}


def test_rate_and_eta_over_the_whole_window():
    got = {p.stage: p for p in stage_progress(SCRAPES, total=100)}
    assert [(got[s].done, got[s].rate) for s in ("ingest", "dedupe", "link", "people")] == [
        (100, 25.0),  # 100 lines in 4 s
        (75, 18.75),  # 75 in 4 s
        (65, 16.25),
        (49, 12.25),
    ]
    assert got["ingest"].eta == 0.0  # all read
    assert got["dedupe"].eta == pytest.approx(25 / 18.75)  # 25 to go at 18.75/s: 1.33 s
    assert got["link"].eta == pytest.approx(35 / 16.25)
    assert got["people"].eta == pytest.approx(51 / 12.25)
    assert not any(p.finished for p in got.values())  # counts are not the end markers


def test_rate_over_a_shorter_window_takes_the_recent_scrapes_only():
    got = {p.stage: p.rate for p in stage_progress(SCRAPES, total=100, window=3.0)}
    # From the 2 s scrape to the 4 s one: (100-40)/2, (75-26)/2, (65-21)/2, (49-12)/2.
    assert got == {"ingest": 30.0, "dedupe": 24.5, "link": 22.0, "people": 18.5}


def test_scrapes_further_apart_than_the_window_use_the_last_interval():
    got = {p.stage: p.rate for p in stage_progress(SCRAPES, total=100, window=0.5)}
    assert got["ingest"] == 30.0


def test_no_rate_before_two_scrapes_and_no_eta_while_stalled():
    assert [(p.done, p.rate, p.eta) for p in stage_progress([], total=10)] == [(0, None, None)] * 4
    one = stage_progress(SCRAPES[1:2], total=100)
    assert [(p.rate, p.eta) for p in one] == [(None, None)] * 4
    stalled = [SCRAPES[1], Snapshot(3.0, SCRAPES[1].samples)]
    assert [(p.rate, p.eta) for p in stage_progress(stalled, total=100)] == [(0.0, None)] * 4


def test_counts_past_the_total_are_capped_and_finished_comes_from_the_markers():
    # Lines read twice (redelivery) and forwarded events counted by the person stage (60 items
    # less 3 merges' 6 is 54, more than the 50 the linker and the fast path passed on).
    over = Snapshot(5.0, _samples(105, 95, 5, 90, 20, 30, 60, 3))
    assert lines_past(over.samples)["people"] == lines_past(over.samples)["link"] == 10 + 5 + 50
    got = stage_progress([*SCRAPES, over], total=100, finished=True)
    assert got[0].done == 100
    assert all(p.finished for p in got)


def test_parse_metrics_reads_the_names_the_worker_exports():
    """Through the worker's own `Metrics` and prometheus-client's text format: a renamed metric
    would leave its stage at 0 here."""
    m = Metrics()
    for _ in range(7):
        m.messages_in.inc()
    m.valid("order_paid", "pos")
    m.valid("page_view", "web")
    m.valid("no_such_type", "nowhere")
    m.valid("page_view", "web")
    m.valid("page_view", "web")
    m.events_dlq.labels("not_json").inc(2)
    m.events_duplicate.inc()
    m.events_out.inc(4)
    m.identity_fast_path.inc(1)
    for _ in range(3):
        m.identity_seconds.observe(0.0001)
    m.identity_merges.inc()
    for _ in range(5):  # 3 events, a merge notice and its absorb
        m.person_item_seconds.observe(0.0001)
    samples = parse_metrics(generate_latest(m.registry).decode())
    assert samples["stream_app_events_valid_total"] == 5.0  # summed over type and channel
    # 7 read, 5 valid (2 to the DLQ), 1 resend: 3 lines dropped before dedupe's output.
    assert lines_past(samples) == {"ingest": 7, "dedupe": 3 + 4, "link": 3 + 1 + 3, "people": 3 + 3}


def test_actions_by_rule_counts_records_per_rule_and_reason():
    rules = {"welcome": "coupon", "vip_store_visit": "guide_alert", "winback": "coupon"}
    emitted = [b'{"rule": "welcome"}', b'{"rule": "welcome"}', b'{"rule": "vip_store_visit"}']
    suppressed = [
        b'{"rule": "welcome", "action": "coupon", "reason": "limit"}',
        b'{"rule": "welcome", "action": "coupon", "reason": "contact_policy"}',
        b'{"rule": "welcome", "action": "coupon", "reason": "limit"}',
    ]
    got = {rule: counts.to_json() for rule, counts in actions_by_rule(rules, emitted, suppressed).items()}
    assert got == {
        "welcome": {
            "action": "coupon",
            "emitted": 2,
            "suppressed": 3,
            "suppressed_by_reason": {"contact_policy": 1, "limit": 2},
        },
        "vip_store_visit": {
            "action": "guide_alert",
            "emitted": 1,
            "suppressed": 0,
            "suppressed_by_reason": {},
        },
        "winback": {"action": "coupon", "emitted": 0, "suppressed": 0, "suppressed_by_reason": {}},
    }
