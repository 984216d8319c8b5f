"""The sample population responds to coupons, and its holdout does not: through the pure cores
(composed as the worker composes them), every coupon rule shows a positive uplift."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from stream_app.config import load_topology
from stream_app.config.settings import DEV_PII_KEY
from stream_app.config.topology import duration_ms
from stream_app.effect.report import effect_by_rule
from stream_app.identity import IdentityResolver, IdentityRules, MappingIdentityStore
from stream_app.identity import records as identity_records
from stream_app.ingest import Accepted, Ingestor, PiiHasher
from stream_app.metrics import Metrics
from stream_app.people.processor import PersonProcessor
from stream_app.rules.engine import RuleEngine
from stream_app.sample import generate
from stream_app.sample.generator import HOLDOUT
from stream_app.tags.engine import TagEngine
from tests.unit.test_topology import REPO

TOPO = load_topology(REPO / "topology.yaml")


def outputs(lines: list[bytes]) -> dict[str, list[dict[str, Any]]]:
    """Output -> records, all on one partition, the watermark at the newest event less the lateness."""
    out: dict[str, list[dict[str, Any]]] = {}
    ingestor = Ingestor.from_topology(TOPO, PiiHasher(DEV_PII_KEY.encode(), "CN"))
    resolver = IdentityResolver(
        MappingIdentityStore(),
        IdentityRules(dict(TOPO.identity.limits), frozenset(TOPO.identity.shareable_types)),
    )
    person = PersonProcessor(
        TagEngine.from_specs(TOPO.tags),
        RuleEngine(TOPO.rules, TOPO.contact_policy, TOPO.stores),
        {},
        {},
        {},
        Metrics(),
        clock=lambda: 1_800_000_000.0,
    )
    lateness = duration_ms(TOPO.allowed_lateness)

    def take(emits: list) -> None:
        pending = list(emits)
        while pending:
            output, _, value = pending.pop()
            if output == "person_events":
                pending += person.handle(value, 0)
            else:
                out.setdefault(output, []).append(value)

    seen: set[str] = set()
    for line in lines:
        outcome = ingestor.process(line)
        if not isinstance(outcome, Accepted) or outcome.event_id in seen:
            continue
        seen.add(outcome.event_id)
        event = outcome.event
        resolution = resolver.resolve(
            identity_records.event_keys(event), event["event_id"], event["event_time_ms"]
        )
        for merge in resolution.merges:
            take(person.handle({"kind": "merge", **identity_records.merge_record(merge, event)}, 0))
        resolved = identity_records.resolved(event, resolution.one_id)
        take(
            person.handle(
                {"kind": "event", "event": resolved, "after": resolver.fragments(resolution.one_id)}, 0
            )
        )
        take(person.advance(0, event["event_time_ms"] - lateness))
    take(person.close_event_time(0))
    return out


def table(lines: list[bytes]) -> dict:
    out = outputs(lines)
    dumps = lambda key: [orjson.dumps(r) for r in out.get(key, [])]  # noqa: E731
    return effect_by_rule(
        TOPO.rules,
        dumps("coupons") + dumps("guide_alerts"),
        dumps("actions_suppressed"),
        dumps("conversions"),
    )


def test_the_generators_holdout_shares_are_the_topologys():
    assert {rule: TOPO.rules[rule].effect.holdout for rule in HOLDOUT} == HOLDOUT


@pytest.fixture(scope="module")
def tables() -> tuple[dict, dict]:
    return (
        table(generate(people=3000, days=2, seed=11).lines),
        table(generate(people=3000, days=2, seed=11, respond=False).lines),
    )


@pytest.mark.parametrize("rule", sorted(HOLDOUT))
def test_the_generated_population_shows_a_positive_uplift_and_none_without_a_response(tables, rule):
    responding, control = tables[0][rule], tables[1][rule]
    assert responding.treated >= 100 and responding.holdout >= 30, responding
    low, _ = responding.interval
    assert responding.uplift > 0.1 and low > 0, responding.to_json()
    # The held-out people the generator spared are exactly those the pipeline held out: their
    # conversions are the same with and without the response.
    assert (responding.holdout, responding.holdout_converted) == (control.holdout, control.holdout_converted)
    # Negative control: without the modelled response the two groups convert alike.
    low, high = control.interval
    assert low < 0 < high, control.to_json()
