"""Rules triggered by audience changes (`when: {audience_enter: ...}` / `audience_exit`) through the
person stage's pure core: the default `high_value_alert`, limits, exits, expiries from the
watermark alone, merges, late causes, quiet hours and holdouts.

Expectations are written from the scenario (who is bound to which guide, what was spent, when),
and the trigger of each action is checked against the `audience-changes` record that caused it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import yaml

from stream_app.audiences import AudienceEngine
from stream_app.config.topology import Topology, parse_topology
from stream_app.effect.holdout import held_out
from stream_app.metrics import Metrics
from stream_app.people.processor import PersonProcessor
from stream_app.rules.engine import RuleEngine
from stream_app.tags.engine import TagEngine
from tests.unit.effect.helpers import without_holdouts
from tests.unit.rules.test_rules import DAY, HOUR, MIN, T, at
from tests.unit.test_topology import REPO

WALL = T + 400 * DAY

INTEREST_ALERT = {
    "when": {"audience_enter": "category_interest"},
    "guide_alert": {"to": ["bound_guide"], "message": "客户对 {sub_key} 感兴趣 ({audience})"},
    "limit": {"once": True, "by": "sub_key"},
}
BACK_COUPON = {
    "when": {"audience_exit": "lapsed_buyers"},
    "coupon": {"template": "BACK_10", "channel": "app"},
    "limit": {"per": "30d"},
}
LAPSED_ALERT = {
    "when": {"audience_enter": ["lapsed_buyers"]},
    "guide_alert": {"to": ["bound_guide"], "message": "老客户 60 天未到访：累计 ¥{lifetime_spend:,.0f}"},
    "limit": {"per": "90d"},
}


def topology(**rules: dict) -> Topology:
    """The default topology, no holdouts, with `rules` added (a rule given None is removed)."""
    data = yaml.safe_load((REPO / "topology.yaml").read_text())
    for name, rule in rules.items():
        if rule is None:
            data["rules"].pop(name)
        else:
            data["rules"][name] = rule
    return without_holdouts(parse_topology(data, source="test"))


def processor(topo: Topology | None = None) -> PersonProcessor:
    topo = topo or topology()
    return PersonProcessor(
        TagEngine.from_specs(topo.tags),
        RuleEngine(topo.rules, topo.contact_policy, topo.stores),
        {},
        {},
        {},
        Metrics(),
        lambda: WALL / 1000,
        audiences=AudienceEngine.from_specs(topo.audiences, topo.tags),
    )


def event(event_id: str, one_id: str, event_type: str, t: int, channel: str = "app", **extra: Any) -> dict:
    return {
        "event_id": event_id,
        "one_id": one_id,
        "event_type": event_type,
        "event_time_ms": t,
        "occurred_at": datetime.fromtimestamp(t / 1000).astimezone().isoformat(timespec="milliseconds"),
        "channel": channel,
        "arrived_at_ms": WALL - 50,
        "properties": extra.pop("properties", {}),
        **extra,
    }


def order(event_id: str, one_id: str, t: int, amount: float, **extra: Any) -> dict:
    return event(event_id, one_id, "order_paid", t, "pos", properties={"amount": amount}, **extra)


def bind(event_id: str, one_id: str, t: int, guide: str) -> dict:
    return event(event_id, one_id, "guide_bind", t, "wecom", guide_id=guide, store_id="SH001")


class Run:
    """A processor on one partition and everything it emitted, by output."""

    def __init__(self, topo: Topology | None = None):
        self.proc = processor(topo)
        self.out: list[tuple[str, str, Any]] = []

    def feed(self, *events: dict) -> Run:
        for e in events:
            self.handle({"kind": "event", "event": e})
        return self

    def handle(self, record: dict) -> None:
        pending = [record]
        while pending:
            for emit in self.proc.handle(pending.pop(0), 0):
                (pending.append(emit[2]) if emit[0] == "person_events" else self.out.append(emit))

    def advance(self, t: int) -> Run:
        self.out += self.proc.advance(0, t)
        return self

    def close(self) -> Run:
        self.out += self.proc.close_event_time(0)
        return self

    def values(self, output: str, rule: str | None = None) -> list[dict]:
        return [
            v for o, _, v in self.out if o == output and v is not None and (rule is None or v["rule"] == rule)
        ]

    def changes(self, audience: str, change: str) -> list[dict]:
        return [
            v for v in self.values("audience_changes") if (v["audience"], v["change"]) == (audience, change)
        ]

    def decided(self, rule: str) -> list[tuple[str, str, str]]:
        """(one_id, trigger_event_id, what) of every decision of `rule`: sent, or a reason."""
        sent = [(v["one_id"], v["trigger_event_id"], "sent") for v in self.values("guide_alerts", rule)]
        sent += [(v["one_id"], v["trigger_event_id"], "sent") for v in self.values("coupons", rule)]
        held = [
            (v["one_id"], v["trigger_event_id"], v["reason"]) for v in self.values("actions_suppressed", rule)
        ]
        return sent + held


# -- the default rule: an alert to the bound guide on entering high_value ----------------------------


def test_entering_high_value_alerts_the_bound_guide_once():
    run = Run().feed(
        bind("b1", "p1", T, "G1002"),
        order("o1", "p1", T + MIN, 3000, store_id="SH001"),
        order("o2", "p1", T + 2 * MIN, 2500, store_id="SH001"),
        order("o3", "p1", T + 3 * MIN, 900, store_id="SH001"),
    )
    run.advance(T + HOUR)
    (enter,) = run.changes("high_value", "enter")
    assert (enter["cause"], enter["event_id"]) == ("event", "o2")  # 3000 + 2500: over 5000 here
    (alert,) = run.values("guide_alerts", "high_value_alert")
    assert alert["trigger_event_id"] == "o2" and alert["guide_id"] == "G1002"
    assert alert["store_id"] == "SH001" and alert["event_time"] == enter["event_time"]
    assert alert["message"] == "客户进入高价值人群：累计消费 ¥5,500，2 笔订单"
    assert alert["tags"]["lifetime_spend"] == 5500 and alert["tags"]["order_count"] == 2
    assert run.decided("high_value_alert") == [("p1", "o2", "sent")]
    # The same events again (a replay): nothing is decided twice.
    before = len(run.out)
    run.feed(order("o2", "p1", T + 2 * MIN, 2500, store_id="SH001"), bind("b1", "p1", T, "G1002"))
    run.advance(T + 2 * HOUR)
    assert run.values("guide_alerts", "high_value_alert") == [alert] and len(run.out) == before


def test_without_a_bound_guide_nobody_can_receive_it():
    run = Run().feed(order("o1", "p1", T, 6000)).advance(T + MIN)
    assert run.decided("high_value_alert") == [("p1", "o1", "no_recipient")]
    assert run.values("guide_alerts") == []


def test_two_keys_for_two_people_and_the_same_key_for_the_same_cause():
    """The action key names the audience change: the same cause (replayed in a fresh processor)
    gives the same key, another person's change another."""
    keys = []
    for one_id in ("p1", "p1", "p2"):
        run = Run().feed(bind("b", one_id, T, "G1"), order("o", one_id, T + MIN, 7000)).advance(T + HOUR)
        (alert,) = run.values("guide_alerts", "high_value_alert")
        keys.append(alert["alert_key"])
    assert keys[0] == keys[1] != keys[2]


