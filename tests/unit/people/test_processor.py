"""The person stage's core on plain dicts: event-time order, held events, ticks, merges, and the
property that the actions decided do not depend on how many partitions carried the events."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.config import load_topology
from stream_app.config.topology import duration_ms
from stream_app.metrics import Metrics
from stream_app.people.processor import PersonProcessor, empty_person
from stream_app.rules.engine import RuleEngine
from stream_app.tags.engine import TagEngine
from tests.unit.effect.helpers import without_holdouts
from tests.unit.rules.test_rules import DAY, MIN, T
from tests.unit.test_topology import REPO

TOPO = without_holdouts(load_topology(REPO / "topology.yaml"))
"""Without holdouts: these tests are about when actions are decided, not who is held out."""
LATENESS = duration_ms(TOPO.allowed_lateness)
ACTIONS = {"coupons": "coupon_key", "guide_alerts": "alert_key"}


def processor() -> PersonProcessor:
    return PersonProcessor(
        TagEngine.from_specs(TOPO.tags),
        RuleEngine(TOPO.rules, TOPO.contact_policy, TOPO.stores),
        {},
        {},
        {},
        Metrics(),
        lambda: 0.0,
    )


def event(event_id: str, one_id: str, event_type: str, t: int, channel: str = "app", **extra) -> dict:
    return {
        "event_id": event_id,
        "one_id": one_id,
        "event_type": event_type,
        "event_time_ms": t,
        "occurred_at": str(t),
        "channel": channel,
        "properties": extra.pop("properties", {}),
        **extra,
    }


def feed(proc: PersonProcessor, events: list[dict], partition: int = 0) -> list:
    out = []
    for e in events:
        out += proc.handle({"kind": "event", "event": e}, partition)
    return out


def actions(emits) -> list[tuple[str, str]]:
    """(rule, trigger event) of each action emitted."""
    return [(v["rule"], v["trigger_event_id"]) for output, _, v in emits if output in ACTIONS]


def test_an_event_waits_for_event_time_to_pass_it():
    proc = processor()
    out = feed(proc, [event("reg", "p1", "member_register", T)])
    assert actions(out) == [] and proc.profile("p1")["events_waiting_for_event_time"] == 1
    assert actions(proc.advance(0, T)) == []  # an event at the watermark's moment may still come
    assert actions(proc.advance(0, T + 1)) == [("welcome", "reg")]
    assert proc.profile("p1")["events_waiting_for_event_time"] == 0


def test_events_that_arrive_out_of_order_are_applied_in_event_time_order():
    bind = event("bind", "p1", "guide_bind", T, "wecom", guide_id="G9")
    bags = {"category": "bags"}
    views = [event(f"v{n}", "p1", "product_view", T + n * MIN, properties=bags) for n in (1, 2, 3)]
    proc = processor()
    out = feed(proc, [bind, views[2], views[0], views[1]])
    out += proc.close_event_time(0)
    # The third view in event time takes views_24h[bags] to 3, not the third to arrive.
    assert actions(out) == [("browse_interest", "v3")]


def test_an_order_at_the_deadline_closes_the_window_and_one_after_it_does_not():
    proc = processor()
    events = [
        event("c1", "p1", "add_to_cart", T),
        event("o1", "p1", "order_paid", T + 30 * MIN, properties={"amount": 9}),
        event("c2", "p2", "add_to_cart", T),
        event("o2", "p2", "order_paid", T + 30 * MIN + 1, properties={"amount": 9}),
    ]
    out = feed(proc, list(reversed(events))) + proc.close_event_time(0)
    assert actions(out) == [("cart_abandon", "c2")]


def test_a_late_event_is_applied_at_once_and_counted():
    proc = processor()
    proc.advance(0, T + DAY)
    out = feed(proc, [event("reg", "p1", "member_register", T)])
    assert actions(out) == [("welcome", "reg")]
    assert proc.metrics.tags_late_events._value.get() == 1


def suppressed(emits) -> list[tuple[str, str, str]]:
    return [(v["rule"], v["trigger_event_id"], v["reason"]) for o, _, v in emits if o == "actions_suppressed"]


def test_a_far_past_event_counts_in_tags_but_opens_no_window_that_has_closed():
    """A cart from last year arriving today: its 30-minute window closed long ago. It must not
    fire a coupon now; it is recorded as suppressed (late), and its amount still counts."""
    proc = processor()
    proc.advance(0, T + 400 * DAY)
    out = feed(proc, [event("old-cart", "p1", "add_to_cart", T, properties={"amount": 12})])
    out += proc.advance(0, T + 401 * DAY)
    assert actions(out) == []
    assert suppressed(out) == [("cart_abandon", "old-cart", "late")]
    assert proc.metrics.tags_late_events._value.get() == 1


def test_a_late_event_whose_window_is_still_open_waits_for_its_deadline():
    proc = processor()
    proc.advance(0, T + 10 * MIN)
    out = feed(proc, [event("cart", "p1", "add_to_cart", T)])  # 10 min late, window open to 30 min
    assert actions(out) == [] and suppressed(out) == []
    assert actions(proc.advance(0, T + 31 * MIN)) == [("cart_abandon", "cart")]


def test_held_events_move_with_a_merge():
    proc = processor()
    feed(proc, [event("reg", "p2", "member_register", T)], partition=1)
    out = proc.handle({"kind": "merge", "one_id": "p1", "merged_one_id": "p2"}, 1)
    ((output, key, absorb),) = out
    assert (output, key) == ("person_events", "p1")
    out = proc.handle(absorb, 0) + proc.close_event_time(0) + proc.close_event_time(1)
    assert actions(out) == [("welcome", "reg")]
    assert [v["one_id"] for output, _, v in out if output == "coupons"] == ["p1"]


def test_every_hand_on_along_a_merge_chain_is_counted_where_it_leaves():
    """p3 -> p2 -> p1, the second merge reaching p2 before p3's state does: p3's held order goes
    on twice, and each partition it left says so (a bounded run waits for such hand-ons)."""
    proc = processor()
    feed(proc, [event("o3", "p3", "order_paid", T, properties={"amount": 7})], partition=3)
    ((_, _, absorb),) = proc.handle({"kind": "merge", "one_id": "p2", "merged_one_id": "p3"}, 3)
    # p2 has no state yet: only its name goes on (p1's events wait for every fragment's absorb).
    ((_, _, empty),) = proc.handle({"kind": "merge", "one_id": "p1", "merged_one_id": "p2"}, 2)
    assert (empty["merged_one_id"], empty["state"]) == ("p2", empty_person())
    ((output, key, handed_on),) = proc.handle(absorb, 2)
    assert (output, key, handed_on["one_id"]) == ("person_events", "p1", "p1")
    assert (proc.take_handed_on(3), proc.take_handed_on(2), proc.take_handed_on(0)) == (1, 2, 0)
    assert proc.take_handed_on(3) == 0  # counted once
    proc.handle(handed_on, 0)
    proc.close_event_time(0)
    assert proc.profile("p1")["tags"]["order_count"] == 1
    assert proc.profile("p1")["events_waiting_for_event_time"] == 0


def _replay_reaching_the_survivor_first(after: list[str] | None) -> PersonProcessor:
    """o1 applied at p2 (partition 2); p2 merges into p1 (partition 1); a replay of o1, resolved
    to p1 by then, reaches p1 before p2's state does."""
    proc = processor()
    order = event("o1", "p2", "order_paid", T, properties={"amount": 7})
    feed(proc, [order], partition=2)
    proc.advance(2, T + 1)
    ((_, _, absorb),) = proc.handle({"kind": "merge", "one_id": "p1", "merged_one_id": "p2"}, 2)
    feed(proc, [event("v1", "p1", "product_view", T - MIN)], partition=1)
    proc.advance(1, T + 1)
    proc.handle({"kind": "event", "event": {**order, "one_id": "p1"}, "after": after}, 1)
    proc.advance(1, T + 2)
    proc.handle(absorb, 1)
    proc.close_event_time(1)
    return proc


