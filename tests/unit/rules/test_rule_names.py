"""Every name a rule reads is checked at load (issue 8, defect 9): a rule that names something that
will not exist at run time would never fire, or send '?', without a word in the log."""

from __future__ import annotations

import re
import string
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from stream_app.config import TopologyError
from stream_app.config.topology import parse_topology
from stream_app.rules.engine import AudienceTrigger, RuleEngine, audience_trigger
from stream_app.tags.engine import TagEngine
from tests.unit.test_topology import REPO

SHANGHAI = timezone(timedelta(hours=8))
DAY = 86_400_000


def _default() -> dict:
    return yaml.safe_load((REPO / "topology.yaml").read_text())


def _problems(data: dict) -> list[str]:
    with pytest.raises(TopologyError) as err:
        parse_topology(data, source="topology.yaml")
    return err.value.problems


def _only(data: dict) -> str:
    problems = _problems(data)
    assert len(problems) == 1, problems
    return problems[0]


def _tags_listed(problem: str) -> list[str]:
    listed = re.search(r"known: ([^;)]*)", problem)
    assert listed, problem
    return listed.group(1).split(", ")


# -- the four cases of the issue -------------------------------------------------------------------


def test_unknown_tag_in_a_condition():
    data = _default()
    data["rules"]["vip_store_visit"]["if"] = "vipp"
    problem = _only(data)
    assert problem.startswith("topology.yaml: rules.vip_store_visit.if: unknown tag 'vipp'")
    assert "did you mean 'vip'" in problem
    assert _tags_listed(problem) == sorted(_default()["tags"])


def test_unknown_sub_keyed_tag_in_a_condition():
    data = _default()
    data["rules"]["browse_interest"]["if"] = "views_24hh[properties['category']] == 3"
    problem = _only(data)
    assert problem.startswith("topology.yaml: rules.browse_interest.if: unknown tag 'views_24hh' (")
    assert "views_24h" in _tags_listed(problem)


def test_unknown_tag_read_before_the_event():
    data = _default()
    data["rules"]["winback"]["if"] = "gap_days != null and gap_days >= 60 and before['order_countt'] >= 1"
    problem = _only(data)
    assert problem.startswith(
        "topology.yaml: rules.winback.if: before['order_countt']: unknown tag 'order_countt' ("
    )
    assert "order_count" in _tags_listed(problem)


def test_unknown_placeholder_in_a_guide_alert_message():
    data = _default()
    data["rules"]["browse_interest"]["guide_alert"]["message"] = "客户 24 小时内第 3 次浏览 {categoryy}"
    problem = _only(data)
    assert problem.startswith(
        "topology.yaml: rules.browse_interest.guide_alert.message: unknown placeholder '{categoryy}'"
    )
    assert "did you mean 'category'" in problem


# -- the other names a rule reads --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        ("idle_days > 30", "unknown tag 'idle_days': only derived tags read it"),
        ("event['store'] == 'SH001'", "event['store']: unknown event field 'store'"),
        ("event['properties']['categoryy'] == 'bags'", "event['properties']['categoryy']: unknown property"),
        ("properties['colour'] == 'red'", "properties['colour']: unknown property 'colour'"),
        ("event['identities']['qq'] != null", "event['identities']['qq']: unknown identifier type 'qq'"),
        ("before.order_countt > 0", "before['order_countt']: unknown tag 'order_countt'"),
        ("views_24h >= 3", "EvaluationError: data type mismatch"),  # a sub-keyed tag is a mapping
        ("order_count['bags'] > 1", "EvaluationError: data type mismatch"),
        ("$nosuch > 1", "unknown built-in symbol $nosuch (known: $abs,"),
    ],
)
def test_names_in_conditions(condition, reason):
    data = _default()
    data["rules"]["winback"]["if"] = condition
    problem = _only(data)
    assert problem.startswith("topology.yaml: rules.winback.if: "), problem
    assert reason in problem


