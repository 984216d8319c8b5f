"""The person stage: tags and trigger rules per one_id, moved to the survivor on a merge.

Reads `stream-app-person-events` (key one_id):

    {"kind": "event", "event": {... one_id ...}}        fold the event into tags, run the rules
    {"kind": "merge", "one_id": S, "merged_one_id": M}   (key M) M's state leaves for S's partition
    {"kind": "absorb", "one_id": S, "merged_one_id": M, "state": ...}   (key S) S takes it in
    {"kind": "tick", "wall_ms": ...}                     event time moves on: due timers fire

A person's state (`person-state`) holds their tags, their rule state (limits, contact history, open
absence windows, deferred alerts, decided action keys) and their recent actions; both halves merge
commutatively, so limits follow a person across an identity merge. A merged one_id is remembered
(`person-aliases`) and later events naming it go on to the survivor. People with open timers are
indexed in `person-timers`, so a partition's watermark passing a deadline fires it even if that
person never comes back; ticks (from every worker, every few seconds) advance an idle partition's
watermark with the wall clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import faust
import orjson

from stream_app.metrics import Metrics
from stream_app.rules.engine import Outcome, RuleEngine
from stream_app.tags.engine import TagEngine

DAY_MS = 86_400_000
RECENT_ACTIONS = 20
IDLE_AFTER_MS = 10_000
"""Wall-clock quiet time after which a partition's event time follows the wall clock."""
END_OF_TIME = 2**62


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