def test_a_replay_reaching_the_survivor_before_its_fragment_waits_for_it_and_counts_once():
    proc = _replay_reaching_the_survivor_first(after=["p2"])
    assert proc.profile("p1")["tags"]["order_count"] == 1
    assert proc.profile("p1")["events_waiting_for_event_time"] == 0


def test_without_naming_the_fragment_the_same_replay_counts_twice():
    """Why the linker names the fragments: the survivor alone cannot know the replay was seen."""
    proc = _replay_reaching_the_survivor_first(after=None)
    assert proc.profile("p1")["tags"]["order_count"] == 2


def test_an_event_waiting_for_a_fragment_lets_earlier_deadlines_fire_and_is_applied_on_its_absorb():
    proc = processor()
    feed(proc, [event("c1", "p1", "add_to_cart", T)], partition=1)  # opens a cart window
    proc.advance(1, T + 1)
    later = T + 3 * DAY
    feed(proc, [event("o1", "p1", "order_paid", later)], partition=1)
    proc.handle({"kind": "event", "event": event("o2", "p1", "order_paid", later + 1), "after": ["p9"]}, 1)
    out = proc.advance(1, later + 10)  # the cart deadline (before o2) fires; o2 and after wait
    assert [rule for rule, _ in actions(out)] == ["cart_abandon"]
    assert proc.profile("p1")["tags"]["order_count"] == 1
    assert proc.profile("p1")["events_waiting_for_event_time"] == 1
    assert proc.close_event_time(1) == []  # still waiting: nothing due loops on it
    absorb = {"kind": "absorb", "one_id": "p1", "merged_one_id": "p9", "state": empty_person()}
    proc.handle(absorb, 1)
    assert proc.profile("p1")["tags"]["order_count"] == 2
    assert proc.profile("p1")["events_waiting_for_event_time"] == 0


