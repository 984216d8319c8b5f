"""The tag engine's per-event paths against the plain definitions they shortcut (the oracle):
`Kind.folder` against `Kind.update` then `Kind.expire`, the specialised readers against
`Kind.read`, and `TagEngine.step` against folding every tag by `matches`/`update`/`expire` and
reading everything whole before and after."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.config.topology import TagSpec
from stream_app.tags.engine import RECENT_EVENTS, TagEngine, _get
from stream_app.tags.kinds import MISSING, Kind
from tests.unit.tags.test_engine import ENGINE, HOUR, T0, ev

MINUTE = 60_000
KINDS = ["count", "sum", "min", "max", "latest", "set", "window_count", "window_sum"]


def _kind(kind: str) -> Kind:
    return Kind(kind, window_ms=30 * MINUTE, bucket_ms=5 * MINUTE, max_items=3)


numbers = st.one_of(st.integers(-5, 5), st.sampled_from([0.5, -0.0, 2.25, 1e16]))
windows = st.dictionaries(
    st.integers(0, 12).map(lambda n: str(T0 + n * 5 * MINUTE)),
    st.dictionaries(st.sampled_from(["", "bags", "shoes"]), numbers, min_size=1, max_size=2),
    max_size=4,
)


def _states(kind: str) -> st.SearchStrategy[Any]:
    """States as `update` and `merge` leave them (a set sorted, without repeats, short)."""
    if kind == "count":
        return st.one_of(st.none(), st.integers(0, 9))
    if kind == "sum":
        return st.one_of(st.none(), st.sampled_from([0.0, 1.5, 1e300]))
    if kind in ("min", "max"):
        return st.one_of(st.none(), numbers)
    if kind == "latest":
        return st.one_of(
            st.none(),
            st.tuples(
                st.integers(0, 3).map(lambda n: T0 + n * MINUTE), st.sampled_from(["e1", "e2", "e3"])
            ).map(lambda t: [t[0], t[1], "v"]),
        )
    if kind == "set":
        return st.one_of(st.none(), st.sets(st.sampled_from("abcde"), max_size=3).map(sorted))
    return st.one_of(st.none(), windows)


@st.composite
def kind_cases(draw: st.DrawFn) -> tuple[str, Any, Any, str, int, str, int]:
    kind = draw(st.sampled_from(KINDS))
    state = draw(_states(kind))
    value = draw(st.sampled_from("abcde")) if kind in ("set", "latest") else draw(numbers)
    sub_key = draw(st.sampled_from(["", "bags"]))
    t = T0 + draw(st.integers(0, 60)) * MINUTE
    event_id = draw(st.sampled_from(["e1", "e2", "e3"]))
    now = max(t, T0 + draw(st.integers(0, 80)) * MINUTE)
    return kind, state, value, sub_key, t, event_id, now


@settings(max_examples=2000, deadline=None)
@given(kind_cases())
def test_a_kind_folds_an_event_as_update_then_expire(case: tuple[str, Any, Any, str, int, str, int]) -> None:
    kind_name, state, value, sub_key, t, event_id, now = case
    kind = _kind(kind_name)
    expected = kind.expire(kind.update(state, value, sub_key, t, event_id, now), now)
    got = kind.folder()(state, value, sub_key, t, event_id, now)
    assert repr(got) == repr(expected)  # repr: the same types, order and -0.0
    if got is state and state is not None:
        assert not kind.windowed or got == expected  # an unchanged state may come back itself


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(KINDS), st.data(), st.integers(0, 80), st.booleans())
def test_a_kind_reads_as_its_plain_read(kind_name: str, data: st.DataObject, minutes: int, by: bool) -> None:
    kind = _kind(kind_name)
    state = data.draw(_states(kind_name))
    now = T0 + minutes * MINUTE
    assert repr(kind.reader(by)(state, now)) == repr(kind.read(state, now, by))
    assert repr(kind.reader(by)(MISSING, now)) == repr(kind.read(kind.initial(), now, by))


def test_a_window_without_sub_keys_sums_only_its_own_cells_in_order() -> None:
    kind = Kind("window_sum", window_ms=30 * MINUTE, bucket_ms=5 * MINUTE)
    state = {str(T0): {"": 0.1, "x": 5.0}, str(T0 + 5 * MINUTE): {"": 0.2}, str(T0 - HOUR): {"": 9.0}}
    # 0.1 + 0.2 rounded to 6 places; the sub-key "x" and the expired bucket do not count.
    assert kind.reader(False)(state, T0 + 10 * MINUTE) == 0.3


# -- the engine: step against a plain fold and whole readings ---------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def reference_step(engine: TagEngine, state: dict[str, Any] | None, event: dict[str, Any], now: int) -> Any:
    """What `step` is defined as: every tag tried with `matches`, `update` then `expire`, and the
    readings made whole before and after, `changed` every tag whose reading differs."""
    old = state or {"tags": {}, "recent": [], "last_ms": None}
    if event["event_id"] in old["recent"]:
        return old, {}, {}, {}
    tags = dict(old["tags"])
    t = int(event["event_time_ms"])
    for tag in engine.stored:
        if not tag.matches(event):
            continue
        value = _get(event, tag.field) if tag.field else None
        numeric = tag.kind.kind in ("sum", "window_sum")
        if tag.field and (value is None or (numeric and not _number(value))):
            continue
        sub_key = "" if tag.by is None else str(_get(event, tag.by) or "")
        if tag.by is not None and not sub_key:
            continue
        after = tag.kind.expire(
            tag.kind.update(tags.get(tag.name), value, sub_key, t, event["event_id"], now), now
        )
        if after != tags.get(tag.name):
            tags[tag.name] = after
    last = old["last_ms"]
    new = {
        "tags": tags,
        "recent": (old["recent"] + [event["event_id"]])[-RECENT_EVENTS:],
        "last_ms": t if last is None else max(last, t),
    }
    before, after = engine.read(old, now), engine.read(new, now)
    return new, {k: v for k, v in after.items() if before[k] != v}, before, after


SPECS = {
    **{name: TagSpec(kind=kind, field="properties.n") for name, kind in [("low", "min"), ("high", "max")]},
    "pos_orders": TagSpec(kind="count", when={"event_type": "order_paid", "channel": ["pos"]}),
    "spend_1h": TagSpec(
        kind="window_sum", window="1h", field="properties.amount", when={"event_type": "order_paid"}
    ),
    "by_store": TagSpec(kind="window_count", window="2h", by="store_id"),
    "seen_types": TagSpec(kind="set", field="event_type"),
    "big_spender": TagSpec(kind="derived", expr="spend_1h >= 100 or pos_orders > 1"),
    "quiet": TagSpec(kind="derived", expr="idle_days > 0.01 ? 'quiet' : (big_spender ? 'hot' : 'warm')"),
}
ENGINES = [ENGINE, TagEngine.from_specs(SPECS)]

raw_events = st.lists(
    st.tuples(
        st.sampled_from(["order_paid", "product_view", "page_view", "guide_bind", "store_visit", "other"]),
        st.integers(0, 48 * 6),  # ten-minute steps over two days
        st.one_of(st.none(), st.integers(0, 90), st.sampled_from([12.5, "7", True])),
        st.sampled_from(["bags", "shoes", "", None]),
        st.sampled_from(["app", "pos", "wecom"]),
        st.integers(0, 30),  # event ids repeat: replays
        st.integers(-3, 12),  # now: before, at or after the event
    ),
    min_size=1,
    max_size=30,
)


@pytest.mark.parametrize("engine", ENGINES, ids=["topology", "other_specs"])
@settings(max_examples=300, deadline=None)
@given(raw=raw_events, stored=st.booleans())
def test_step_equals_the_plain_fold_and_whole_readings(
    engine: TagEngine, raw: list[Any], stored: bool
) -> None:
    """`stored`: every state goes through JSON between events, as RocksDB and changelogs keep it."""
    state = reference = None
    for kind, steps, amount, category, channel, n, ahead in raw:
        t = T0 + steps * 10 * MINUTE
        properties: dict[str, Any] = {"n": n % 7}
        if category is not None:
            properties["category"] = category
        if amount is not None:
            properties["amount"] = amount
        event = ev(
            n, kind, t, channel=channel, store_id=f"S{n % 3}", guide_id=f"G{n % 2}", properties=properties
        )
        now = max(t + ahead * MINUTE, (state or {}).get("last_ms") or 0)
        got = engine.step(state, event, now)
        expected = reference_step(engine, reference, event, now)
        assert (got.state, got.changed, got.before, got.after) == expected
        assert list(got.changed) == list(expected[1])  # the same order
        if expected[0] is reference:
            assert got.state is state  # a replay gives the state itself back (the processor's test)
        state, reference = got.state, expected[0]
        if stored:
            state, reference = orjson.loads(orjson.dumps(state)), orjson.loads(orjson.dumps(reference))


def reference_read(engine: TagEngine, state: dict[str, Any] | None, now: int) -> dict[str, Any]:
    """What `read` is defined as: each stored tag by `Kind.read` (its `initial()` when the person
    has none), then the derived tags in dependency order over those values and `idle_days`."""
    state = state or {"tags": {}, "recent": [], "last_ms": None}
    values = {
        tag.name: tag.kind.read(state["tags"].get(tag.name, tag.kind.initial()), now, tag.by is not None)
        for tag in engine.stored
    }
    last = state["last_ms"]
    context = {**values, "idle_days": 0.0 if last is None else max(0.0, (now - last) / 86_400_000)}
    for derived in engine.derived:
        values[derived.name] = context[derived.name] = derived.rule.evaluate(context)
    return values


@pytest.mark.parametrize("engine", ENGINES, ids=["topology", "other_specs"])
@settings(max_examples=300, deadline=None)
@given(raw=raw_events)
def test_read_equals_each_kind_read_and_the_derived_rules(engine: TagEngine, raw: list[Any]) -> None:
    """The compiled reading (one function over every stored tag) against `Kind.read` per tag and
    rule-engine's own evaluation of each derived tag, on the states a person's events leave."""
    state = None
    assert repr(engine.read(state, T0)) == repr(reference_read(engine, state, T0))
    for kind, steps, amount, category, channel, n, ahead in raw:
        t = T0 + steps * 10 * MINUTE
        properties: dict[str, Any] = {"n": n % 7, "category": category, "amount": amount}
        event = ev(n, kind, t, channel=channel, store_id=f"S{n % 3}", properties=properties)
        state = engine.step(state, event, max(t, (state or {}).get("last_ms") or 0)).state
        for now in (t, t + ahead * 10 * MINUTE, t + 40 * HOUR):
            got, expected = engine.read(state, now), reference_read(engine, state, now)
            assert repr(got) == repr(expected)
            assert list(got) == list(expected)  # declaration order
