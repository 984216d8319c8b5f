"""The tag stage: per-person tag state, partitioned by one_id, moved to the survivor on a merge.

Reads `stream-app-person-events` (key one_id):

    {"kind": "event", "event": {... one_id ...}}        fold the event into that person's tags
    {"kind": "merge", "one_id": S, "merged_one_id": M}   (key M) M's state leaves for S's partition
    {"kind": "absorb", "one_id": S, "merged_one_id": M, "state": ...}   (key S) S takes it in

A merged one_id is remembered (`tag-aliases`), so an event that still names it (the identity fast
path may be a merge behind) is sent on to the survivor. Merges of tag state are commutative, so it
does not matter whether the absorb or the survivor's own events come first; each absorb is applied
once (`absorbed` ids kept with the state).
"""

from __future__ import annotations

from typing import Any

import faust
import orjson

from stream_app.metrics import Metrics
from stream_app.tags.engine import TagEngine


class TagStage:
    def __init__(
        self,
        app: faust.App,
        engine: TagEngine,
        person_events: faust.TopicT,
        profile_updates: faust.TopicT,
        partitions: int,
        lateness_ms: int,
        metrics: Metrics,
    ):
        self.engine = engine
        self.person_events = person_events
        self.profile_updates = profile_updates
        self.lateness_ms = lateness_ms
        self.metrics = metrics
        self.states = app.Table("tag-state", partitions=partitions, key_type=str, help="one_id -> tag state")
        self.aliases = app.Table(
            "tag-aliases",
            partitions=partitions,
            key_type=str,
            value_type=str,
            help="merged one_id -> survivor",
        )
        self.watermarks: dict[int, int] = {}
        """Per partition: the newest event time seen, less the allowed lateness."""

    def now_ms(self, partition: int) -> int:
        return self.watermarks.get(partition, 0)

    async def handle(self, record: dict[str, Any], partition: int) -> None:
        kind = record["kind"]
        if kind == "event":
            await self._event(record, partition)
        elif kind == "merge":
            await self._merge(record)
        elif kind == "absorb":
            await self._absorb(record, partition)

    async def _event(self, record: dict[str, Any], partition: int) -> None:
        event = record["event"]
        one_id = event["one_id"]
        survivor = self.aliases.get(one_id)
        if survivor is not None:
            forwarded = {**event, "one_id": survivor}
            await self.person_events.send(
                key=survivor.encode(), value=orjson.dumps({"kind": "event", "event": forwarded})
            )
            return
        watermark = max(self.now_ms(partition), int(event["event_time_ms"]) - self.lateness_ms)
        self.watermarks[partition] = watermark
        if int(event["event_time_ms"]) < watermark:
            self.metrics.tags_late_events.inc()
        stored = self.states.get(one_id) or {"state": None, "absorbed": []}
        state, changed = self.engine.apply(stored["state"], event, watermark)
        if state is stored["state"]:
            return  # a replay: already applied
        self.states[one_id] = {"state": state, "absorbed": stored["absorbed"]}
        self.metrics.tag_updates.inc(len(changed))
        if changed:
            await self._publish(one_id, event["event_id"], event["occurred_at"], changed)

    async def _merge(self, record: dict[str, Any]) -> None:
        merged, survivor = record["merged_one_id"], record["one_id"]
        stored = self.states.get(merged)
        if stored is not None:
            absorb = {"kind": "absorb", "one_id": survivor, "merged_one_id": merged, "state": stored}
            # Send before forgetting: a crash in between sends again, and the absorb is idempotent.
            await self.person_events.send(key=survivor.encode(), value=orjson.dumps(absorb))
            self.states.pop(merged, None)
        self.aliases[merged] = survivor

    async def _absorb(self, record: dict[str, Any], partition: int) -> None:
        target = record["one_id"]
        survivor = self.aliases.get(target)
        if survivor is not None:  # the survivor has itself merged on since
            await self.person_events.send(
                key=survivor.encode(), value=orjson.dumps({**record, "one_id": survivor})
            )
            return
        incoming = record["state"]
        stored = self.states.get(target) or {"state": None, "absorbed": []}
        merged_id = record["merged_one_id"]
        if merged_id in stored["absorbed"]:
            return
        now = self.now_ms(partition)
        before = self.engine.read(stored["state"], now)
        state = self.engine.merge(stored["state"], incoming["state"], now)
        absorbed = sorted({*stored["absorbed"], *incoming["absorbed"], merged_id})
        self.states[target] = {"state": state, "absorbed": absorbed}
        after = self.engine.read(state, now)
        changed = {name: value for name, value in after.items() if before.get(name) != value}
        if changed:
            await self._publish(target, None, None, changed, merged_one_id=merged_id)

    async def _publish(
        self, one_id: str, event_id: str | None, event_time: str | None, changed: dict[str, Any], **extra: Any
    ) -> None:
        update = {
            "one_id": one_id,
            "event_id": event_id,
            "event_time": event_time,
            "changed": changed,
            **extra,
        }
        await self.profile_updates.send(key=one_id.encode(), value=orjson.dumps(update))

    def profile(self, one_id: str) -> dict[str, Any] | None:
        """Tags of a live (not merged) person held by this worker, read at event-time now."""
        stored = self.states.get(one_id)
        if stored is None:
            return None
        state = stored["state"]
        # Event time "now": the newest watermark of this worker's partitions (lookups are rare).
        now = max([*self.watermarks.values(), state["last_ms"] or 0])
        return {"one_id": one_id, "tags": self.engine.read(state, now), "as_of_ms": now}