@pytest.mark.parametrize(
    "condition",
    [
        "event['store_id'] == 'SH001' and properties['amount'] > 10 and event['identities']['phone']",
        "event.channel == 'pos' and before.order_count == 0 and before.length > 0",
        "'web' in channels and [c for c in channels if c == 'pos'].length > 0",
        "views_24h[properties['category']] >= 2 and gap_days == null and lifecycle == 'new'",
        "event['occurred_at'] != null and event['one_id'] != null and $now != null",
    ],
)
def test_names_that_exist_pass(condition):
    data = _default()
    data["rules"]["winback"]["if"] = condition
    parse_topology(data, source="topology.yaml")


def test_absence_rules_read_the_same_names():
    data = _default()
    data["rules"]["cart_abandon"]["if"] = "vipp"
    assert "rules.cart_abandon.if: unknown tag 'vipp'" in _only(data)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("{gap_days} 天没来", "placeholder '{gap_days}' is not filled in messages (it prints '?')"),
        ("{idle_days}", "placeholder '{idle_days}' is not filled in messages"),
        ("{one_id}", "placeholder '{one_id}' is not filled in messages"),
        ("{before}", "placeholder '{before}' is not filled in messages"),
        ("{properties[category]}", "placeholder '{properties[category]}': only plain names are filled"),
        ("{views_24h.bags}", "only plain names are filled"),
        ("{} 次", "placeholder '{}': positional"),
        ("第 {order_count 次", "message: bad template: expected '}' before end of string"),
        ("{order_count!x}", "placeholder '{order_count!x}': unknown conversion"),
        ("{last_store_id:.2f}", "'{last_store_id:.2f}' fails for None (a person without the tag)"),
        ("{amount:,.0f}", "'{amount:,.0f}' fails for '?' (an event without it)"),
        ("{order_count:{width}}", "nested placeholders"),
    ],
)
def test_placeholders_in_messages(message, reason):
    data = _default()
    data["rules"]["vip_store_visit"]["guide_alert"]["message"] = message
    problem = _only(data)
    assert problem.startswith("topology.yaml: rules.vip_store_visit.guide_alert.message: "), problem
    assert reason in problem


def test_placeholders_that_exist_pass():
    data = _default()
    message = "{store_id} {guide_id} {channel} {event_type} {sku} {amount} {lifecycle} {vip!r:>6} {{x}}"
    data["rules"]["vip_store_visit"]["guide_alert"]["message"] = message + " {order_count:03d}"
    parse_topology(data, source="topology.yaml")


def test_limit_by_names_a_field_the_action_keeps():
    data = _default()
    data["rules"]["browse_interest"]["limit"]["by"] = "properties.categoryy"
    assert "rules.browse_interest.limit.by: unknown property 'categoryy'" in _only(data)
    data["rules"]["browse_interest"]["limit"]["by"] = "one_id"
    assert "rules.browse_interest.limit.by: 'one_id' is not a field an action keeps" in _only(data)


@pytest.mark.parametrize("name", ["before", "event", "properties", "gap_days", "idle_days"])
def test_a_tag_may_not_take_a_name_the_engines_give(name):
    data = _default()
    data["tags"][name] = {"kind": "count"}
    assert f"topology.yaml: tags.{name}: the name is taken" in _only(data)


def test_every_problem_is_reported_with_its_place():
    data = _default()
    data["rules"]["vip_store_visit"]["if"] = "vipp and order_countt > 1"
    data["rules"]["winback"]["if"] = "before['order_countt'] >= 1 and properties['colour'] == 'red'"
    data["rules"]["browse_interest"]["guide_alert"]["message"] = "{categoryy} {gap_days}"
    expected = [
        ("rules.vip_store_visit.if", "unknown tag 'vipp'"),
        ("rules.vip_store_visit.if", "unknown tag 'order_countt'"),
        ("rules.browse_interest.guide_alert.message", "unknown placeholder '{categoryy}'"),
        ("rules.browse_interest.guide_alert.message", "placeholder '{gap_days}'"),
        ("rules.winback.if", "before['order_countt']: unknown tag"),
        ("rules.winback.if", "properties['colour']: unknown property"),
    ]
    problems = _problems(data)
    assert len(problems) == len(expected), problems
    for problem, (place, what) in zip(problems, expected, strict=True):
        assert problem.startswith(f"topology.yaml: {place}: {what}"), problem


