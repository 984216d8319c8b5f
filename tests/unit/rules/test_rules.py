"""The default trigger rules and the contact policy, on the pure engines (no I/O)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import yaml

from stream_app.config import TopologyError, load_topology
from stream_app.config.topology import parse_topology
from stream_app.rules.engine import RuleEngine
from stream_app.tags.engine import TagEngine
from tests.unit.test_topology import REPO

TOPO = load_topology(REPO / "topology.yaml")
TAGS = TagEngine.from_specs(TOPO.tags)
SHANGHAI = timezone(timedelta(hours=8))
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def at(text: str) -> int:
    """Event time of a Shanghai wall-clock time, e.g. '2026-11-22 10:00'."""
    return int(datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp() * 1000)


class Person:
    """One person's tag and rule state, fed events in order, with event time advancing."""

    def __init__(self, rules: RuleEngine | None = None):
        self.rules = rules or RuleEngine(TOPO.rules, TOPO.contact_policy, TOPO.stores)
        self.tags = None
        self.state = None
        self.out = []
        self.n = 0

    def event(self, event_type: str, t: int, channel: str = "app", **extra) -> None:
        self.n += 1
        event = {
            "event_id": extra.pop("event_id", f"e{self.n}"),
            "event_type": event_type,
            "event_time_ms": t,
            "occurred_at": str(t),
            "channel": channel,
            "properties": extra.pop("properties", {}),
            **extra,
        }
        self.time(t)
        last = self.tags["last_ms"] if self.tags else None
        before = TAGS.read(self.tags, t)
        self.tags, _ = TAGS.apply(self.tags, event, t)
        after = TAGS.read(self.tags, t)
        gap = None if last is None else (t - last) / DAY
        self.state, outcomes = self.rules.on_event(self.state, event, before, after, gap)
        self.out += outcomes

    def time(self, now: int) -> None:
        self.state, outcomes = self.rules.on_time(self.state, now, TAGS.read(self.tags, now))
        self.out += outcomes

    def emitted(self, rule=None):
        return [o for o in self.out if o.suppressed is None and (rule is None or o.rule == rule)]

    def suppressed(self):
        return [(o.rule, o.suppressed) for o in self.out if o.suppressed]


T = at("2026-11-22 10:00")


def test_welcome_once_ever():
    p = Person()
    p.event("member_register", T, channel="miniprogram")
    p.event("member_register", T + 40 * DAY)
    (coupon,) = p.emitted("welcome")
    assert coupon.fields == {"template": "WELCOME_10", "channel": "miniprogram"}
    assert p.suppressed() == [("welcome", "rule_limit")]


def test_cart_abandon_window_edges():
    cancelled, fired = Person(), Person()
    for p, minutes in ((cancelled, 29.99), (fired, 30.02)):
        p.event("add_to_cart", T, channel="web", properties={"amount": 100})
        p.event("order_paid", T + int(minutes * MIN), properties={"amount": 100})
        p.time(T + 2 * HOUR)
    assert cancelled.emitted("cart_abandon") == []
    (coupon,) = fired.emitted("cart_abandon")
    assert coupon.at_ms == T + 30 * MIN and coupon.fields["channel"] == "web"


def test_cart_abandon_fires_when_the_person_never_comes_back():
    p = Person()
    p.event("add_to_cart", T)
    p.time(T + 29 * MIN)
    assert p.emitted() == []
    p.time(T + 31 * MIN)
    assert len(p.emitted("cart_abandon")) == 1


def test_cart_abandon_at_most_once_per_24h():
    p = Person()
    p.event("add_to_cart", T)
    p.event("add_to_cart", T + 2 * HOUR)
    p.event("add_to_cart", T + 25 * HOUR)
    p.time(T + 30 * HOUR)
    assert [o.at_ms for o in p.emitted("cart_abandon")] == [T + 30 * MIN, T + 25 * HOUR + 30 * MIN]
    assert ("cart_abandon", "rule_limit") in p.suppressed()


def test_two_coupons_per_rolling_week_over_all_rules():
    p = Person()
    p.event("member_register", T)  # WELCOME_10
    p.event("add_to_cart", T + HOUR)  # CART_5 at +1h30
    p.event("add_to_cart", T + 2 * DAY)  # a third coupon within 7 days: capped
    p.time(T + 3 * DAY)
    assert len(p.emitted()) == 2
    assert p.suppressed() == [("cart_abandon", "cap:coupons_per_7d")]
    p.event("add_to_cart", T + 8 * DAY)  # the week has rolled on
    p.time(T + 9 * DAY)
    assert len(p.emitted()) == 3


def test_sms_at_most_once_per_60_days():
    p = Person()
    p.event("member_register", T, channel="sms")
    p.event("add_to_cart", T + 10 * DAY, channel="sms")
    p.time(T + 11 * DAY)
    assert p.suppressed() == [("cart_abandon", "cap:sms_per_60d")]


def _vip(p: Person, t: int) -> None:
    p.event("order_paid", t, channel="pos", properties={"amount": 6000})


def test_vip_store_visit_alerts_the_bound_guide_else_the_duty_guide():
    bound, unbound, not_vip = Person(), Person(), Person()
    for p in (bound, unbound):
        _vip(p, T - DAY)
    bound.event("guide_bind", T - HOUR, channel="wecom", guide_id="G1002", store_id="SH001")
    for p in (bound, unbound, not_vip):
        p.event("store_visit", T, channel="pos", store_id="SH001")
    assert bound.emitted("vip_store_visit")[0].fields["guide_id"] == "G1002"
    alert = unbound.emitted("vip_store_visit")[0]
    assert alert.fields["guide_id"] == "G1001" and "¥6,000" in alert.fields["message"]
    assert alert.fields["tags"]["lifetime_spend"] == 6000
    assert not_vip.emitted("vip_store_visit") == []


