"""The bench harness's own logic (`make bench` is never run by the tests): the noise check, the
targets beside the figures and the py-spy summary."""

from __future__ import annotations

from pathlib import Path

from bench import noise
from bench.profile import summarize
from bench.report import Results
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