# -- the default rules -----------------------------------------------------------------------------


def test_the_default_topology_validates():
    topology = parse_topology(_default(), source="topology.yaml")
    assert set(topology.rules) == {
        "welcome",
        "cart_abandon",
        "vip_store_visit",
        "browse_interest",
        "winback",
        "high_value_alert",
    }


def test_every_placeholder_of_the_default_messages_is_filled_at_run_time():
    """Each guide alert rule, its condition set aside, fired by a typical event through the engines."""
    topology = parse_topology(_default(), source="topology.yaml")
    tags = TagEngine.from_specs(topology.tags)
    t = int(datetime(2026, 11, 22, 14, 0, tzinfo=SHANGHAI).timestamp() * 1000)  # not in quiet hours
    history = [
        {"event_type": "guide_bind", "channel": "wecom", "guide_id": "G1002", "store_id": "SH001"},
        {"event_type": "order_paid", "channel": "pos", "properties": {"amount": 6000, "sku": "S1"}},
        {"event_type": "product_view", "channel": "app", "properties": {"category": "bags", "sku": "S2"}},
    ]
    state = None
    for n, extra in enumerate(history):
        event = {"event_id": f"h{n}", "event_time_ms": t - DAY + n, "occurred_at": "x", **extra}
        state, _ = tags.apply(state, event, event["event_time_ms"])
    alerts = {name: rule for name, rule in topology.rules.items() if rule.guide_alert is not None}
    assert alerts, "the default topology has guide alert rules"
    for name, rule in alerts.items():
        spec = rule.model_copy(update={"condition": None})
        engine = RuleEngine({name: spec}, topology.contact_policy, topology.stores)
        event = {
            "event_id": "e1",
            "event_type": (rule.when.event_type or ("store_visit",))[0],
            "event_time_ms": t,
            "occurred_at": "2026-11-22T14:00:00+08:00",
            "ingested_at_ms": t,
            "channel": (rule.when.channel or ("pos",))[0],
            "store_id": "SH001",
            "properties": {"category": "bags", "amount": 120.0, "sku": "S3"},
        }
        before = tags.read(state, t)
        after_state, _ = tags.apply(state, event, t)
        rules, outcomes = engine.on_event(None, event, before, tags.read(after_state, t), 1.0)
        if rule.when.audience_triggered:  # the hardest case: no event caused the change
            after_tags = tags.read(after_state, t)
            kind = "enter" if rule.when.audience_enter else "exit"
            audience = (rule.when.audience_enter or rule.when.audience_exit or ("?",))[0]
            change = AudienceTrigger("c_x", audience, None, audience, kind, "expired", t)
            rules, outcomes = engine.on_audience(None, [change], None, after_tags, after_tags, None)
            event = {"properties": {}, **audience_trigger(change, None)}
        if rule.absent is not None:
            deadline = t + DAY
            rules, outcomes = engine.on_time(rules, deadline, tags.read(after_state, deadline))
        (alert,) = [o for o in outcomes if o.suppressed is None]
        message = alert.fields["message"]
        assert "?" not in message and "{" not in message and "}" not in message, (name, message)
        # an oracle for which names were filled: every placeholder's source value appears
        values = {**tags.read(after_state, t), **event, **event["properties"]}
        for _, field, spec_text, _ in string.Formatter().parse(rule.guide_alert.message):
            if field:
                assert format(values[field], spec_text) in message, (name, field, message)


# -- rules triggered by audience changes -----------------------------------------------------------

