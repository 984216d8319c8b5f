"""`RuleEngine.on_event`'s per-event shortcuts against its plain definition (the oracle): the
conditions read a context of only the names they use (not `condition_context` whole), evaluated by
the compiled closures (not rule-engine), and the state is copied only when something changes in it.
The oracle is `on_event` as it was written before them."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import rule_engine
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.expressions import compile_expression
from stream_app.rules.engine import AWAITED_KEPT, Outcome, RuleEngine, _copy, _trigger, condition_context
from tests.unit.rules.test_rules import DAY, MIN, TAGS, TOPO, T

EVENT_TYPES = ["member_register", "add_to_cart", "order_paid", "store_visit", "product_view", "page_view"]


def reference_on_event(
    engine: RuleEngine,
    state: dict[str, Any] | None,
    event: dict[str, Any],
    before: dict[str, Any],
    after: dict[str, Any],
    gap_days: float | None,
    closed_ms: int | None = None,
) -> tuple[dict[str, Any], list[Outcome]]:
    """`on_event` as it was defined before its shortcuts: the state always copied, every rule's
    condition evaluated by rule-engine itself over the whole `condition_context`."""
    state = _copy(state)
    t = int(event["event_time_ms"])
    for pending in state["pending"]:
        absent = engine._rule(pending["rule"]).spec.absent
        awaited = absent is not None and event["event_type"] == absent.event_type
        if awaited and pending["start_ms"] < t <= pending["deadline_ms"]:
            pending["cancelled"] = True
    if event["event_type"] in engine.awaited:
        seen = [x for x in state["awaited"].get(event["event_type"], []) if x > t - engine.awaited_ms]
        state["awaited"][event["event_type"]] = sorted({*seen, t})[-AWAITED_KEPT:]
    outcomes: list[Outcome] = []
    context = condition_context(event, before, after, gap_days)
    for rule in engine.rules:
        w = rule.spec.when
        if w.audience_triggered:
            continue  # audience changes trigger it (`on_audience`), not events
        if w.event_type is not None and event["event_type"] not in w.event_type:
            continue
        if w.channel is not None and event["channel"] not in w.channel:
            continue
        if rule.spec.condition:
            try:
                if not compile_expression(rule.spec.condition).evaluate(context):
                    continue
            except rule_engine.errors.EvaluationError:
                continue
        trigger = _trigger(event)
        if rule.spec.absent is not None:
            known = any(
                p["trigger"]["event_id"] == trigger["event_id"] and p["rule"] == rule.name
                for p in state["pending"]
            )
            if not known and closed_ms is not None and t + rule.within_ms <= closed_ms:
                outcomes.extend(engine._late(state, rule, trigger, t))
            elif not known:
                deadline = t + rule.within_ms
                already = state["awaited"].get(rule.spec.absent.event_type, [])
                state["pending"].append(
                    {
                        "rule": rule.name,
                        "start_ms": t,
                        "deadline_ms": deadline,
                        "trigger": trigger,
                        "cancelled": any(t < x <= deadline for x in already),
                    }
                )
            continue
        if closed_ms is not None and closed_ms - t >= rule.stale_ms:  # stale: not acted on
            outcomes.extend(engine._late(state, rule, trigger, t))
            continue
        outcome = engine._decide(state, rule, trigger, t, after)
        if outcome is not None:
            outcomes.append(outcome)
    return state, outcomes


ENGINE = RuleEngine(TOPO.rules, TOPO.contact_policy, TOPO.stores)

raw_events = st.lists(
    st.tuples(
        st.sampled_from(EVENT_TYPES),
        st.integers(0, 90 * 24 * 6),  # ten-minute steps over 90 days
        st.sampled_from([10, 3000, 6000]),
        st.sampled_from(["bags", "shoes"]),
        st.sampled_from(["app", "sms", "official_account"]),
        st.sampled_from(["SH001", "BJ001", None]),
        st.integers(0, 40),  # event ids repeat: the same cause seen again
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(raw_events, st.booleans(), st.booleans(), st.booleans())
def test_on_event_decides_as_the_plain_definition(
    raw: list[Any], in_order: bool, late: bool, stored: bool
) -> None:
    """In event-time order or as generated (an awaited event may come before the one opening
    its window), every step's outcomes and state equal the plain definition's; `stored`: the
    state goes through JSON between events, as RocksDB and changelogs keep it."""
    tags = fast = oracle = None
    for event_type, steps, amount, category, channel, store_id, n in (
        sorted(raw, key=lambda r: r[1]) if in_order else raw
    ):
        t = T + steps * 10 * MIN
        event = {
            "event_id": f"e{n}",
            "event_type": event_type,
            "event_time_ms": t,
            "occurred_at": str(t),
            "channel": channel,
            "properties": {"amount": amount, "category": category},
            **({"store_id": store_id} if store_id else {}),
        }
        last = tags["last_ms"] if tags else None
        step = TAGS.step(tags, event, t)
        if step.state is tags:
            continue
        tags = step.state
        gap = None if last is None else (t - last) / DAY
        closed = t + 40 * MIN if late else None
        passed, snapshot = fast, copy.deepcopy(fast)
        fast, got = ENGINE.on_event(fast, event, step.before, step.after, gap, closed_ms=closed)
        oracle, expected = reference_on_event(ENGINE, oracle, event, step.before, step.after, gap, closed)
        assert got == expected
        assert fast == oracle
        assert passed == snapshot  # the state handed in is never changed in place
        fast, got = ENGINE.on_time(fast, t + 20 * MIN, TAGS.read(tags, t))
        oracle, expected = ENGINE.on_time(oracle, t + 20 * MIN, TAGS.read(tags, t))
        assert got == expected and fast == oracle
        if stored:
            fast, oracle = orjson.loads(orjson.dumps(fast)), orjson.loads(orjson.dumps(oracle))


def test_an_event_no_rule_takes_leaves_the_state_as_it_was() -> None:
    state = ENGINE.on_event(None, {**_event("member_register"), "event_id": "r"}, {}, {}, None)[0]
    assert state["keys"]  # welcome decided
    event = _event("page_view")
    after = TAGS.read(None, T)
    same, outcomes = ENGINE.on_event(state, event, after, after, 0.1)
    assert same is state and outcomes == []  # no copy: nothing in it changes


def _event(event_type: str) -> dict[str, Any]:
    return {
        "event_id": "e1",
        "event_type": event_type,
        "event_time_ms": T,
        "occurred_at": str(T),
        "channel": "app",
        "properties": {},
    }


def test_a_state_from_before_awaited_existed_still_loads() -> None:
    """Rule states stored before `awaited` was added lack it; every path reads them as empty."""
    registered = ENGINE.on_event(None, {**_event("member_register"), "event_id": "r"}, {}, {}, None)[0]
    old = {k: v for k, v in registered.items() if k != "awaited"}
    after = TAGS.read(None, T)
    for event_type in ("page_view", "order_paid", "add_to_cart"):
        event = {**_event(event_type), "event_id": f"x-{event_type}"}
        got = ENGINE.on_event(old, event, after, after, 0.1)
        assert got == ENGINE.on_event({**old, "awaited": {}}, event, after, after, 0.1)
    assert ENGINE.on_time(old, T + DAY, after) == ENGINE.on_time({**old, "awaited": {}}, T + DAY, after)
    assert ENGINE.merge(old, registered) == ENGINE.merge(registered, registered)