class PersonStage:
    def __init__(
        self,
        app: faust.App,
        tag_engine: TagEngine,
        rule_engine: RuleEngine,
        topics: dict[str, faust.TopicT],
        partitions: int,
        lateness_ms: int,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ):
        self.engine = tag_engine
        self.rules = rule_engine
        self.topics = topics
        self.lateness_ms = lateness_ms
        self.metrics = metrics
        self.clock = clock
        self.states = app.Table("person-state", partitions=partitions, key_type=str, help="one_id -> state")
        self.aliases = app.Table(
            "person-aliases",
            partitions=partitions,
            key_type=str,
            value_type=str,
            help="merged one_id -> survivor",
        )
        self.timers = app.Table(
            "person-timers", partitions=partitions, key_type=str, help="one_id -> [partition, next due]"
        )
        self.watermarks: dict[int, int] = {}
        """Per partition: event time now (the newest event time seen, less the allowed lateness)."""
        self._last_seen: dict[int, tuple[int, int]] = {}
        """Per partition: (newest event time, wall clock when it was seen), for idle advancement."""

    def now_ms(self, partition: int) -> int:
        """The partition's watermark: what is older is late; timers up to it are due."""
        return self.watermarks.get(partition, 0)

    def stream_time(self, partition: int) -> int:
        """The newest event time seen on the partition: the moment tags are read at."""
        return self._last_seen.get(partition, (0, 0))[0]

    async def handle(self, record: dict[str, Any], partition: int) -> None:
        kind = record["kind"]
        if kind == "event":
            await self._event(record["event"], partition)
        elif kind == "merge":
            await self._merge(record)
        elif kind == "absorb":
            await self._absorb(record, partition)
        elif kind == "tick":
            await self.tick(partition, record["wall_ms"])

    # -- events ------------------------------------------------------------------------------

    async def _event(self, event: dict[str, Any], partition: int) -> None:
        one_id = event["one_id"]
        survivor = self.aliases.get(one_id)
        if survivor is not None:
            await self._send(
                "person_events", survivor, {"kind": "event", "event": {**event, "one_id": survivor}}
            )
            return
        t = int(event["event_time_ms"])
        watermark = max(self.now_ms(partition), t - self.lateness_ms)
        self.watermarks[partition] = watermark
        self._last_seen[partition] = (
            max(t, self._last_seen.get(partition, (0, 0))[0]),
            int(self.clock() * 1000),
        )
        if t < watermark:
            self.metrics.tags_late_events.inc()
        stored = self._load(one_id)
        # Tags are read at stream time (the newest event time of the partition), so a window's
        # count moves by one per event whatever order the events of a minute arrive in.
        now = self.stream_time(partition)
        tags, changed = self.engine.apply(stored["tags"], event, now)
        if tags is stored["tags"]:
            return  # a replay: already applied
        self.metrics.tag_updates.inc(len(changed))
        if changed:
            await self._send(
                "profile_updates",
                one_id,
                {
                    "one_id": one_id,
                    "event_id": event["event_id"],
                    "event_time": event["occurred_at"],
                    "changed": changed,
                },
            )
        last = stored["tags"]["last_ms"] if stored["tags"] else None
        before, after = self.engine.read(stored["tags"], now), self.engine.read(tags, now)
        gap_days = None if last is None else (t - last) / DAY_MS
        rules, outcomes = self.rules.on_event(stored["rules"], event, before, after, gap_days)
        stored = {**stored, "tags": tags, "rules": rules}
        stored = await self._emit(one_id, stored, outcomes)
        self._save(one_id, stored, partition)
        if self.rules.next_due(rules) is not None and self.rules.next_due(rules) <= watermark:
            await self._fire_due(one_id, partition, watermark)

    # -- event time ----------------------------------------------------------------------------

    async def tick(self, partition: int, wall_ms: int) -> None:
        """Move an idle partition's event time on with the wall clock, then fire what is due."""
        newest, seen_at = self._last_seen.get(partition, (0, 0))
        if newest and wall_ms - seen_at >= IDLE_AFTER_MS:
            idle_now = newest + (wall_ms - seen_at) - self.lateness_ms
            self.watermarks[partition] = max(self.now_ms(partition), idle_now)
        await self.fire_timers(partition, self.now_ms(partition))

    async def close_event_time(self, partition: int) -> None:
        """End of a bounded input: every open window and deferred alert of the partition resolves.

        The watermark itself stays: tags are still read (and windows still expire) at the event
        time the input reached."""
        await self.fire_timers(partition, END_OF_TIME)

    async def fire_timers(self, partition: int, now_ms: int) -> None:
        due = [one_id for one_id, (p, at) in list(self.timers.items()) if p == partition and at <= now_ms]
        for one_id in sorted(due):
            await self._fire_due(one_id, partition, now_ms)

    async def _fire_due(self, one_id: str, partition: int, now_ms: int) -> None:
        stored = self._load(one_id)
        tags = self.engine.read(stored["tags"], min(now_ms, (stored["tags"] or {}).get("last_ms") or 0))
        rules, outcomes = self.rules.on_time(stored["rules"], now_ms, tags)
        stored = await self._emit(one_id, {**stored, "rules": rules}, outcomes)
        self._save(one_id, stored, partition)

    # -- merges --------------------------------------------------------------------------------

    async def _merge(self, record: dict[str, Any]) -> None:
        merged, survivor = record["merged_one_id"], record["one_id"]
        stored = self.states.get(merged)
        if stored is not None:
            # Send before forgetting: a crash in between sends again, and the absorb is idempotent.
            await self._send(
                "person_events",
                survivor,
                {"kind": "absorb", "one_id": survivor, "merged_one_id": merged, "state": stored},
            )
            self.states.pop(merged, None)
            self.timers.pop(merged, None)
        self.aliases[merged] = survivor

    async def _absorb(self, record: dict[str, Any], partition: int) -> None:
        target = record["one_id"]
        survivor = self.aliases.get(target)
        if survivor is not None:  # the survivor has itself merged on since
            await self._send("person_events", survivor, {**record, "one_id": survivor})
            return
        stored, incoming = self._load(target), record["state"]
        merged_id = record["merged_one_id"]
        if merged_id in stored["absorbed"]:
            return
        now = self.stream_time(partition)
        before = self.engine.read(stored["tags"], now)
        tags = self.engine.merge(stored["tags"], incoming["tags"], now)
        absorbed = sorted({*stored["absorbed"], *incoming["absorbed"], merged_id})
        actions = sorted(stored["actions"] + incoming["actions"], key=lambda a: a["event_time_ms"])
        stored = {
            "tags": tags,
            "rules": self.rules.merge(stored["rules"], incoming["rules"]),
            "absorbed": absorbed,
            "actions": actions[-RECENT_ACTIONS:],
        }
        self._save(target, stored, partition)
        after = self.engine.read(tags, now)
        changed = {name: value for name, value in after.items() if before.get(name) != value}
        if changed:
            await self._send(
                "profile_updates",
                target,
                {
                    "one_id": target,
                    "event_id": None,
                    "event_time": None,
                    "changed": changed,
                    "merged_one_id": merged_id,
                },
            )

    # -- state and outputs -----------------------------------------------------------------------

    def _load(self, one_id: str) -> dict[str, Any]:
        return self.states.get(one_id) or {"tags": None, "rules": None, "absorbed": [], "actions": []}

    def _save(self, one_id: str, stored: dict[str, Any], partition: int) -> None:
        self.states[one_id] = stored
        due = self.rules.next_due(stored["rules"])
        if due is None:
            if one_id in self.timers:
                del self.timers[one_id]
        elif self.timers.get(one_id) != [partition, due]:
            self.timers[one_id] = [partition, due]

    async def _emit(self, one_id: str, stored: dict[str, Any], outcomes: list[Outcome]) -> dict[str, Any]:
        if not outcomes:
            return stored
        wall_ms = int(self.clock() * 1000)
        actions = list(stored["actions"])
        for o in outcomes:
            base = {
                "one_id": one_id,
                "rule": o.rule,
                "trigger_event_id": o.trigger["event_id"],
                "event_time": o.trigger.get("occurred_at"),
                "decided_at": _iso(o.at_ms),
                "emitted_at": _iso(wall_ms),
            }
            if o.suppressed is not None:
                self.metrics.actions_suppressed.labels(o.rule, o.suppressed).inc()
                await self._send(
                    "actions_suppressed",
                    one_id,
                    {"key": o.key, "action": o.kind, "reason": o.suppressed, **base, **o.fields},
                )
                continue
            self.metrics.actions_emitted.labels(o.rule, o.kind).inc()
            if o.trigger.get("ingested_at_ms"):
                self.metrics.action_latency.observe(max(0.0, (wall_ms - o.trigger["ingested_at_ms"]) / 1000))
            if o.kind == "coupon":
                record = {"coupon_key": o.key, **base, **o.fields}
                await self._send("coupons", one_id, record)
            else:
                record = {"alert_key": o.key, **base, **o.fields}
                await self._send("guide_alerts", one_id, record)
            actions.append(
                {
                    "kind": o.kind,
                    "rule": o.rule,
                    "key": o.key,
                    "event_time_ms": o.at_ms,
                    "decided_at": base["decided_at"],
                }
            )
        return {**stored, "actions": actions[-RECENT_ACTIONS:]}

    async def _send(self, topic: str, key: str, value: dict[str, Any]) -> None:
        await self.topics[topic].send(key=key.encode(), value=orjson.dumps(value))

    def profile(self, one_id: str) -> dict[str, Any] | None:
        """Tags and recent actions of a live (not merged) person held by this worker."""
        stored = self.states.get(one_id)
        if stored is None or stored["tags"] is None:
            return None
        tags = stored["tags"]
        # Event time "now": the newest stream time of this worker's partitions (lookups are rare).
        now = max([*(newest for newest, _ in self._last_seen.values()), tags["last_ms"] or 0])
        return {
            "one_id": one_id,
            "tags": self.engine.read(tags, now),
            "as_of_ms": now,
            "recent_actions": stored["actions"],
        }
