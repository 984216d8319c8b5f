"""The bench harness's own logic (`make bench` is never run by the tests): the noise check, the
targets beside the figures, the py-spy summary and the latency probe's matching and traffic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from hypothesis import given
from hypothesis import strategies as st

from bench import latency, noise
from bench.profile import summarize
from bench.report import Results, latency_target
from stream_app.identity import IdentityResolver, MappingIdentityStore


def test_spread_of_repeated_runs_is_range_over_median():
    assert noise.spread([90.0, 100.0, 130.0]) == 0.4
    assert noise.spread([100.0]) == 0.0


def test_noisy_ceiling_and_busy_machine_are_flagged():
    busy = noise.Noise(cores=2, wall_s=60, load_mean=3.5, own_cores=1.0, others_cores=0.9)
    found = noise.warnings({"raw": [100.0, 100.0, 101.0], "Faust": [60.0, 100.0, 100.0]}, busy)
    assert [w.split()[0] for w in found] == ["Faust", "load", "other"]


def test_quiet_run_gives_no_warning():
    quiet = noise.Noise(cores=2, wall_s=60, load_mean=1.5, own_cores=1.4, others_cores=0.1)
    assert noise.warnings({"raw": [100.0, 110.0, 105.0]}, quiet) == []


def test_targets_are_judged_against_the_faust_ceiling_of_the_same_run():
    results = Results(
        rates={"faust": [10_000.0], "warm": [5_100.0], "cold": [2_400.0], "core": [60_000.0]},
        scale=[
            {"people": 10_000, "us_per_event": 10.0},
            {"people": 1_000_000, "us_per_event": 13.5},
        ],
    )
    targets = results.targets()
    assert {row: t["met"] for row, t in targets.items()} == {
        "warm": True,
        "cold": False,
        "core": True,
        "flat": False,
    }
    assert targets["cold"]["value"] == 0.24


def test_unmeasured_rows_are_neither_met_nor_failed():
    assert Results(rates={"core": [1.0]}).targets()["warm"]["met"] is None


def test_profile_summary_counts_each_area_once_per_sample(tmp_path: Path):
    raw = tmp_path / "spy.txt"
    raw.write_text(
        "run (faust/agents/agent.py);_slurp (faust/streams.py);send (aiokafka/producer.py) 30\n"
        "run (faust/agents/agent.py);validate (jsonschema/validators.py) 10\n"
    )
    text = summarize(raw)
    assert "40 samples" in text
    assert " 100.0%  faust (streams, agents, tables)" in text
    assert "  25.0%  JSON Schema (jsonschema, referencing)" in text
    assert "  75.0%  send (aiokafka/producer.py)" in text


def test_filler_people_are_known_to_the_resolver_as_it_would_have_left_them():
    """The cost rows write filler people through the store, not the resolver: if the two drift
    apart, a filler person would be created again or merged here."""
    from bench.core import CoreRig, filler_keys

    rig = CoreRig()
    rig.prefill(20)
    resolver = rig.resolver
    fresh = IdentityResolver(MappingIdentityStore(), resolver.rules)
    for n in (0, 7, 19):
        keys = [k for k in filler_keys(n, 6) if resolver.lookup(k) is not None]
        known = resolver.resolve(keys, f"again-{n}", 1_800_000_000_000)
        assert not known.created and not known.merges and not known.added
        assert sorted(resolver.store.profile(known.one_id).identifier_keys()) == sorted(
            fresh.store.profile(fresh.resolve(keys, f"new-{n}", 1).one_id).identifier_keys()
        )
    assert len(rig.states) == 20


def test_two_workers_are_compared_with_one_worker_of_the_same_phase():
    from bench.rows import Timed

    results = Results()
    for row, events, seconds in (("cold", 1000, 2.0), ("two_cold", 1000, 1.25), ("warm", 900, 1.0)):
        results.add_run(
            row, Timed(events, seconds, peaks_kib=[300 * 1024, 200 * 1024][: 1 + row.count("two")])
        )
    assert results.vs_one_worker("two_cold") == 1.6  # 800 ev/s over 500
    assert results.vs_one_worker("two_warm") is None  # not measured: no ratio, not 0
    assert results.worker_peaks["two_cold"] == [[300.0, 200.0]]
    assert results.peaks == {"cold": 300.0, "two_cold": 300.0, "warm": 300.0}
    assert results.to_json()["two_workers"]["vs_one_worker"] == {"two_cold": 1.6, "two_warm": None}


def test_memory_growth_is_taken_between_the_first_and_last_points():
    from bench.worker_memory import MemoryCurve, MemoryPoint

    curve = MemoryCurve(
        [
            MemoryPoint(
                2000, 500, rss_kib=100_000, hwm_kib=100_000, state_bytes=1000, wal_bytes=0, seconds=1
            ),
            MemoryPoint(
                4000, 900, rss_kib=500_000, hwm_kib=600_000, state_bytes=2000, wal_bytes=0, seconds=2
            ),
            MemoryPoint(
                8000, 1500, rss_kib=110_000, hwm_kib=600_000, state_bytes=5000, wal_bytes=1e6, seconds=4
            ),
        ]
    )
    assert curve.growth() == {
        "rss_bytes_per_person": 10_000 * 1024 / 1000,
        "state_bytes_per_person": 4.0,
        "wal_bytes_per_person": 1000.0,
    }
    assert MemoryCurve(curve.points[:1]).growth() == {}


def test_memory_points_double_while_they_fit_and_stop_at_the_input():
    from bench.worker_memory import next_point

    assert next_point(2050, 200_000, 1000.0, 100.0) == 4100
    assert next_point(90_000, 200_000, 1000.0, 100.0) == 90_000 + 80_000  # what fits 100 s at 0.8x
    assert next_point(100_000, 140_000, 1000.0, 100.0) == 140_000  # the rest of the input
    assert next_point(131_200, 131_200, 1000.0, 100.0) is None
    assert next_point(8000, 200_000, 1000.0, 1.0) is None  # 800 lines: under a quarter of 8,000


# -- bench.latency: the probe's pure helpers -------------------------------------------------------


@given(st.lists(st.integers(-1000, 1000), min_size=1, max_size=60), st.sampled_from([1, 50, 95, 99, 100]))
def test_percentile_is_the_smallest_value_with_p_percent_at_or_below_it(values, p):
    expected = min(x for x in values if 100 * sum(v <= x for v in values) >= p * len(values))
    assert latency.percentile(values, p) == expected


def _arrival(rule, trigger, seen, record=None, suppressed=None):
    return latency.Arrival("t", rule, trigger, seen, record if record is not None else seen, None, suppressed)


def test_actions_are_matched_to_triggers_by_rule_and_trigger_event_id():
    vip = "vip_store_visit"
    triggers = {"a": "welcome", "b": "welcome", "c": vip, "d": vip, "e": "welcome"}
    produced = {"a": 1000, "b": 2000, "c": 3000, "d": 4000}  # "e" never delivered
    arrivals = [
        _arrival("welcome", "a", 1300, record=1250),
        _arrival("welcome", "a", 9999),  # a second copy (at-least-once): the first counts
        _arrival(vip, "b", 2100),  # another rule's action for "b": not b's welcome
        _arrival(vip, "c", 3000, suppressed="cap:coupons_per_7d"),
        _arrival("welcome", "x", 5000),  # the mix's own
    ]
    figures = latency.match(triggers, produced, arrivals, deferred=["d"])
    welcome, visit, overall = figures["welcome"], figures[vip], figures["all"]
    assert (welcome.sent, welcome.received, welcome.missing, welcome.latencies_ms) == (3, 1, 2, [300])
    assert welcome.worker_ms == [250]
    assert (visit.sent, visit.received, visit.missing, visit.deferred) == (2, 0, 0, 1)
    assert visit.suppressed == {"cap:coupons_per_7d": 1}
    assert (overall.sent, overall.received, overall.missing, overall.deferred) == (5, 1, 2, 1)
    assert latency.others(triggers, arrivals) == {"welcome": 1, vip: 1}


def test_quiet_hours_cross_midnight_in_the_store_zone():
    at = int(datetime(2026, 12, 1, 21, 59, tzinfo=UTC).timestamp() * 1000)
    assert not latency.in_quiet_hours(at, "UTC", "22:00", "08:00")
    assert latency.in_quiet_hours(at + 60_000, "UTC", "22:00", "08:00")
    assert latency.in_quiet_hours(at, "Etc/GMT-1", "22:00", "08:00")  # 22:59 at UTC+1
    assert not latency.in_quiet_hours(at, "UTC", "09:00", "17:00")


def test_the_bench_store_zone_is_far_from_quiet_hours_at_any_time_of_day():
    for minutes in range(0, 24 * 60, 7):
        now = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(minutes=minutes)
        zone = latency.midday_zone(now)
        local = now.astimezone(latency.ZoneInfo(zone))
        assert 12 <= local.hour + local.minute / 60 <= 16, (now, zone)


def test_a_mix_line_is_retimed_under_a_new_id_and_a_malformed_one_left_alone():
    line = orjson.dumps({"event_id": "ev-1", "occurred_at": "2026-11-22T10:00:00+08:00", "channel": "app"})
    out, event_id = latency.retimed(line, "2026-12-01T20:00:00.000+00:00", "-live0")
    assert event_id == "ev-1-live0"
    assert orjson.loads(out) == {
        "event_id": "ev-1-live0",
        "occurred_at": "2026-12-01T20:00:00.000+00:00",
        "channel": "app",
    }
    bad = orjson.dumps({"event_id": "bad-1", "occurred_at": "yesterday"})
    assert latency.retimed(bad, "T", "-x") == (bad, None)


def test_every_trigger_of_the_plan_fires_its_rule_in_the_pure_core(tmp_path: Path):
    """The probe's triggers qualify under topology.yaml's rules (limits, caps, conditions, quiet
    hours in the bench store's zone): the in-process core, fed the warm-up and then the triggers,
    emits one action of the trigger's rule for each (or, for a person in the rule's holdout, its
    suppressed record), and suppresses nothing else."""
    from bench.core import CoreRig
    from stream_app.config import load_topology

    start = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)  # 04:00 in Shanghai: quiet hours there
    zone = latency.midday_zone(start)
    rig = CoreRig(load_topology(latency.probe_topology(tmp_path, "u", None, zone)))
    captured: list[tuple[str, str, dict]] = []
    for name in ("handle", "advance", "close_event_time"):
        original = getattr(rig.processor, name)

        def recording(*args, _original=original):
            out = _original(*args)
            captured.extend(e for e in out if e[0] in ("coupons", "guide_alerts", "actions_suppressed"))
            return out

        setattr(rig.processor, name, recording)
    plan = latency.trigger_plan("u", 9)
    lines = [
        orjson.dumps({**event, "occurred_at": latency.now_iso(start.timestamp() + n)})
        for n, event in enumerate(plan.warmup)
    ] + [
        orjson.dumps({**event, "occurred_at": latency.now_iso(start.timestamp() + 600 + n)})
        for n, (_, event) in enumerate(plan.triggers)
    ]
    rig.feed(lines)
    fired = sorted((value["rule"], value["trigger_event_id"]) for output, _, value in captured)
    assert fired == sorted((rule, event["event_id"]) for rule, event in plan.triggers)
    # Only a rule's holdout (effect.holdout: a share of people kept out on purpose) suppresses one.
    assert {v["reason"] for output, _, v in captured if output == "actions_suppressed"} <= {"holdout"}
    # Decided at the trigger's own time: no guide alert was held for the end of quiet hours.
    when = datetime.fromisoformat
    assert all(when(v["decided_at"]) == when(v["event_time"]) for _, _, v in captured)
    assert {rule for rule, _ in plan.triggers} == set(latency.RULES)


def test_latency_target_fails_on_a_missing_action_whatever_the_p99_of_the_rest():
    def case(p99_ms, missing):
        return {"rules": {"all": {"latency": {"p99": p99_ms}, "missing": missing}}}

    assert latency_target(case(800, 0))["met"] is True
    assert latency_target(case(800, 1))["met"] is False
    assert latency_target(case(1200, 0)) == {"value": 1.2, "bar": "p99 <= 1 s", "met": False}
    assert latency_target({"rules": {"all": {"latency": None, "missing": 5}}})["met"] is False
