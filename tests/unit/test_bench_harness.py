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
