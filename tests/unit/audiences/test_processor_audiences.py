"""Audiences in the person stage's core: after any stream with merges, and event time closed, each
person's memberships are the conditions evaluated on their tags recomputed from all their events,
at the end of the input's event time. The oracle below is separate, simple code: rule-engine's own
`evaluate` on a from-scratch fold of each person's events, none of the audience engine."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.audiences import AudienceEngine
from stream_app.config import load_topology
from stream_app.config.topology import duration_ms
from stream_app.contracts import AUDIENCE_CHANGES, AUDIENCE_MEMBERS, validator
from stream_app.expressions import compile_expression
from stream_app.metrics import Metrics
from stream_app.people.processor import PersonProcessor
from stream_app.rules.engine import RuleEngine
from stream_app.tags.engine import TagEngine
from tests.unit.test_topology import REPO

TOPO = load_topology(REPO / "topology.yaml")
LATENESS = duration_ms(TOPO.allowed_lateness)
DAY, MIN = 86_400_000, 60_000
T = 1_800_000_000_000


def processor() -> PersonProcessor:
    return PersonProcessor(
        TagEngine.from_specs(TOPO.tags),
        RuleEngine(TOPO.rules, TOPO.contact_policy, TOPO.stores),
        {},
        {},
        {},
        Metrics(),
        lambda: T / 1000,
        audiences=AudienceEngine.from_specs(TOPO.audiences, TOPO.tags),
    )


def _one_id(n: int) -> str:
    return "p_" + hashlib.sha256(str(n).encode()).hexdigest()[:16]


def _partition(key: str, partitions: int) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % partitions


# -- the oracle ------------------------------------------------------------------------------------


def oracle_members(events: list[dict], end_ms: int) -> set[str]:
    """Memberships from scratch: tags folded over the person's events in time order, read at the
    end; each condition evaluated by rule-engine itself; sub-keys in order, at most max_keys."""
    engine = TagEngine.from_specs(TOPO.tags)
    state = None
    for event in sorted(events, key=lambda e: (e["event_time_ms"], e["event_id"])):
        state, _ = engine.apply(state, event, event["event_time_ms"])
    tags = engine.read(state, end_ms)
    last = max(e["event_time_ms"] for e in events)
    context = {**tags, "idle_days": (end_ms - last) / DAY}
    found = set()
    for name, spec in TOPO.audiences.items():
        condition = compile_expression(spec.condition)
        if spec.by is None:
            if condition.evaluate(context):
                found.add(name)
            continue
        held = [k for k in sorted(tags[spec.by]) if _holds(condition, {**context, "key": k})]
        found |= {f"{name}[{k}]" for k in held[: spec.max_keys]}
    return found


def _holds(condition, context) -> bool:
    try:
        return bool(condition.evaluate(context))
    except Exception:  # a lookup of a missing sub-key: it does not hold
        return False


# -- random streams with merges --------------------------------------------------------------------

TYPES = ["member_register", "product_view", "product_view", "order_paid", "login"]

people_strategy = st.lists(
    st.tuples(
        st.lists(
            st.tuples(
                st.sampled_from(TYPES),
                # minutes: bursts within a day (windows), and days apart (lapses, 7 and 60 days)
                st.one_of(st.integers(0, 3 * 60), st.integers(0, 90 * 24 * 60)),
                st.sampled_from([0, 3000, 6000]),
                st.sampled_from(["bags", "shoes", "hats"]),
            ),
            min_size=1,
            max_size=10,
        ),
        st.integers(0, 100),  # merge into an earlier person with this chance (%), if any
        st.floats(0, 1),  # where in the stream the merge notice comes
    ),
    min_size=1,
    max_size=6,
)


def _run(people, partitions: int, seed: int):
    """Every event and merge through one processor over `partitions`; the emits, the final map."""
    rng = random.Random(seed)
    events, survivor_of = [], {}
    for p, (evs, merge_chance, _) in enumerate(people):
        for n, (kind, minute, amount, category) in enumerate(evs):
            t = T + minute * MIN
            events.append(
                {
                    "event_id": f"e{p}-{n}",
                    "one_id": _one_id(p),
                    "event_type": kind,
                    "event_time_ms": t,
                    "occurred_at": "2027-01-15T08:00:00+08:00",
                    "channel": "app",
                    "properties": {"amount": amount, "category": category},
                }
            )
        if p > 0 and rng.randrange(100) < merge_chance:
            survivor_of[_one_id(p)] = _one_id(rng.randrange(p))
    arrival = sorted(events, key=lambda e: e["event_time_ms"] + rng.randrange(LATENESS))
    records = [{"kind": "event", "event": e} for e in arrival]
    for p, (_, _, where) in enumerate(people):
        merged = _one_id(p)
        if merged in survivor_of:
            at = min(len(records), int(where * len(records)))
            notice = {"kind": "merge", "one_id": survivor_of[merged], "merged_one_id": merged}
            records.insert(at, {**notice, "event_time_ms": T})
    proc, out, newest = processor(), [], 0

    def handle(record: dict, key: str) -> None:
        pending = [(record, key)]
        while pending:
            item, at_key = pending.pop(0)
            for output, k, value in proc.handle(item, _partition(at_key, partitions)):
                if output == "person_events":
                    pending.append((value, k))
                else:
                    out.append((output, k, value))

    for record in records:
        if record["kind"] == "event":
            handle(record, record["event"]["one_id"])
            newest = max(newest, record["event"]["event_time_ms"])
        else:
            handle(record, record["merged_one_id"])
        for p in range(partitions):
            out.extend(proc.advance(p, newest - LATENESS))
    for p in range(partitions):
        out.extend(proc.close_event_time(p))

    def final(one_id: str) -> str:
        while one_id in survivor_of:
            one_id = survivor_of[one_id]
        return one_id

    return proc, out, events, final


@settings(max_examples=80, deadline=None)
@given(people_strategy, st.integers(1, 4), st.integers(0, 2**32))
def test_memberships_equal_the_conditions_on_recomputed_tags_at_the_end(people, partitions, seed):
    proc, out, events, final = _run(people, partitions, seed)
    end = max(e["event_time_ms"] for e in events)
    by_person: dict[str, list[dict]] = {}
    for e in events:
        by_person.setdefault(final(e["one_id"]), []).append(e)

    # What audience-changes says, replayed in order: each change is a real change.
    members: dict[str, set[str]] = {}
    table: dict[str, dict | None] = {}
    for output, key, value in out:
        if output == "audience_changes":
            assert not list(validator(AUDIENCE_CHANGES).iter_errors(value))
            held = members.setdefault(value["one_id"], set())
            name = value["audience"] + (f"[{value['sub_key']}]" if value["sub_key"] is not None else "")
            assert (name in held) == (value["change"] == "exit"), value
            (held.discard if value["change"] == "exit" else held.add)(name)
        elif output == "audience_members":
            assert value is None or not list(validator(AUDIENCE_MEMBERS).iter_errors(value))
            table[key] = value
    current = {key for key, value in table.items() if value is not None}

    everyone = {e["one_id"] for e in events}
    for one_id in everyone:
        expected = oracle_members(by_person[one_id], end) if one_id in by_person else set()
        assert members.get(one_id, set()) == expected, one_id
        stored = (proc.states.get(one_id) or {}).get("audiences") or {}
        assert set(stored.get("in") or ()) == expected
    assert current == {f"{m}:{one_id}" for one_id, held in members.items() for m in held}
    assert sum(proc.audience_sizes(list(range(partitions))).values()) == len(current)

    # The default rule on entering high_value: each enter audience-changes records is decided once
    # (nobody here is bound to a guide: `no_recipient`, which takes no limit), and nothing else is.
    enters = sorted(
        (v["one_id"], v["event_id"] if v["cause"] == "event" else v["change_key"], "no_recipient")
        for output, _, v in out
        if output == "audience_changes" and (v["audience"], v["change"]) == ("high_value", "enter")
    )
    decided = sorted(
        (v["one_id"], v["trigger_event_id"], v.get("reason", "sent"))
        for output, _, v in out
        if output in ("guide_alerts", "actions_suppressed") and v["rule"] == "high_value_alert"
    )
    assert decided == enters


def test_a_lapse_needs_no_event_and_a_merge_moves_memberships_to_the_survivor():
    proc = processor()
    order = {
        "event_id": "o1",
        "one_id": _one_id(1),
        "event_type": "order_paid",
        "event_time_ms": T,
        "occurred_at": "2027-01-15T08:00:00+08:00",
        "channel": "app",
        "properties": {"amount": 6000},
    }
    proc.handle({"kind": "event", "event": order}, 0)
    out = proc.advance(0, T + 1)
    assert [(v["audience"], v["change"], v["cause"]) for o, _, v in out if o == "audience_changes"] == [
        ("high_value", "enter", "event")
    ]
    out = proc.advance(0, T + 61 * DAY)  # no event: day 60 passes
    changes = [(v["audience"], v["change"], v["cause"]) for o, _, v in out if o == "audience_changes"]
    assert changes == [("lapsed_buyers", "enter", "expired")]
    assert proc.timers.get(_one_id(1)) is None  # nothing more can lapse without an event
    merge_out = proc.handle({"kind": "merge", "one_id": _one_id(2), "merged_one_id": _one_id(1)}, 0)
    (absorb,) = [v for o, _, v in merge_out if o == "person_events"]
    exits = [(v["one_id"], v["audience"], v["cause"]) for o, _, v in merge_out if o == "audience_changes"]
    assert sorted(exits) == [(_one_id(1), "high_value", "merged"), (_one_id(1), "lapsed_buyers", "merged")]
    out = proc.handle(absorb, 0)
    enters = [(v["one_id"], v["audience"], v["cause"]) for o, _, v in out if o == "audience_changes"]
    # Taken in at the fragment's own event time, then its lapse passes again, with the watermark.
    assert enters == [(_one_id(2), "high_value", "merged"), (_one_id(2), "lapsed_buyers", "expired")]
    assert proc.profile(_one_id(2))["audiences"] == ["high_value", "lapsed_buyers"]