def test_a_replayed_event_decides_nothing_new():
    proc = processor()
    reg = event("reg", "p1", "member_register", T)
    out = feed(proc, [reg, reg]) + proc.close_event_time(0)
    out += feed(proc, [reg]) + proc.close_event_time(0)
    assert actions(out) == [("welcome", "reg")]


# -- the same actions for 1 and for N partitions ------------------------------------------------

TYPES = ["member_register", "add_to_cart", "order_paid", "product_view", "store_visit", "guide_bind", "login"]
CHANNELS = ["app", "sms", "official_account", "miniprogram", "pos"]

person_events = st.lists(
    st.tuples(
        st.sampled_from(TYPES),
        # minute: mostly within the same hour (where arrival order can differ), some days later
        st.one_of(st.integers(0, 40), st.integers(0, 4 * 24 * 60)),
        st.sampled_from(CHANNELS),
        st.sampled_from([0, 60, 3000, 9000]),
        st.sampled_from(["bags", "shoes"]),
        st.sampled_from(["SH001", "BJ001"]),
    ),
    min_size=1,
    max_size=12,
)


def _stream(people: list[list[tuple]]) -> list[dict]:
    events = []
    for p, evs in enumerate(people):
        for n, (kind, minute, channel, amount, category, store) in enumerate(evs):
            extra = {"store_id": store}
            if kind == "guide_bind":
                extra["guide_id"] = "G5"
            properties = {"amount": amount, "category": category}
            t = T + minute * MIN
            events.append(event(f"e{p}-{n}", f"p{p}", kind, t, channel, properties=properties, **extra))
    return events


def _partition(one_id: str, partitions: int) -> int:
    return int(hashlib.sha256(one_id.encode()).hexdigest(), 16) % partitions


def _decided(events: list[dict], partitions: int, seed: int) -> set[str]:
    """Action keys, the events arriving each up to the allowed lateness behind event time."""
    delays = random.Random(seed)
    arrival = sorted(events, key=lambda e: e["event_time_ms"] + delays.randrange(LATENESS))
    proc, out, newest = processor(), [], 0
    for e in arrival:
        out += proc.handle({"kind": "event", "event": e}, _partition(e["one_id"], partitions))
        newest = max(newest, e["event_time_ms"])
        for p in range(partitions):  # the watermark the input's announcements carry
            out += proc.advance(p, newest - LATENESS)
    for p in range(partitions):
        out += proc.close_event_time(p)
    return {v[ACTIONS[output]] for output, _, v in out if output in ACTIONS}


@settings(max_examples=60, deadline=None)
@given(st.lists(person_events, min_size=1, max_size=6), st.integers(2, 6), st.integers(0, 2**32))
def test_the_same_actions_for_one_and_for_n_partitions(people, partitions, seed):
    events = _stream(people)
    assert _decided(events, partitions, seed) == _decided(events, 1, seed + 1)
