"""The tag engine: default tags, kinds, merges and late events (no I/O)."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.config import TopologyError, load_topology
from stream_app.config.topology import TagSpec, parse_topology
from stream_app.tags.engine import TagEngine, TagError
from tests.unit.test_topology import REPO

ENGINE = TagEngine.from_specs(load_topology(REPO / "topology.yaml").tags)
HOUR, DAY = 3_600_000, 86_400_000
T0 = 1_795_000_000_000


def ev(n, event_type, t, **extra):
    return {
        "event_id": f"e{n}",
        "event_type": event_type,
        "event_time_ms": t,
        "occurred_at": f"t{t}",
        "channel": extra.pop("channel", "app"),
        "properties": extra.pop("properties", {}),
        **extra,
    }


def fold(events, now=None):
    state = None
    for e in events:
        state, _ = ENGINE.apply(state, e, now if now is not None else e["event_time_ms"])
    return state


def test_default_tags_from_a_few_events():
    events = [
        ev(1, "product_view", T0, properties={"category": "bags"}),
        ev(2, "product_view", T0 + HOUR, properties={"category": "bags"}),
        ev(3, "order_paid", T0 + 2 * HOUR, channel="pos", store_id="SH001", properties={"amount": 3000}),
        ev(4, "order_paid", T0 + 3 * HOUR, channel="tmall", properties={"amount": 2500.5}),
        ev(5, "guide_bind", T0 + 4 * HOUR, channel="wecom", guide_id="G1"),
    ]
    tags = ENGINE.read(fold(events), T0 + 4 * HOUR)
    assert tags == {
        "order_count": 2,
        "lifetime_spend": 5500.5,
        "orders_30d": 2,
        "views_24h": {"bags": 2},
        "last_seen_at": f"t{T0 + 4 * HOUR}",
        "last_channel": "wecom",
        "last_store_id": "SH001",
        "bound_guide_id": "G1",
        "channels": ["app", "pos", "tmall", "wecom"],
        "vip": True,
        "lifecycle": "repeat",
        "registered_7d": 0,
    }


def test_windows_slide_and_lifecycle_goes_dormant():
    state = fold(
        [
            ev(1, "order_paid", T0, properties={"amount": 10}),
            ev(2, "product_view", T0, properties={"category": "x"}),
        ]
    )
    assert ENGINE.read(state, T0 + 23 * HOUR)["views_24h"] == {"x": 1}
    assert ENGINE.read(state, T0 + 25 * HOUR)["views_24h"] == {}
    assert ENGINE.read(state, T0 + 29 * DAY)["orders_30d"] == 1
    assert ENGINE.read(state, T0 + 31 * DAY)["orders_30d"] == 0
    assert ENGINE.read(state, T0 + 31 * DAY)["lifecycle"] == "new"
    assert ENGINE.read(state, T0 + 91 * DAY)["lifecycle"] == "dormant"
    assert ENGINE.read(state, T0 + 31 * DAY)["order_count"] == 1  # cumulative never expires


def test_late_event_counts_cumulatively_but_not_in_a_closed_window():
    state = fold([ev(1, "product_view", T0 + 3 * DAY, properties={"category": "x"})])
    late = ev(2, "order_paid", T0, properties={"amount": 7})
    state, changed = ENGINE.apply(state, late, T0 + 3 * DAY)
    assert changed["order_count"] == 1 and changed["lifetime_spend"] == 7
    assert "orders_30d" in changed  # 3 days late is inside the 30-day window
    old_view = ev(3, "product_view", T0, properties={"category": "x"})
    state, changed = ENGINE.apply(state, old_view, T0 + 3 * DAY)
    assert "views_24h" not in changed  # outside the 24 h window: ignored, not misplaced
    assert ENGINE.read(state, T0 + 3 * DAY)["views_24h"] == {"x": 1}


def test_a_replayed_event_is_applied_once():
    event = ev(1, "order_paid", T0, properties={"amount": 5})
    state, first = ENGINE.apply(None, event, T0)
    again, second = ENGINE.apply(state, event, T0)
    assert first and not second and again == state


def test_only_changed_tags_are_reported():
    state = fold([ev(1, "page_view", T0)])
    _, changed = ENGINE.apply(state, ev(2, "page_view", T0 + 1), T0 + 1)
    assert changed == {"last_seen_at": f"t{T0 + 1}"}


@pytest.mark.parametrize(
    ("tag", "reason"),
    [
        ({"kind": "derived", "expr": "lifetime_spend >="}, "tags.bad.expr: RuleSyntaxError"),
        ({"kind": "derived", "expr": "no_such_tag > 1"}, "unknown name(s) ['no_such_tag']"),
        ({"kind": "sum"}, "tags.bad: Value error, a sum tag needs `field`"),
        ({"kind": "window_count"}, "needs `window`"),
        ({"kind": "count", "window": "1d"}, "are for window_count/window_sum"),
        ({"kind": "count", "flavour": "x"}, "tags.bad.flavour: Extra inputs"),
        ({"kind": "median", "field": "x"}, "tags.bad.kind: Input should be"),
        ({"kind": "window_sum", "field": "x", "window": "2 days"}, "tags.bad.window: String should match"),
    ],
)
def test_bad_tag_declarations_fail_at_load(tag, reason):
    data = yaml.safe_load((REPO / "topology.yaml").read_text())
    data["tags"]["bad"] = tag
    with pytest.raises(TopologyError) as err:
        parse_topology(data, source="t.yaml")
    assert any(reason in p for p in err.value.problems), err.value.problems


def test_cycles_between_derived_tags_fail_at_load():
    data = yaml.safe_load((REPO / "topology.yaml").read_text())
    data["tags"]["a"] = {"kind": "derived", "expr": "b"}
    data["tags"]["b"] = {"kind": "derived", "expr": "a"}
    with pytest.raises(TopologyError, match="cycle"):
        parse_topology(data, source="t.yaml")


event_strategy = st.builds(
    lambda kind, hours, amount, category, channel: (kind, hours, amount, category, channel),
    st.sampled_from(["order_paid", "product_view", "page_view", "guide_bind", "store_visit"]),
    st.integers(0, 24 * 40),
    st.integers(0, 9000),
    st.sampled_from(["bags", "shoes", "makeup"]),
    st.sampled_from(["app", "pos", "wecom", "tmall"]),
)


@settings(max_examples=120, deadline=None)
@given(
    st.lists(event_strategy, min_size=1, max_size=40), st.integers(1, 6), st.randoms(use_true_random=False)
)
def test_merged_fragments_equal_a_recomputation(raw, fragments, rnd):
    """However a person's events were split across one_ids, and in whatever order the pieces
    merge, the tags equal those recomputed from all the events (read at the same moment)."""
    events = [
        ev(
            n,
            kind,
            T0 + hours * HOUR,
            channel=channel,
            store_id=f"S{n % 3}",
            guide_id=f"G{n % 2}",
            properties={"amount": amount, "category": category},
        )
        for n, (kind, hours, amount, category, channel) in enumerate(raw)
    ]
    arrival = list(events)
    rnd.shuffle(arrival)
    lateness = 5 * 60_000
    watermark = 0
    pieces: list[dict | None] = [None] * fragments
    for e in arrival:
        watermark = max(watermark, e["event_time_ms"] - lateness)
        i = rnd.randrange(fragments)
        pieces[i], _ = ENGINE.apply(pieces[i], e, watermark)
    rnd.shuffle(pieces)
    merged = None
    for piece in pieces:
        merged = ENGINE.merge(merged, piece, watermark)
    now = max(e["event_time_ms"] for e in events)
    in_order = sorted(events, key=lambda e: e["event_time_ms"])
    assert ENGINE.read(merged, now) == ENGINE.read(fold(in_order), now)


def test_a_derived_tag_reading_an_unknown_name_as_a_key_is_refused():
    specs = {
        "views_24h": TagSpec(kind="window_count", window="24h", by="properties.category"),
        "hot": TagSpec(kind="derived", expr="views_24h[catx] > 1"),
    }
    with pytest.raises(TagError, match=r"tags.hot.expr: unknown name\(s\) \['catx'\]"):
        TagEngine.from_specs(specs)


def test_a_replay_after_a_merge_is_still_recognised_whichever_ids_sort_last():
    small = ENGINE.apply(None, ev(0, "order_paid", T0, properties={"amount": 5}, event_id="a-1"), T0)[0]
    big = None
    for n in range(64):
        big, _ = ENGINE.apply(
            big, ev(n + 1, "order_paid", T0, properties={"amount": 1}, event_id=f"z-{n:03d}"), T0
        )
    for merged in (ENGINE.merge(small, big, T0), ENGINE.merge(big, small, T0)):
        replayed, changed = ENGINE.apply(
            merged, ev(0, "order_paid", T0, properties={"amount": 5}, event_id="a-1"), T0
        )
        assert changed == {} and ENGINE.read(replayed, T0)["order_count"] == 65
