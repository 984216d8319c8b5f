"""The linker's adapter tells the person stage, and every replica, which fragments a person holds."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson

from stream_app.config import load_topology
from stream_app.identity import IdentityResolver, MappingIdentityStore
from stream_app.identity.records import fragments_key
from stream_app.identity.store import BufferedIdentityStore
from stream_app.metrics import Metrics
from stream_app.worker.link_stage import LinkStage
from stream_app.worker.runtime import TopicNames
from tests.unit.test_topology import REPO

NAMES = TopicNames.of(load_topology(REPO / "topology.yaml"))


class Outbox:
    """What the stage added, in order (nothing to deliver: no merge futures to await)."""

    def __init__(self) -> None:
        self.added: list[tuple[str, bytes | None, bytes]] = []

    def add(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        self.added.append((topic, key, value))

    def send(self) -> None:
        pass

    async def delivered(self) -> None:
        pass

    def take(self, topic: str) -> list[tuple[str, Any]]:
        """(key, value) added for `topic`, values as JSON (an owner on the identifier map is plain)."""
        found = [(k.decode() if k else "", _value(v)) for t, k, v in self.added if t == topic]
        self.added = [a for a in self.added if a[0] != topic]
        return found


def _value(value: bytes) -> Any:
    return value.decode() if value.startswith(b"p_") else orjson.loads(value)


def _event(event_id: str, t: int, **identities: str) -> bytes:
    event = {"event_id": event_id, "event_time_ms": t, "occurred_at": str(t), "identities": identities}
    return orjson.dumps(event)


def test_events_of_a_merged_person_name_its_fragments_and_the_replicas_learn_them():
    pending = BufferedIdentityStore(MappingIdentityStore())
    outbox = Outbox()
    stage = LinkStage(IdentityResolver(pending), pending, outbox, NAMES, Metrics())  # type: ignore[arg-type]

    def handle(*events: bytes) -> None:
        asyncio.run(stage.handle(SimpleNamespace(value=b"\n".join(events))))

    handle(_event("e1", 100, member_id="M1"), _event("e2", 200, phone="h1"))
    (a, first), (b, second) = outbox.take(NAMES.person_events)
    assert "after" not in first and "after" not in second  # nobody merged yet
    assert dict(outbox.take(NAMES.identity_map)) == {"member_id:M1": a, "phone:h1": b}
    handle(_event("e3", 300, member_id="M1", phone="h1"))  # b (newer) into a
    records = outbox.take(NAMES.person_events)
    assert [(key, r["kind"]) for key, r in records] == [(a, "event"), (b, "merge")]
    assert records[0][1]["after"] == [b]
    published = dict(outbox.take(NAMES.identity_map))
    assert published == {"phone:h1": a, fragments_key(a): [b]}
    handle(_event("e4", 400, member_id="M1"))  # known: a replay would look like this
    ((key, record),) = outbox.take(NAMES.person_events)
    assert (key, record["after"]) == (a, [b])
    assert outbox.take(NAMES.identity_map) == []  # nothing new to publish
