"""Campaign effect in the person stage's core: sent and held-out welcome coupons, their orders, and
an order that reached another fragment of the person before the merge."""

from __future__ import annotations

from stream_app.config import load_topology
from stream_app.effect.holdout import held_out
from stream_app.metrics import Metrics
from stream_app.people.processor import PersonProcessor
from stream_app.rules.engine import RuleEngine
from stream_app.tags.engine import TagEngine
from tests.unit.test_topology import REPO

TOPO = load_topology(REPO / "topology.yaml")
T = 1_790_000_000_000
MIN = 60_000
SHARE = TOPO.rules["welcome"].effect.holdout
TREATED = next(f"p_{n:016x}" for n in range(100) if not held_out(f"p_{n:016x}", "welcome", SHARE))
HELD = next(f"p_{n:016x}" for n in range(100) if held_out(f"p_{n:016x}", "welcome", SHARE))


def processor() -> PersonProcessor:
    return PersonProcessor(
        TagEngine.from_specs(TOPO.tags),
        RuleEngine(TOPO.rules, TOPO.contact_policy, TOPO.stores),
        {},
        {},
        {},
        Metrics(),
        lambda: 1_800_000_000.0,
    )


def ev(event_id: str, one_id: str, event_type: str, t: int, **properties) -> dict:
    return {
        "event_id": event_id,
        "one_id": one_id,
        "event_type": event_type,
        "event_time_ms": t,
        "occurred_at": "2026-09-21T10:00:00.000+08:00",
        "channel": "app",
        "properties": properties,
    }


def run(proc: PersonProcessor, records: list[dict]) -> list:
    out = []
    pending = list(reversed(records))
    while pending:
        for output, _, value in proc.handle(pending.pop(), 0):
            if output == "person_events":
                pending.append(value)
            else:
                out.append((output, value))
    return out + [(o, v) for o, _, v in proc.close_event_time(0)]


def test_a_sent_coupon_converts_and_a_held_out_one_counts_for_the_holdout():
    proc = processor()
    out = run(
        proc,
        [
            {"kind": "event", "event": ev("r1", TREATED, "member_register", T)},
            {"kind": "event", "event": ev("o1", TREATED, "order_paid", T + 90 * MIN, amount=200)},
            {"kind": "event", "event": ev("r2", HELD, "member_register", T)},
            {"kind": "event", "event": ev("o2", HELD, "order_paid", T + 60 * MIN, amount=80)},
        ],
    )
    coupons = [v for o, v in out if o == "coupons"]
    held = [v for o, v in out if o == "actions_suppressed"]
    conversions = {v["order_event_id"]: v for o, v in out if o == "conversions"}
    assert [c["one_id"] for c in coupons] == [TREATED]
    assert [(h["one_id"], h["reason"]) for h in held] == [(HELD, "holdout")]
    assert (
        conversions["o1"]["group"] == "treated"
        and conversions["o1"]["action_key"] == coupons[0]["coupon_key"]
    )
    assert conversions["o1"]["amount"] == 200 and conversions["o1"]["converted_after_s"] == 5400
    assert conversions["o2"]["group"] == "holdout" and conversions["o2"]["action_key"] == held[0]["key"]
    metrics = proc.metrics.registry
    assert metrics.get_sample_value("stream_app_conversions_total", {"rule": "welcome"}) == 1
    assert metrics.get_sample_value("stream_app_conversion_revenue_total", {"rule": "welcome"}) == 200
    assert metrics.get_sample_value("stream_app_holdout_conversions_total", {"rule": "welcome"}) == 1


def test_an_order_of_another_fragment_converts_once_the_fragments_merge():
    proc = processor()
    other = "p_ffffffffffffffff"
    out = run(
        proc,
        [
            {"kind": "event", "event": ev("r1", TREATED, "member_register", T)},
            {"kind": "event", "event": ev("o1", other, "order_paid", T + 30 * MIN, amount=50)},
            {"kind": "event", "event": ev("x", TREATED, "page_view", T + 40 * MIN)},
        ],
    )
    assert not [v for o, v in out if o == "conversions"]
    out = run(proc, [{"kind": "merge", "one_id": TREATED, "merged_one_id": other}])
    conversions = [v for o, v in out if o == "conversions"]
    assert [(c["one_id"], c["order_event_id"], c["rule"]) for c in conversions] == [
        (TREATED, "o1", "welcome")
    ]