def test_an_alert_in_quiet_hours_waits_for_the_morning():
    late_evening = at("2026-11-22 23:10")
    run = Run().feed(bind("b1", "p1", T, "G1"), order("o1", "p1", late_evening, 6000, store_id="SH001"))
    run.advance(late_evening + HOUR)
    assert run.values("guide_alerts") == []
    run.advance(at("2026-11-23 08:00") + 1)
    (alert,) = run.values("guide_alerts", "high_value_alert")
    assert alert["decided_at"] == "2026-11-23T00:00:00.000+00:00"  # 08:00 in Shanghai
    assert alert["trigger_event_id"] == "o1"


def test_a_late_cause_is_not_acted_on_after_stale_after():
    """The order arrives 3 hours behind event time: it still counts (the person enters), but an
    alert for it now would come 3 hours late (`stale_after` 10m): suppressed, `late`."""
    run = Run().feed(bind("b1", "p1", T, "G1"), event("v1", "p2", "page_view", T + 3 * HOUR))
    run.advance(T + 3 * HOUR)
    run.feed(order("o1", "p1", T + MIN, 6000))
    assert [c["cause"] for c in run.changes("high_value", "enter")] == ["event"]
    assert run.decided("high_value_alert") == [("p1", "o1", "late")]


def test_a_holdout_holds_the_alert_back_by_one_id():
    topo = topology()
    spec = topo.rules["high_value_alert"]
    held = spec.model_copy(update={"effect": spec.effect.model_copy(update={"holdout": 0.5})})
    topo = topo.model_copy(update={"rules": {**topo.rules, "high_value_alert": held}})
    people = [f"p_{n:016x}" for n in range(12)]
    run = Run(topo)
    for n, one_id in enumerate(people):
        run.feed(bind(f"b{n}", one_id, T, "G1"), order(f"o{n}", one_id, T + MIN, 6000))
    run.advance(T + HOUR)
    expected = {
        (p, f"o{n}", "holdout" if held_out(p, "high_value_alert", 0.5) else "sent")
        for n, p in enumerate(people)
    }
    assert set(run.decided("high_value_alert")) == expected
    assert {what for _, _, what in expected} == {"holdout", "sent"}  # both groups met


