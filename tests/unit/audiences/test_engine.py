"""Audience declarations refused at load with their place; membership and its next change."""

from __future__ import annotations

import pytest
import yaml

from stream_app.audiences import AudienceEngine
from stream_app.config import TopologyError, load_topology
from stream_app.config.topology import parse_topology
from stream_app.tags.engine import TagEngine
from tests.unit.test_topology import REPO

TOPO = load_topology(REPO / "topology.yaml")
DAY, HOUR, MIN = 86_400_000, 3_600_000, 60_000


def _own_audiences(audiences: dict) -> dict:
    """The default topology with `audiences` instead of its own, and without the rules that
    trigger on the default audiences (they would name audiences no longer declared)."""
    data = yaml.safe_load((REPO / "topology.yaml").read_text())
    data["audiences"] = audiences
    data["rules"] = {k: r for k, r in data["rules"].items() if not _on_audiences(r["when"])}
    return data


def _on_audiences(when: dict) -> bool:
    return "audience_enter" in when or "audience_exit" in when


def _problems(audiences: dict, tags: dict | None = None) -> list[str]:
    data = _own_audiences(audiences)
    data["tags"].update(tags or {})
    with pytest.raises(TopologyError) as caught:
        parse_topology(data, source="t.yaml")
    return caught.value.problems


@pytest.mark.parametrize(
    ("audiences", "tags", "expected"),
    [
        (
            {"big": {"if": "lifetime_spnd >= 5000"}},
            None,
            "t.yaml: audiences.big.if: unknown tag 'lifetime_spnd' (did you mean 'lifetime_spend'?",
        ),
        ({"big": {"if": "lifetime_spend >= "}}, None, "t.yaml: audiences.big.if: RuleSyntaxError"),
        ({"big": {"if": "lifetime_spend >= 'lots'"}}, None, "t.yaml: audiences.big.if: EvaluationError"),
        ({"big": {"description": "no condition"}}, None, "t.yaml: audiences.big.if: Field required"),
        ({"Big": {"if": "vip"}}, None, "t.yaml: audiences.Big.[key]: String should match pattern"),
        ({"big": {"if": "vip", "extra": 1}}, None, "t.yaml: audiences.big.extra: Extra inputs"),
        (
            {"cat": {"by": "views_24hh", "if": "views_24h[key] >= 2"}},
            None,
            "t.yaml: audiences.cat.by: unknown tag 'views_24hh' (did you mean 'views_24h'?",
        ),
        (
            {"cat": {"by": "orders_30d", "if": "orders_30d >= 2"}},
            None,
            "t.yaml: audiences.cat.by: 'orders_30d' is a window_count tag without sub-keys",
        ),
        ({"cat": {"if": "views_24h[key] >= 2"}}, None, "t.yaml: audiences.cat.if: `key` is the sub-key"),
        (
            {"idle": {"if": "idle_days * 2 >= 60"}},
            None,
            "t.yaml: audiences.idle.if: the condition uses idle_days other than compared",
        ),
        (
            {"idle": {"if": "idle_days >= order_count"}},
            None,
            "t.yaml: audiences.idle.if: the condition uses idle_days other than compared",
        ),
        (
            {"idle": {"if": "sleepy"}},
            {"sleepy": {"kind": "derived", "expr": "idle_days"}},
            "t.yaml: audiences.idle.if: derived tag 'sleepy' uses idle_days other than compared",
        ),
        (
            {"cat": {"by": "views_24h", "if": "views_24h[key] >= 2"}},
            {"key": {"kind": "count"}},
            "t.yaml: audiences.cat.by: a tag named 'key' would be hidden",
        ),
        (
            {"cat": {"by": "views_24h", "if": "views_24h[key] >= 2", "max_keys": 0}},
            None,
            "t.yaml: audiences.cat.max_keys: Input should be greater than or equal to 1",
        ),
    ],
)
def test_a_bad_audience_fails_at_load_with_its_place_and_reason(audiences, tags, expected):
    problems = _problems(audiences, tags)
    assert any(p.startswith(expected) for p in problems), problems