_ALERT = {"to": ["bound_guide"], "message": "客户进入 {audience}"}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            {"when": {"audience_enter": "high_valu"}},
            "rules.r.when.audience_enter: unknown audience 'high_valu' (did you mean 'high_value'? known: "
            "category_interest, high_value, lapsed_buyers, new_members)",
        ),
        (
            {"when": {"audience_exit": ["high_value", "lapsed"]}},
            "rules.r.when.audience_exit: unknown audience 'lapsed' (",
        ),
        (
            {"when": {"audience_enter": "high_value[bags]"}},
            "rules.r.when.audience_enter: 'high_value[bags]': audience 'high_value' has no sub-keys",
        ),
        (
            {"when": {"audience_enter": "category_interest[bags"}},
            "rules.r.when.audience_enter: 'category_interest[bags' is not an audience or `audience[sub_key]`",
        ),
        (
            {"when": {"audience_enter": "category_interest[]"}},
            "rules.r.when.audience_enter: 'category_interest[]' is not an audience",
        ),
        (
            {"when": {"audience_enter": []}},
            "rules.r.when.audience_enter: Value error, name at least one audience",
        ),
        (
            {"when": {"audience_enter": "high_value", "event_type": "order_paid"}},
            "rules.r.when: Value error, a rule is triggered by events (`event_type`, `channel`) or by "
            "audience changes",
        ),
        (
            {
                "when": {"audience_enter": "high_value"},
                "absent": {"event_type": "order_paid", "within": "1d"},
            },
            "rules.r.absent: absence windows open on events; a rule triggered by audience changes takes none",
        ),
        (
            {"when": {"audience_enter": "high_value"}, "limit": {"once": True, "by": "store_id"}},
            "rules.r.limit.by: 'store_id': a rule triggered by audience changes is limited by sub_key or "
            "audience",
        ),
        (
            {
                "when": {"audience_enter": "high_value"},
                "guide_alert": {**_ALERT, "message": "{arrived_at_ms:,}"},
            },
            "rules.r.guide_alert.message: '{arrived_at_ms:,}' fails for '?' (an event without it)",
        ),
        (
            {
                "when": {"audience_enter": "high_value"},
                "guide_alert": {**_ALERT, "message": "{sub_key:>5}"},
            },
            "rules.r.guide_alert.message: '{sub_key:>5}' fails for None (an audience without `by`)",
        ),
        (
            {"when": {"audience_enter": "high_value"}, "guide_alert": {**_ALERT, "message": "{sub_ky}"}},
            "rules.r.guide_alert.message: unknown placeholder '{sub_ky}' (did you mean 'sub_key'?",
        ),
    ],
)
def test_an_audience_trigger_that_cannot_work_is_refused_with_its_place(rule, expected):
    data = _default()
    data["rules"]["r"] = {"guide_alert": _ALERT, "limit": {"once": True}, **rule}
    assert _only(data).startswith(f"topology.yaml: {expected}")


def test_an_audience_triggered_coupon_names_its_channel():
    data = _default()
    data["rules"]["r"] = {
        "when": {"audience_exit": "lapsed_buyers"},
        "coupon": {"template": "BACK_10"},
        "limit": {"once": True},
    }
    assert _only(data) == (
        "topology.yaml: rules.r.coupon.channel: a rule triggered by audience changes names its channel "
        "(an expiry or a merge has no event to take it from)"
    )
    data["rules"]["r"]["coupon"]["channel"] = "sms"
    assert parse_topology(data).rules["r"].coupon.channel == "sms"


def test_what_an_audience_trigger_may_name():
    data = _default()
    data["rules"]["r"] = {
        "when": {
            "audience_enter": ["category_interest", "category_interest[bags]"],
            "audience_exit": "new_members",
        },
        "if": "event['store_id'] == 'SH001' or lifetime_spend > 0",
        "guide_alert": {**_ALERT, "message": "{audience} {sub_key} {change} {cause} {event_id} {store_id}"},
        "limit": {"per": "1d", "by": "sub_key"},
    }
    when = parse_topology(data).rules["r"].when
    assert when.audience_enter == ("category_interest", "category_interest[bags]")
    assert when.audience_exit == ("new_members",) and when.audience_triggered


def test_a_tag_is_not_updated_by_audience_changes():
    data = _default()
    data["tags"]["order_count"]["when"] = {"audience_enter": "high_value"}
    assert _only(data).startswith("topology.yaml: tags.order_count.when.audience_enter: Extra inputs")