# -- other triggers: sub-keys and limits, exits, expiries ------------------------------------------


def test_a_sub_keyed_audience_limits_per_sub_key():
    """`category_interest` by category, `limit: {once: true, by: sub_key}`: bags once ever, shoes
    once as well; bags again after its lapse is held back by the limit."""
    views = [("bags", 1), ("bags", 2), ("shoes", 3), ("shoes", 4), ("bags", 30 * 60), ("bags", 30 * 60 + 1)]
    run = Run(topology(interest_alert=INTEREST_ALERT)).feed(
        bind("b1", "p1", T, "G1"),
        *[
            event(f"v{n}", "p1", "product_view", T + minute * MIN, properties={"category": c})
            for n, (c, minute) in enumerate(views)
        ],
    )
    run.close()
    enters = run.changes("category_interest", "enter")
    assert [(c["sub_key"], c["event_id"]) for c in enters] == [
        ("bags", "v1"),
        ("shoes", "v3"),
        ("bags", "v5"),
    ]
    assert [c["cause"] for c in run.changes("category_interest", "exit")] == ["expired", "expired"]
    assert run.decided("interest_alert") == [
        ("p1", "v1", "sent"),
        ("p1", "v3", "sent"),
        ("p1", "v5", "rule_limit"),
    ]
    messages = [a["message"] for a in run.values("guide_alerts", "interest_alert")]
    assert messages == ["客户对 bags 感兴趣 (category_interest)", "客户对 shoes 感兴趣 (category_interest)"]


def test_a_named_sub_key_triggers_on_that_membership_only():
    rule = {**INTEREST_ALERT, "when": {"audience_enter": "category_interest[shoes]"}}
    run = Run(topology(interest_alert=rule)).feed(
        bind("b1", "p1", T, "G1"),
        *[
            event(f"v{n}", "p1", "product_view", T + n * MIN, properties={"category": c})
            for n, c in enumerate(["bags", "bags", "shoes", "shoes"], start=1)
        ],
    )
    run.advance(T + HOUR)
    assert len(run.changes("category_interest", "enter")) == 2
    assert run.decided("interest_alert") == [("p1", "v4", "sent")]


def test_entering_lapsed_buyers_fires_from_the_watermark_with_no_event():
    run = Run(topology(lapsed_alert=LAPSED_ALERT)).feed(
        bind("b1", "p1", T, "G7"), order("o1", "p1", T + MIN, 180)
    )
    run.advance(T + 59 * DAY)
    assert run.decided("lapsed_alert") == []
    run.advance(T + 61 * DAY)  # nobody came: event time alone passes day 60
    (enter,) = run.changes("lapsed_buyers", "enter")
    assert (enter["cause"], enter["event_id"]) == ("expired", None)
    (alert,) = run.values("guide_alerts", "lapsed_alert")
    # No event caused it: the action names the audience change, and its moment.
    assert alert["trigger_event_id"] == enter["change_key"] and alert["event_time"] == enter["event_time"]
    assert alert["guide_id"] == "G7" and alert["store_id"] is None
    assert alert["message"] == "老客户 60 天未到访：累计 ¥180"
    lapse = datetime.fromisoformat(enter["event_time"])
    assert datetime.fromisoformat(alert["decided_at"]) == lapse
    assert abs(lapse.timestamp() * 1000 - (T + MIN + 60 * DAY)) <= 2  # (float days: a ms either way)