def test_the_members_topic_must_be_compacted():
    data = yaml.safe_load((REPO / "topology.yaml").read_text())
    data["topics"]["audience_members"]["config"] = {"cleanup.policy": "delete"}
    with pytest.raises(TopologyError) as caught:
        parse_topology(data, source="t.yaml")
    assert caught.value.problems[0].startswith("t.yaml: topics.audience_members: Value error, cleanup.policy")


def test_idle_days_through_a_derived_tag_sets_its_thresholds():
    data = _own_audiences({"dormant": {"if": "lifecycle == 'dormant'"}})
    topo = parse_topology(data)
    assert AudienceEngine.from_specs(topo.audiences, topo.tags).thresholds == (90.0,)


# -- membership and its next change ----------------------------------------------------------------

ENGINE = AudienceEngine.from_specs(TOPO.audiences, TOPO.tags)
TAGS = TagEngine.from_specs(TOPO.tags)


def _state(events: list[tuple[str, int, dict]]) -> dict:
    state = None
    for n, (kind, t, properties) in enumerate(events):
        event = {
            "event_id": f"e{n}",
            "event_type": kind,
            "event_time_ms": t,
            "channel": "app",
            "properties": properties,
            "occurred_at": str(t),
        }
        state, _ = TAGS.apply(state, event, t)
    return state


def _members(state: dict, at: int) -> list[str]:
    return ENGINE.members(TAGS.read(state, at), state["last_ms"], at)


def test_each_default_audience_enters_and_lapses_where_its_condition_says():
    state = _state(
        [
            ("member_register", 0, {}),
            ("product_view", HOUR, {"category": "bags"}),
            ("product_view", 2 * HOUR, {"category": "bags"}),
            ("product_view", 2 * HOUR, {"category": "shoes"}),
            ("order_paid", 3 * HOUR, {"amount": 6000}),
        ]
    )
    at = 3 * HOUR
    assert _members(state, at) == ["high_value", "category_interest[bags]", "new_members"]
    # Followed with no event: the next change is always the next moment anything can change.
    seen, changes = _members(state, at), []
    while (due := ENGINE.next_change(state, at)) is not None:
        now = _members(state, due)
        if now != seen:
            changes.append((due, now))
        at, seen = due, now
    bags_out = HOUR + DAY + 2 * MIN  # its first bucket leaves the window (24 h + a 2-minute bucket)
    registered_out = 7 * DAY + 14 * MIN  # a 14-minute bucket past 7 days
    lapsed_in = 3 * HOUR + 60 * DAY
    assert changes == [
        (bags_out, ["high_value", "new_members"]),
        (registered_out, ["high_value"]),
        (lapsed_in, ["high_value", "lapsed_buyers"]),
    ]


def test_at_most_max_keys_memberships_per_audience_the_first_in_order():
    data = yaml.safe_load((REPO / "topology.yaml").read_text())
    data["audiences"]["category_interest"]["max_keys"] = 2
    topo = parse_topology(data)
    engine = AudienceEngine.from_specs(topo.audiences, topo.tags)
    views = {"views_24h": {"c": 5, "a": 2, "b": 1, "d": 3}}
    assert engine.members(views, 0, 0) == ["category_interest[a]", "category_interest[c]"]


def test_evaluate_reports_exits_then_enters_and_keeps_when_each_began():
    first = ENGINE.evaluate(None, None, {"lifetime_spend": 6000.0, "views_24h": {"x": 2}}, 10, "e1")
    assert [(c.membership, c.change) for c in first.changes] == [
        ("high_value", "enter"),
        ("category_interest[x]", "enter"),
    ]
    second = ENGINE.evaluate(first.state, None, {"lifetime_spend": 6000.0, "views_24h": {"y": 3}}, 20, "e2")
    assert [(c.membership, c.change, c.sub_key) for c in second.changes] == [
        ("category_interest[x]", "exit", "x"),
        ("category_interest[y]", "enter", "y"),
    ]
    assert second.state["in"] == {"high_value": 10, "category_interest[y]": 20}
    left = ENGINE.leave_all(second.state, 30)
    assert [(c.membership, c.cause) for c in left.changes] == [
        ("category_interest[y]", "merged"),
        ("high_value", "merged"),
    ]
