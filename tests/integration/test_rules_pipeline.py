"""Trigger rules through the real pipeline on the embedded broker.

The input comes in phases, each processed to the end before the next, so that event time moves
exactly as the scenario says (within a phase, events may be processed in any order).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import yaml

from stream_app.io.kafka import read_topics
from stream_app.sample import generate
from tests.integration.conftest import REPO
from tests.integration.helpers import decoded, final_one_id, metric

pytestmark = pytest.mark.integration

SH = timezone(timedelta(hours=8))
DAY0 = datetime(2026, 9, 1, 10, 0, tzinfo=SH)
"""Far enough back that the scripted 61 days are past: ingest refuses event times ahead of the clock."""


def ev(event_id: str, event_type: str, at: datetime, channel: str = "app", **extra) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "event_type": event_type,
            "occurred_at": at.isoformat(timespec="milliseconds"),
            "channel": channel,
            **extra,
        }
    )


def m(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


PHASES = [
    [  # 10:00: everyone starts
        ev("w-reg", "member_register", DAY0, "miniprogram", identities={"member_id": "MW"}),
        ev("c1-cart", "add_to_cart", DAY0, "web", identities={"member_id": "MC1"}, properties={"amount": 99}),
        ev("c2-cart", "add_to_cart", DAY0, "web", identities={"member_id": "MC2"}, properties={"amount": 99}),
        ev("c3-cart", "add_to_cart", DAY0, "official_account", identities={"member_id": "MC3"}),
        ev("cap-reg", "member_register", DAY0, identities={"member_id": "MK"}),
        ev(
            "vip-order",
            "order_paid",
            DAY0,
            "pos",
            identities={"member_id": "MV"},
            store_id="SH001",
            properties={"amount": 6800},
        ),
        ev("mg-reg", "member_register", DAY0, identities={"member_id": "MG", "device_id": "DG"}),
        ev("mg-view", "page_view", DAY0, identities={"phone": "13911112222"}),
    ],
    [  # the orders that decide the two carts: at 29:59 and at 30:01
        ev(
            "c1-order",
            "order_paid",
            DAY0 + m(29 + 59 / 60),
            identities={"member_id": "MC1"},
            properties={"amount": 99},
        ),
        ev(
            "c2-order",
            "order_paid",
            DAY0 + m(30 + 1 / 60),
            identities={"member_id": "MC2"},
            properties={"amount": 99},
        ),
    ],
    [  # the capped person abandons two more carts the same week; the VIP visits a store late
        ev("cap-cart1", "add_to_cart", DAY0 + timedelta(hours=2), identities={"member_id": "MK"}),
        ev("cap-cart2", "add_to_cart", DAY0 + timedelta(days=2), identities={"member_id": "MK"}),
        ev(
            "vip-visit",
            "store_visit",
            DAY0.replace(hour=23, minute=10),
            "pos",
            identities={"member_id": "MV"},
            store_id="SH001",
        ),
        ev(
            "mg-link",
            "login",
            DAY0 + timedelta(days=3),
            identities={"member_id": "MG", "phone": "13911112222"},
        ),
    ],
    [  # registering again through the merged-in phone: the welcome limit came along
        ev("mg-reg2", "member_register", DAY0 + timedelta(days=4), identities={"phone": "+86 139-1111-2222"}),
        ev("w-reg2", "member_register", DAY0 + timedelta(days=40), identities={"member_id": "MW"}),
    ],
]

# More people, phase by phase: a bound customer browsing bags, a buyer back after 61 days, and
# someone whose only channel is SMS (1 per 60 days).
PHASES[0] += [
    ev(
        "bi-bind",
        "guide_bind",
        DAY0,
        "wecom",
        identities={"member_id": "MB"},
        guide_id="G2002",
        store_id="SH002",
    ),
    ev("wb-order", "order_paid", DAY0, identities={"member_id": "MWB"}, properties={"amount": 50}),
    ev("sms-reg", "member_register", DAY0, "sms", identities={"member_id": "MS"}),
]
PHASES[1] += [
    ev(
        f"bi-view{n}",
        "product_view",
        DAY0 + m(n),
        identities={"member_id": "MB"},
        properties={"category": "bags"},
    )
    for n in (1, 2, 3, 4)
]
PHASES[2] += [ev("sms-cart", "add_to_cart", DAY0 + timedelta(days=1), "sms", identities={"member_id": "MS"})]
PHASES[3] += [ev("wb-login", "login", DAY0 + timedelta(days=61), identities={"member_id": "MWB"})]


def _outputs(run, topo) -> dict[str, list[dict]]:
    names = [topo.topics.coupons.name, topo.topics.guide_alerts.name, topo.topics.actions_suppressed.name]
    return decoded(read_topics(run.bootstrap, names))


def test_default_rules_on_a_scripted_week(env):
    topo = env.topology
    with env.local_run() as run:
        for n, phase in enumerate(PHASES):
            run.stream_events(phase)
            run.finish_input(close_event_time=n == len(PHASES) - 1, timeout=120)
        out = _outputs(run, topo)
        # The same input again, into the same state: no new action.
        for phase in PHASES:
            run.stream_events(phase)
        run.finish_input(close_event_time=True, timeout=120)
        again = _outputs(run, topo)

    coupons = {(c["rule"], c["trigger_event_id"]): c for c in out[topo.topics.coupons.name]}
    assert set(coupons) == {
        ("welcome", "w-reg"),
        ("welcome", "cap-reg"),
        ("welcome", "mg-reg"),
        ("cart_abandon", "c2-cart"),  # the order came at 30:01
        ("cart_abandon", "c3-cart"),  # nobody came back: resolved when event time closed
        ("cart_abandon", "cap-cart1"),  # the second coupon of that week
        ("welcome", "sms-reg"),
        ("winback", "wb-login"),  # a buyer back after 61 quiet days
    }
    assert coupons[("cart_abandon", "c2-cart")]["decided_at"].startswith("2026-09-01T02:30:00")
    assert coupons[("cart_abandon", "c3-cart")]["channel"] == "official_account"
    assert coupons[("welcome", "w-reg")]["template"] == "WELCOME_10"

    suppressed = Counter(
        (s["rule"], s["trigger_event_id"], s["reason"]) for s in out[topo.topics.actions_suppressed.name]
    )
    assert suppressed == Counter(
        {
            ("cart_abandon", "cap-cart2", "cap:coupons_per_7d"): 1,
            ("welcome", "mg-reg2", "rule_limit"): 1,
            ("welcome", "w-reg2", "rule_limit"): 1,
            ("cart_abandon", "sms-cart", "cap:sms_per_60d"): 1,
            # the VIP's order made them high value, and no guide is bound to them
            ("high_value_alert", "vip-order", "no_recipient"): 1,
        }
    )

    alerts = {a["rule"]: a for a in out[topo.topics.guide_alerts.name]}
    assert len(out[topo.topics.guide_alerts.name]) == 2
    browse = alerts["browse_interest"]
    # The views of one phase arrive in any order; they are applied in event-time order.
    assert browse["trigger_event_id"] == "bi-view3" and browse["guide_id"] == "G2002"
    assert browse["tags"]["views_24h"] == {"bags": 3}
    alert = alerts["vip_store_visit"]
    assert alert["guide_id"] == "G1001"
    assert alert["decided_at"].startswith("2026-09-02T00:00:00")  # 08:00 in Shanghai, after quiet hours
    assert "¥6,800" in alert["message"] and alert["tags"]["lifetime_spend"] == 6800

    assert again == out
    assert len({c["coupon_key"] for c in out[topo.topics.coupons.name]}) == len(coupons)


def _population(seed: int = 7, people: int = 80) -> list[bytes]:
    """People with a stable member id and bursts of events close together in event time, in the
    order they happened (as a live feed would send them)."""
    rnd = random.Random(seed)
    kinds = ["member_register", "add_to_cart", "order_paid", "product_view", "store_visit", "guide_bind"]
    events = []
    for p in range(people):
        start = DAY0 + timedelta(minutes=rnd.randrange(3 * 24 * 60))
        for n in range(rnd.randrange(3, 12)):
            at = start + timedelta(minutes=rnd.choice([rnd.randrange(45), rnd.randrange(2 * 24 * 60)]))
            kind = rnd.choice(kinds)
            extra = {"store_id": rnd.choice(["SH001", "BJ001"])}
            if kind == "guide_bind":
                extra["guide_id"] = "G7001"
            properties = {
                "amount": rnd.choice([0, 80, 3000, 6000]),
                "category": rnd.choice(["bags", "shoes"]),
            }
            channel = rnd.choice(["app", "sms", "official_account", "miniprogram", "pos"])
            identities = {"member_id": f"MP{p:05d}"}
            events.append(
                (
                    at,
                    ev(
                        f"pop-{p}-{n}",
                        kind,
                        at,
                        channel,
                        identities=identities,
                        properties=properties,
                        **extra,
                    ),
                )
            )
    return [line for _, line in sorted(events)]


def _decided_keys(env) -> tuple[set[str], int, float]:
    topo = env.topology
    with env.local_run() as run:
        run.stream_events(_population())
        run.finish_input(close_event_time=True, timeout=180)
        out = _outputs(run, topo)
        late = metric(run.web_port, "stream_app_tags_late_events_total")
    keys = {c["coupon_key"] for c in out[topo.topics.coupons.name]}
    keys |= {a["alert_key"] for a in out[topo.topics.guide_alerts.name]}
    return keys, len(out[topo.topics.actions_suppressed.name]), late


def test_the_same_actions_whatever_the_partitioning(make_env):
    """A replay at full speed, through 1 partition and through 8: the same actions.

    Events reach the person stage out of order (partitions interleave, the linker is slower than the
    identity fast path) while event time races ahead of the wall clock. Watermarks made at the input
    and carried along every path hold each person's events until nothing older can come, so both
    runs apply them in event-time order. (Without them, ~24 of ~90 keys differed.)"""
    single = {name: 1 for name in ("touchpoints", "events_by_id", "identity_map", "person_events")}
    one, one_suppressed, one_late = _decided_keys(make_env(single))
    many, many_suppressed, many_late = _decided_keys(make_env())
    assert (one_late, many_late) == (0, 0), "events arrived behind the watermark"
    assert len(one) > 40 and one_suppressed > 10  # the caps and limits had something to decide
    assert one == many, f"only with 1 partition: {len(one - many)}, only with 8: {len(many - one)}"
    assert one_suppressed == many_suppressed


def test_a_live_cart_abandonment_fires_though_nobody_comes_back(make_env):
    """No end-of-input marker: only the wall clock moves event time on once the input is quiet."""
    rules = yaml.safe_load((REPO / "topology.yaml").read_text())["rules"]
    rules["cart_abandon"]["absent"]["within"] = "3s"  # 30 minutes would take 30 minutes
    env = make_env(allowed_lateness="1s", rules=rules)
    now = datetime.now(SH)
    events = [
        ev("live-cart", "add_to_cart", now, identities={"member_id": "ML1"}),
        ev("live-cart2", "add_to_cart", now, identities={"member_id": "ML2"}),
        ev("live-order", "order_paid", now + timedelta(seconds=1), identities={"member_id": "ML2"}),
    ]
    name = env.topology.topics.coupons.name
    with env.local_run() as run:
        run.stream_events(events)
        deadline = time.monotonic() + 90
        coupons: list[dict] = []
        while not coupons and time.monotonic() < deadline:
            time.sleep(2)
            records = read_topics(run.bootstrap, [name], idle_timeout=2)[name]
            coupons = [orjson.loads(r.value) for r in records]
            run.check_alive()
    assert [(c["rule"], c["trigger_event_id"]) for c in coupons] == [("cart_abandon", "live-cart")]
    decided = datetime.fromisoformat(coupons[0]["decided_at"])
    assert decided == datetime.fromisoformat(now.isoformat(timespec="milliseconds")) + timedelta(seconds=3)


def test_live_traffic_after_a_replay_is_acted_on(make_env):
    """As `make run` does: a day of history replayed and closed, then live events (event time =
    now) into the running worker. The replayed partitions' event time stands in the past; once
    they have been quiet for a while they are idle and hold nobody back, so the live events are
    applied and acted on (they once waited for the old day's clock to reach today)."""
    env = make_env()
    history = generate(people=40, days=1, seed=11, start=datetime(2026, 10, 1, tzinfo=SH)).lines
    name = env.topology.topics.coupons.name
    with env.local_run() as run:
        run.stream_events(history)
        run.finish_input(close_event_time=True, timeout=180)
        time.sleep(11)  # the replayed partitions go idle (10 s quiet)
        now = datetime.now(SH)
        live = [
            ev(f"live-reg-{n}", "member_register", now, identities={"member_id": f"MLIVE{n}"})
            for n in range(8)
        ]
        run.stream_events(live)
        deadline = time.monotonic() + 60
        welcomed: dict[str, dict] = {}
        while len(welcomed) < len(live) and time.monotonic() < deadline:
            time.sleep(1)
            for r in read_topics(run.bootstrap, [name], idle_timeout=1)[name]:
                coupon = orjson.loads(r.value)
                if coupon["trigger_event_id"].startswith("live-reg-"):
                    welcomed[coupon["trigger_event_id"]] = coupon
            run.check_alive()
        late = metric(run.web_port, "stream_app_tags_late_events_total")
    assert sorted(welcomed) == sorted(f"live-reg-{n}" for n in range(8))
    assert {c["rule"] for c in welcomed.values()} == {"welcome"}
    assert late == 0, "a live event was applied late (behind the watermark)"


def _recount(resolved: list[dict], merges: list[dict]) -> Counter:
    """The default rules worked out directly from the resolved events, person by person in event
    time: an oracle written apart from the engine (no caps: the test checks none applied)."""
    final = final_one_id(merges)
    people: dict[str, list[dict]] = {}
    for e in resolved:
        people.setdefault(final(e["one_id"]), []).append(e)
    minute, hour = 60_000, 3_600_000
    counts: Counter = Counter()
    for events in people.values():
        events.sort(key=lambda e: (e["event_time_ms"], e["event_id"]))
        if any(e["event_type"] == "member_register" for e in events):
            counts["welcome"] += 1
        last_cart, spend, guide = None, 0.0, None
        views: dict[str, list[int]] = {}
        browsed: dict[str, int] = {}
        visited: dict[str, int] = {}
        for e in events:
            t, props = e["event_time_ms"], e.get("properties") or {}
            if e["event_type"] == "add_to_cart":
                ordered = any(
                    x["event_type"] == "order_paid" and t < x["event_time_ms"] <= t + 30 * minute
                    for x in events
                )
                if not ordered and (last_cart is None or t + 30 * minute - last_cart >= 24 * hour):
                    last_cart = t + 30 * minute
                    counts["cart_abandon"] += 1
            if e["event_type"] == "order_paid":
                was_high = spend >= 5000
                spend += props.get("amount") or 0
                if spend >= 5000 and not was_high:  # enters high_value: alert the bound guide
                    counts["high_value_alert" if guide else "high_value_alert:no_recipient"] += 1
            if e["event_type"] in ("guide_bind", "wecom_message") and e.get("guide_id"):
                guide = e["guide_id"]
            if e["event_type"] == "product_view" and props.get("category"):
                category = props["category"]
                views[category] = [x for x in views.get(category, []) if x > t - 24 * hour] + [t]
                if len(views[category]) == 3 and t - browsed.get(category, t - 24 * hour) >= 24 * hour:
                    browsed[category] = t
                    counts["browse_interest" if guide else "browse_interest:no_recipient"] += 1
            if e["event_type"] == "store_visit" and spend >= 5000:
                store = e.get("store_id")
                if t - visited.get(store, t - 12 * hour) >= 12 * hour:
                    visited[store] = t
                    counts["vip_store_visit"] += 1
    return counts


def test_a_generated_day_equals_an_independent_recount(env):
    """Every action of a generated day (identity merges, junk and resends included), per rule,
    equals what the rules say when worked out directly from the resolved events."""
    topo = env.topology
    with env.local_run() as run:
        run.stream_events(generate(people=600, days=1, seed=17).lines)
        run.finish_input(close_event_time=True, timeout=240)
        out = _outputs(run, topo)
        names = [topo.topics.resolved.name, topo.topics.identity_merges.name]
        read = decoded(read_topics(run.bootstrap, names))
    decided: Counter = Counter()
    for name in (topo.topics.coupons.name, topo.topics.guide_alerts.name):
        decided.update(a["rule"] for a in out[name])
    held_back = out[topo.topics.actions_suppressed.name]
    decided.update(f"{s['rule']}:{s['reason']}" for s in held_back)
    assert not [s for s in held_back if s["reason"].startswith("cap:")]  # the oracle knows no caps
    expected = _recount(read[topo.topics.resolved.name], read[topo.topics.identity_merges.name])
    assert decided == expected
    assert expected["cart_abandon"] > 20 and expected["welcome"] > 10 and expected["browse_interest"] > 3
    assert expected["high_value_alert"] + expected["high_value_alert:no_recipient"] > 0
