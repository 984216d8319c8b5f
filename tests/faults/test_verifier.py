"""The verifier itself: it must agree with the input contract, and it must catch what it claims to.

No I/O: generated lines, and outputs built by hand.
"""

from __future__ import annotations

import orjson

from stream_app.config import load_topology
from stream_app.identity.records import event_keys
from stream_app.ingest.pii import PiiHasher
from stream_app.ingest.pipeline import Accepted, Ingestor
from stream_app.sample import generate
from tests.faults.verifier import InputRecord, InputRules, ValidEvent, classify, verify
from tests.integration.conftest import REPO

KEY = "verifier-test-key"
TOPO = load_topology(REPO / "topology.yaml")
RULES = InputRules.from_topology(TOPO, KEY)
ROLES = {r: r for r in ("resolved", "merges", "conflicts", "dlq", "coupons", "alerts")}


def test_classification_and_keys_agree_with_the_ingestor_on_a_generated_population():
    """Written apart from the Ingestor; on what the generator writes they must decide alike."""
    ingestor = Ingestor.from_topology(TOPO, PiiHasher(KEY.encode()))
    day = generate(people=400, days=2, seed=3, malformed_rate=0.05)
    rejected = 0
    for line in day.lines:
        mine, theirs = classify(line, RULES), ingestor.process(line)
        if isinstance(theirs, Accepted):
            assert isinstance(mine, ValidEvent), (line, mine)
            assert sorted(mine.keys) == sorted(event_keys(theirs.event)), line
        else:
            rejected += 1
            assert isinstance(mine, str), (line, theirs)
    assert rejected > 20


def _event(n: int, **ids: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"e{n}",
            "event_type": "order_paid",
            "occurred_at": "2026-11-22T10:00:00+08:00",
            "channel": "pos",
            "identities": ids,
            "properties": {"amount": 10.5},
        }
    )


def test_the_checks_fail_on_wrong_outputs():
    lines = [
        _event(1, member_id="M1"),
        _event(2, member_id="M1", device_id="d"),
        b"junk",
        _event(3, member_id="M2"),
    ]
    inputs = [InputRecord(0, n, line) for n, line in enumerate(lines)]
    right = {
        "resolved": [
            {"event_id": "e1", "one_id": "p1"},
            {"event_id": "e2", "one_id": "p1"},
            {"event_id": "e3", "one_id": "p2"},
        ],
        "merges": [],
        "conflicts": [],
        "dlq": [{"source": {"partition": 0, "offset": 2}}],
        "coupons": [{"coupon_key": "c1"}],
        "alerts": [],
    }
    tags = {
        "p1": {"order_count": 2, "lifetime_spend": 21.0},
        "p2": {"order_count": 1, "lifetime_spend": 10.5},
    }
    ok = verify(inputs, right, ROLES, RULES, lambda one_id: {"tags": tags[one_id]})
    assert not ok.failed, ok.text()

    wrong = {
        **right,
        "resolved": right["resolved"][:2] + [{"event_id": "e3", "one_id": "p1"}],  # over-merged, e3 lost
        "dlq": right["dlq"] * 2,
        "coupons": right["coupons"] * 2,
    }
    bad = verify(inputs, wrong, ROLES, RULES, lambda one_id: {"tags": tags[one_id]})
    assert {c.name for c in bad.failed} == {
        "identity",
        "tags_exactly_once",
        "dlq_exactly_once",
        "coupons_keys_unique",
    }
    lost = verify(
        inputs, {**right, "resolved": right["resolved"][:2]}, ROLES, RULES, lambda o: {"tags": tags[o]}
    )
    assert "lost" in {c.name for c in lost.failed}

    # M1's events under two one_ids nobody merged: a split person, explained in the figures.
    split = {
        **right,
        "resolved": right["resolved"][:1] + [{"event_id": "e2", "one_id": "p9"}, right["resolved"][2]],
    }
    tags["p9"] = {"order_count": 1, "lifetime_spend": 10.5}
    apart = verify(inputs, split, ROLES, RULES, lambda one_id: {"tags": tags[one_id]})
    assert "identity" in {c.name for c in apart.failed}
    explained = apart.figures["split_people"]
    assert len(explained) == 2 and "final p1 published as ['p1']" in explained[0], explained
    assert "final p9" in explained[1] and "['e2']" in explained[1], explained