def test_leaving_lapsed_buyers_by_coming_back_triggers_an_exit_rule():
    run = Run(topology(back_coupon=BACK_COUPON)).feed(order("o1", "p1", T, 80))
    run.advance(T + 61 * DAY)
    assert run.decided("back_coupon") == []  # entering is not leaving
    run.feed(event("l1", "p1", "login", T + 70 * DAY, "sms")).advance(T + 71 * DAY)
    (exit_,) = run.changes("lapsed_buyers", "exit")
    assert (exit_["cause"], exit_["event_id"]) == ("event", "l1")
    coupons = {c["rule"]: c for c in run.values("coupons")}
    assert set(coupons) == {"back_coupon", "winback"}  # winback: the same login, 70 quiet days
    back = coupons["back_coupon"]
    assert (back["trigger_event_id"], back["template"], back["channel"]) == ("l1", "BACK_10", "app")
    assert coupons["back_coupon"]["coupon_key"] != coupons["winback"]["coupon_key"]


def test_an_if_reads_the_tags_at_the_change():
    rule = {**LAPSED_ALERT, "if": "lifetime_spend >= 100"}
    run = Run(topology(lapsed_alert=rule)).feed(
        bind("b1", "p1", T, "G1"),
        order("o1", "p1", T + MIN, 150),
        bind("b2", "p2", T, "G2"),
        order("o2", "p2", T + MIN, 50),
    )
    run.advance(T + 61 * DAY)
    assert {c["one_id"] for c in run.changes("lapsed_buyers", "enter")} == {"p1", "p2"}
    assert [(one_id, what) for one_id, _, what in run.decided("lapsed_alert")] == [("p1", "sent")]


# -- merges ----------------------------------------------------------------------------------------


def _merge(run: Run, survivor: str, merged: str) -> None:
    run.handle({"kind": "merge", "one_id": survivor, "merged_one_id": merged, "event_time_ms": T + 10 * MIN})


def test_two_fragments_that_together_pass_5000_alert_on_the_merge():
    run = Run().feed(
        bind("b1", "p1", T, "G1"), order("o1", "p1", T + MIN, 3000), order("o2", "p2", T + MIN, 3000)
    )
    run.advance(T + 5 * MIN)
    assert run.changes("high_value", "enter") == []
    _merge(run, "p1", "p2")
    (enter,) = run.changes("high_value", "enter")
    assert (enter["one_id"], enter["cause"]) == ("p1", "merged")
    (alert,) = run.values("guide_alerts", "high_value_alert")
    assert (alert["one_id"], alert["trigger_event_id"], alert["guide_id"]) == (
        "p1",
        enter["change_key"],
        "G1",
    )
    assert alert["tags"]["lifetime_spend"] == 6000


def test_the_limit_comes_along_with_a_merge_and_the_merged_one_id_leaving_triggers_nothing():
    """p2 was alerted as high value; merged into p1 (not in the audience), p1 enters on the
    merge: the `once` limit came along, so it is held back; p2's own exit (merged) triggers no
    exit rule, since p2 is gone."""
    on_exit = {
        "when": {"audience_exit": "high_value"},
        "guide_alert": {"to": ["bound_guide"], "message": "客户离开高价值人群"},
        "limit": {"per": "1d"},
    }
    run = Run(topology(high_value_left=on_exit)).feed(
        bind("b1", "p1", T, "G1"),
        bind("b2", "p2", T, "G2"),
        order("o2", "p2", T + MIN, 6000),
    )
    run.advance(T + 5 * MIN)
    assert run.decided("high_value_alert") == [("p2", "o2", "sent")]
    _merge(run, "p1", "p2")
    run.close()
    assert [(c["one_id"], c["cause"]) for c in run.changes("high_value", "exit")] == [("p2", "merged")]
    (enter,) = [c for c in run.changes("high_value", "enter") if c["one_id"] == "p1"]
    assert run.decided("high_value_alert") == [
        ("p2", "o2", "sent"),
        ("p1", enter["change_key"], "rule_limit"),
    ]
    assert run.decided("high_value_left") == []
    # The absorb again (a replay after a crash): nothing new.
    before = len(run.out)
    run.handle({"kind": "absorb", "one_id": "p1", "merged_one_id": "p2", "state": {}})
    assert len(run.out) == before