def test_vip_store_visit_once_per_store_per_12h():
    p = Person()
    morning = at("2026-11-22 08:30")  # + 13 h is 21:30, before the quiet hours
    _vip(p, morning - DAY)
    p.event("store_visit", morning, store_id="SH001")
    p.event("store_visit", morning + HOUR, store_id="SH001")
    p.event("store_visit", morning + 2 * HOUR, store_id="SH002")
    p.event("store_visit", morning + 13 * HOUR, store_id="SH001")
    assert [(o.trigger["store_id"], o.at_ms) for o in p.emitted("vip_store_visit")] == [
        ("SH001", morning),
        ("SH002", morning + 2 * HOUR),
        ("SH001", morning + 13 * HOUR),
    ]


def test_guide_alerts_wait_for_the_end_of_quiet_hours():
    p = Person()
    _vip(p, T - DAY)
    late = at("2026-11-22 23:10")
    p.event("store_visit", late, store_id="SH001")
    assert p.emitted("vip_store_visit") == []
    p.time(at("2026-11-23 07:59"))
    assert p.emitted("vip_store_visit") == []
    p.time(at("2026-11-23 08:00"))
    (alert,) = p.emitted("vip_store_visit")
    assert alert.at_ms == at("2026-11-23 08:00") and alert.trigger["event_time_ms"] == late


def test_browse_interest_on_the_third_view_of_a_category():
    p = Person()
    p.event("wecom_message", T - HOUR, channel="wecom", guide_id="G3001")
    for n in range(4):
        p.event("product_view", T + n * MIN, properties={"category": "bags"})
    (alert,) = p.emitted("browse_interest")
    assert alert.trigger["event_id"] == "e4" and alert.fields["guide_id"] == "G3001"
    assert "bags" in alert.fields["message"]
    unbound = Person()
    for n in range(3):
        unbound.event("product_view", T + n * MIN, properties={"category": "bags"})
    assert unbound.suppressed() == [("browse_interest", "no_recipient")]


def test_winback_after_sixty_quiet_days_for_buyers_only():
    buyer, browser = Person(), Person()
    buyer.event("order_paid", T, properties={"amount": 10})
    browser.event("page_view", T)
    for p in (buyer, browser):
        p.event("page_view", T + 59 * DAY)
        p.event("login", T + 120 * DAY)
    assert [o.trigger["event_type"] for o in buyer.emitted("winback")] == ["login"]
    assert browser.emitted("winback") == []


def test_a_replayed_event_decides_nothing_new():
    p = Person()
    p.event("member_register", T, event_id="reg-1")
    p.event("member_register", T, event_id="reg-1")
    assert len(p.emitted()) == 1 and p.suppressed() == []


def test_limits_follow_the_person_across_a_merge():
    rules = RuleEngine(TOPO.rules, TOPO.contact_policy, TOPO.stores)
    got_welcome, other = Person(rules), Person(rules)
    got_welcome.event("member_register", T)
    other.event("page_view", T)
    merged = Person(rules)
    merged.tags = TAGS.merge(got_welcome.tags, other.tags, T)
    merged.state = rules.merge(other.state, got_welcome.state)
    merged.n = 10
    merged.event("member_register", T + DAY)
    assert merged.emitted() == [] and merged.suppressed() == [("welcome", "rule_limit")]


def test_action_keys_depend_on_the_cause_only():
    a, b = Person(), Person()
    a.event("member_register", T, event_id="reg-9")
    b.event("page_view", T - DAY)
    b.event("member_register", T, event_id="reg-9")
    assert a.emitted()[0].key == b.emitted()[0].key


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"if": "vip and"}, "rules.bad.if: RuleSyntaxError"),
        ({"coupon": {"template": "X"}, "guide_alert": {"message": "m"}}, "exactly one action"),
        ({"limit": {"once": True, "per": "1d"}}, "either `once: true` or `per"),
        ({"limit": {"per": "a week"}}, "rules.bad.limit.per: String should match"),
        ({"guide_alert": {"message": "m", "snapshot": ["nope"]}, "coupon": None}, "unknown tag(s) ['nope']"),
        ({"absent": {"event_type": "order_paid"}}, "rules.bad.absent.within: Field required"),
    ],
)
def test_bad_rules_fail_at_load(change, reason):
    data = yaml.safe_load((REPO / "topology.yaml").read_text())
    rule = {"when": {"event_type": "login"}, "coupon": {"template": "T"}, "limit": {"once": True}}
    rule.update(change)
    data["rules"]["bad"] = {k: v for k, v in rule.items() if v is not None}
    with pytest.raises(TopologyError) as err:
        parse_topology(data, source="t.yaml")
    assert any(reason in p for p in err.value.problems), err.value.problems


def test_unknown_store_time_zone_fails_at_load():
    data = yaml.safe_load((REPO / "topology.yaml").read_text())
    data["stores"]["XX1"] = {"duty_guide": "G", "timezone": "Mars/Olympus"}
    with pytest.raises(TopologyError, match=r"stores\.XX1\.timezone: .*unknown time zone"):
        parse_topology(data, source="t.yaml")


def test_an_order_that_overtakes_its_cart_still_cancels_the_coupon():
    p = Person()
    p.event("order_paid", T + 10 * MIN, properties={"amount": 100})
    p.event("add_to_cart", T, properties={"amount": 100})
    p.time(T + 2 * HOUR)
    assert p.emitted("cart_abandon") == []
