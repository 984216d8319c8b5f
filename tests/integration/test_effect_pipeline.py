"""Campaign effect through the real pipeline on the embedded broker, checked against an oracle that
recomputes every order's attribution from the other output topics alone: the actions (coupons,
guide alerts, held-out actions), the resolved orders and redemptions, and `identity-merges`."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import orjson
import pytest

from stream_app.config.topology import duration_ms
from stream_app.effect.holdout import held_out
from stream_app.io.kafka import read_topics
from stream_app.sample import generate
from tests.integration.helpers import final_one_id

pytestmark = pytest.mark.integration


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_conversions_match_an_oracle_over_the_other_topics(make_env):
    env = make_env(holdouts=True)
    topo, t = env.topology, env.topology.topics
    lines = generate(people=300, days=2, seed=5).lines
    with env.local_run() as run:
        run.stream_events(lines)
        run.finish_input(close_event_time=True, timeout=300)
        names = [
            s.name
            for s in (
                t.coupons,
                t.guide_alerts,
                t.actions_suppressed,
                t.conversions,
                t.resolved,
                t.identity_merges,
            )
        ]
        raw = read_topics(run.bootstrap, names)
    out = {name: [orjson.loads(r.value) for r in records] for name, records in raw.items()}
    final = final_one_id(out[t.identity_merges.name])

    windows: dict[str, list[dict]] = defaultdict(list)
    for record in out[t.coupons.name] + out[t.guide_alerts.name]:
        key = record.get("coupon_key") or record["alert_key"]
        windows[final(record["one_id"])].append({**record, "key": key, "group": "treated"})
    holdouts = [s for s in out[t.actions_suppressed.name] if s["reason"] == "holdout"]
    for record in holdouts:
        windows[final(record["one_id"])].append({**record, "group": "holdout"})
        # Held out by the function of (one_id, rule) the generator imports too.
        assert held_out(record["one_id"], record["rule"], topo.rules[record["rule"]].effect.holdout)
    assert holdouts and any(w["group"] == "treated" for ws in windows.values() for w in ws)

    orders, redemptions = defaultdict(list), defaultdict(list)
    for event in {e["event_id"]: e for e in out[t.resolved.name]}.values():
        if event["event_type"] == "order_paid":
            orders[final(event["one_id"])].append(event)
        elif event["event_type"] == "coupon_redeemed":
            redemptions[final(event["one_id"])].append(event)

    expected = {}
    for person, person_orders in orders.items():
        for order in person_orders:
            t_order, best = order["event_time_ms"], None
            for w in windows.get(person, []):
                opened = _ms(w["decided_at"])
                until = opened + duration_ms(topo.rules[w["rule"]].effect.window)
                if not opened < t_order < until:
                    continue
                touch = opened
                template = topo.rules[w["rule"]].coupon.template if topo.rules[w["rule"]].coupon else None
                for r in redemptions.get(person, []):
                    props = r["properties"]
                    named = props.get("coupon_key") == w["key"] or (
                        "coupon_key" not in props
                        and template is not None
                        and props.get("template") == template
                    )
                    if named and opened <= r["event_time_ms"] < min(until, t_order):
                        touch = max(touch, r["event_time_ms"])
                if best is None or (touch, w["key"]) > best[:2]:
                    best = (touch, w["key"], w["group"])
            if best is not None:
                expected[order["event_id"]] = (best[1], best[2])

    got: dict[str, dict] = {}
    for c in out[t.conversions.name]:
        rank = (c["touched_at"], c["action_key"])
        if c["order_event_id"] not in got or rank > (
            got[c["order_event_id"]]["touched_at"],
            got[c["order_event_id"]]["action_key"],
        ):
            got[c["order_event_id"]] = c
    assert {o: (c["action_key"], c["group"]) for o, c in got.items()} == expected
    assert sum(g == "treated" for _, g in expected.values()) > 20
    assert any(g == "holdout" for _, g in expected.values())
    assert any(c["via"] == "redemption" for c in got.values())
