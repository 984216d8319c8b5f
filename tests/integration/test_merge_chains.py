"""Merge chains: a person's state handed on along a chain of merges still in flight.

Each person starts as five fragments (one identifier each, five one_ids), then four linking events
join them newest pair first, so every merge names a survivor that is itself merged by the next
event: A5 -> A4, A4 -> A3, A3 -> A2, A2 -> A1. The person stage hands A5's state (and its events,
still held for event-time order) from partition to partition along the chain, possibly after the
first round of end-of-input markers has passed. A bounded run must still end with every event
applied: order_count and lifetime_spend equal what the input says, nothing left waiting.
"""

from __future__ import annotations

import urllib.request

import orjson
import pytest

from tests.integration.helpers import decoded, final_one_id

pytestmark = pytest.mark.integration

PEOPLE = 30
FRAGMENTS = ("member_id", "unionid", "email", "openid", "wecom_external_userid")


def _identifier(id_type: str, person: int) -> str:
    return f"chain{person}@example.com" if id_type == "email" else f"{id_type[:3]}-chain-{person}"


def chain_population() -> tuple[list[bytes], dict[str, tuple[int, int]]]:
    """Input lines, and per member_id the (orders, spend) the person's tags must end with."""
    lines: list[bytes] = []
    expected: dict[str, tuple[int, int]] = {}
    second = 0

    def event(person: int, kind: str, identities: dict[str, str], **props: object) -> bytes:
        nonlocal second
        second += 1
        return orjson.dumps(
            {
                "event_id": f"chain-{len(lines):05d}",
                "event_type": kind,
                "occurred_at": f"2026-11-22T10:{second // 60 % 60:02d}:{second % 60:02d}.000+08:00",
                "channel": "app",
                "identities": identities,
                "properties": props,
            }
        )

    for person in range(PEOPLE):
        spend = 0
        for n, id_type in enumerate(FRAGMENTS):  # first seen first: A1 is the oldest one_id
            amount = 10 * (n + 1) + person
            spend += amount
            lines.append(event(person, "order_paid", {id_type: _identifier(id_type, person)}, amount=amount))
        for left, right in reversed(list(zip(FRAGMENTS, FRAGMENTS[1:], strict=False))):
            ids = {left: _identifier(left, person), right: _identifier(right, person)}
            lines.append(event(person, "login", ids))
        expected[_identifier("member_id", person)] = (len(FRAGMENTS), spend)
    return lines, expected


def _get(port: int, path: str) -> dict:
    return orjson.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).read())


def test_events_survive_merge_chains_in_flight(make_env):
    # One input and one de-duplication partition keep the linker's order the input's order, so
    # every chain forms as written; the person stage keeps its 8 partitions to hand state across.
    env = make_env(partitions={"touchpoints": 1, "events_by_id": 1})
    lines, expected = chain_population()
    topo = env.topology
    with env.local_run() as run:
        run.stream_events(lines)
        run.finish_input(close_event_time=True, timeout=180)
        outputs = decoded(run.read_outputs())
        merges = outputs[topo.topics.identity_merges.name]
        assert len(merges) == PEOPLE * (len(FRAGMENTS) - 1)
        final = final_one_id(merges)
        member_of = {
            final(e["one_id"]): e["identities"]["member_id"]
            for e in outputs[topo.topics.resolved.name]
            if "member_id" in e["identities"]
        }
        assert len(member_of) == PEOPLE
        wrong = {}
        for one_id, member in member_of.items():
            profile = _get(run.web_port, f"/profiles/{one_id}")
            tags = profile["tags"]
            got = (tags["order_count"], round(tags["lifetime_spend"]))
            if got != expected[member] or profile["events_waiting_for_event_time"]:
                wrong[member] = (got, expected[member], profile["events_waiting_for_event_time"])
        assert not wrong, f"{len(wrong)} of {PEOPLE} people lost events along a merge chain: {wrong}"
