"""One partition's people: tags and trigger rules, applied in event-time order. Pure: no Faust.

Records come from `stream-app-person-events` (key one_id):

    {"kind": "event", "event": {... one_id ...}, "after": [M, ...]}   hold the event until event
                                                         time passes it (and the fragments M are in)
    {"kind": "merge", "one_id": S, "merged_one_id": M}   (key M) M's state leaves for S's partition
    {"kind": "absorb", "one_id": S, "merged_one_id": M, "state": ...}   (key S) S takes it in

and `advance(partition, t)`: the partition's watermark (`stream_app.control`) reached t.

**Event-time order.** A person's events reach this stage in whatever order the partitions upstream
delivered them (input topics are keyed by nobody in particular; some events take the identity fast
path, others wait for the linker). Each event is *held* in the person's state until the partition's
watermark passes it; then held events and due timers (absence deadlines, deferred alerts) are
applied strictly in event-time order. So a person's tags, limits and contact caps see their events
in the order they happened, and the actions decided are the same however the input was partitioned
or replayed, as long as nothing arrives later than the allowed lateness (a late event is applied at
once, out of order, and counted). The price is latency: an action waits for the watermark, about the
allowed lateness (`allowed_lateness` in topology.yaml; `0s` applies events about as they arrive).

A person's state (`states`) holds their tags, rule state (limits, contact history, open windows,
deferred alerts, decided keys), held events and recent actions; tags and rules merge commutatively,
so limits follow a person across an identity merge. A merged one_id is remembered (`aliases`) and
later events naming it go on to the survivor. An event from the linker names in `after` the one_ids
merged into its person so far: it waits until the person has taken in each one's state, so a replay
whose first pass went to a fragment (merged since) is recognised there instead of counted twice.
People with something due are indexed in `timers`, so the watermark passing a deadline acts even if
that person never comes back.

Every method returns what to send as `Emit` tuples (output, key, value); the caller sends them.
The values on output topics are the published contracts (docs/contracts.md), built here.

**Audiences** (`stream_app.audiences`): a person's memberships are re-evaluated after every event
applied, when the survivor of a merge has taken a fragment in, and at the next moment event time
can change one with no event (`AudienceEngine.next_change`, a due time beside the rules' own in
`timers`); a merged one_id leaves every audience. The state keeps the memberships (bounded by the
declared audiences and their `max_keys`) and that due time. Closing event time resolves
audiences only up to where the input's event time reached (the newest event seen), not to the
end of time: a lapse 60 days on is not the state at the end of the input. Each change triggers
the rules on it (`RuleEngine.on_audience`) at once, on the same state; the merged one_id's
leaving triggers none.
"""

from __future__ import annotations

import bisect
import heapq
import time
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

from stream_app.audiences import AudienceEngine
from stream_app.audiences.records import CAUSES, change_key, change_record, member_key, member_record
from stream_app.contracts import ACTIONS_SUPPRESSED, CONVERSIONS, COUPONS, GUIDE_ALERTS, PROFILE_UPDATES
from stream_app.effect.attribution import AttributionEngine, conversion_record
from stream_app.metrics import Metrics
from stream_app.rules.engine import AudienceTrigger, Outcome, RuleEngine
from stream_app.tags.engine import TagEngine

Emit = tuple[str, str, dict[str, Any] | None]
"""(output, key, value); output is one of person_events, profile_updates, coupons, guide_alerts,
actions_suppressed, conversions, audience_changes, audience_members (value None: a tombstone)."""

DAY_MS = 86_400_000
RECENT_ACTIONS = 20
END_OF_TIME = 2**62
LATE = "late_behind_watermark_ms"
"""Set on a late event while it is applied: the watermark it arrived behind."""
AUDIENCE_SIZES = "~audience-sizes:"
"""`states` key (`~audience-sizes:<partition>`, no one_id starts with `~`) of the partition's
memberships per audience: changelogged with the people they count, so they move with them."""
AFTER = "after_absorbing"
"""Set on a held event that waits for merged fragments' states: the one_ids still to come."""


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _order(event: dict[str, Any]) -> tuple[int, str]:
    return int(event["event_time_ms"]), event["event_id"]


def _waiting(event: dict[str, Any], stored: dict[str, Any]) -> bool:
    """Whether a held event still waits for a merged fragment's state."""
    after = event.get(AFTER)
    if not after:
        return False  # (most events: no generator made)
    return any(m not in stored["absorbed"] for m in after)


def empty_person() -> dict[str, Any]:
    return {"tags": None, "rules": None, "held": [], "absorbed": [], "actions": [], "effect": None}


PERSON_KEYS = frozenset(empty_person())
"""What a person's state always holds (an older state may lack some: `_load` fills them in)."""


class PersonProcessor:
    def __init__(
        self,
        tag_engine: TagEngine,
        rule_engine: RuleEngine,
        states: MutableMapping[str, Any],
        aliases: MutableMapping[str, Any],
        timers: MutableMapping[str, Any],
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        effect: AttributionEngine | None = None,
        audiences: AudienceEngine | None = None,
    ):
        self.engine = tag_engine
        self.rules = rule_engine
        self.effect = effect or AttributionEngine.from_specs({r.name: r.spec for r in rule_engine.rules})
        """Attribution windows of every rule (`stream_app.effect`), kept in each person's state."""
        self.states = states
        self.aliases = aliases
        self.timers = timers
        self.metrics = metrics
        self.clock = clock
        self.watermarks: dict[int, int] = {}
        """Per partition: event time now; nothing older is still on its way."""
        self._newest: dict[int, int] = {}
        """Per partition: the newest event time seen (lookups read tags at it)."""
        self._due: dict[int, list[tuple[int, str]]] = {}
        """Per partition: a heap of (due, one_id) over `timers`, built from it on first use.
        Entries go stale when a person's due time moves; `timers` has the truth."""
        self._handed_on: dict[int, int] = {}
        """Per partition: records handed on to other partitions (merged people) since last asked."""
        self.audiences = audiences
        self._audience_horizon: int | None = None
        """While event time closes: audience due times from here on wait (see the module doc)."""
        self._partition = 0
        """The partition of the record or watermark being handled (where audience sizes count)."""

    def now_ms(self, partition: int) -> int:
        """The partition's watermark: what is older is late; what is due before it happens."""
        return self.watermarks.get(partition, 0)

    def handle(self, record: dict[str, Any], partition: int) -> list[Emit]:
        out: list[Emit] = []
        self._partition = partition
        kind = record["kind"]
        if kind == "event":
            self._event(record["event"], partition, out, record.get("after"))
        elif kind == "merge":
            self._merge(record, out)
        elif kind == "absorb":
            self._absorb(record, partition, out)
        handed_on = sum(1 for output, _, _ in out if output == "person_events")
        if handed_on:
            self._handed_on[partition] = self._handed_on.get(partition, 0) + handed_on
        return out

    def take_handed_on(self, partition: int) -> int:
        """How many records the partition handed on to others since the last call (and reset).

        A bounded run is only over when a round of markers finds nothing handed on: what was
        handed on may still be on its way, along a chain of merges of any length."""
        return self._handed_on.pop(partition, 0)

    def advance(self, partition: int, watermark_ms: int) -> list[Emit]:
        """Event time on the partition reached `watermark_ms`: what is older happens now."""
        out: list[Emit] = []
        self._partition = partition
        if watermark_ms > self.now_ms(partition):
            self.watermarks[partition] = watermark_ms
            self._fire_timers(partition, watermark_ms, out)
        return out

    def close_event_time(self, partition: int) -> list[Emit]:
        """End of a bounded input: every held event, open window and deferred alert resolves.

        The watermark itself stays: it is where the input's event time reached."""
        out: list[Emit] = []
        self._partition = partition
        self._audience_horizon = max([*self._newest.values(), self.now_ms(partition)]) + 1
        try:
            self._fire_timers(partition, END_OF_TIME, out)
        finally:
            self._audience_horizon = None
        return out

    # -- events ------------------------------------------------------------------------------

    def _event(
        self, event: dict[str, Any], partition: int, out: list[Emit], after: list[str] | None = None
    ) -> None:
        one_id = event["one_id"]
        survivor = self.aliases.get(one_id)
        if survivor is not None:
            forward: dict[str, Any] = {"kind": "event", "event": {**event, "one_id": survivor}}
            if after:
                forward["after"] = after
            out.append(("person_events", survivor, forward))
            return
        t = int(event["event_time_ms"])
        self._newest[partition] = max(t, self._newest.get(partition, t))
        watermark = self.now_ms(partition)
        stored = self._load(one_id)
        event_id = event["event_id"]
        for held_event in stored["held"]:  # (a loop: the generator of `any` cost more than the few held)
            if held_event["event_id"] == event_id:
                return  # a replay of an event still held
        missing = [m for m in after or () if m not in stored["absorbed"]]
        if missing:
            event = {**event, AFTER: missing}  # held, late or not, until those states are in
        if t < watermark:
            self.metrics.tags_late_events.inc()
            event = {**event, LATE: watermark}  # applied at once; rules see where time stands
        held = list(stored["held"])  # sorted by `_order`: the event goes after its equals, as a stable sort
        bisect.insort(held, event, key=_order)
        stored = {**stored, "held": held}
        self._advance(one_id, stored, partition, watermark, out)  # a late event goes at once

    def _advance(
        self, one_id: str, stored: dict[str, Any], partition: int, until_ms: int, out: list[Emit]
    ) -> None:
        """Apply held events and fire timers before `until_ms`, in event-time order; save.

        Before, not at: an event at the watermark's very moment may still be on its way."""
        while True:
            held = stored["held"]
            next_event = int(held[0]["event_time_ms"]) if held else None
            due = self._next_due(stored)
            if next_event is not None and _waiting(held[0], stored):
                # It and all after it wait for a fragment's state; what is due before it goes.
                until_ms, next_event = min(until_ms, next_event), None
            if next_event is not None and next_event < until_ms and (due is None or next_event <= due):
                # An event at a deadline's very moment comes first: it may close the window.
                event = held[0]
                if AFTER in event:
                    event = {k: v for k, v in event.items() if k != AFTER}
                stored = self._apply(one_id, {**stored, "held": held[1:]}, event, out)
            elif due is not None and due < until_ms:
                stored = self._fire(one_id, stored, due, out)
            else:
                break
        self._save(one_id, stored, partition, due)

    def _apply(
        self, one_id: str, stored: dict[str, Any], event: dict[str, Any], out: list[Emit]
    ) -> dict[str, Any]:
        t = int(event["event_time_ms"])
        previous = stored["tags"]
        last = previous["last_ms"] if previous else None
        # The person's own event time: the same whatever else shares the partition.
        now = t if last is None else max(t, last)
        tags, changed, before, after = self.engine.step(previous, event, now)
        if tags is previous:
            return stored  # a replay: already applied
        self.metrics.tag_updates.inc(len(changed))
        if changed:
            update = {
                "schema_version": PROFILE_UPDATES.version,
                "one_id": one_id,
                "event_id": event["event_id"],
                "event_time": event["occurred_at"],
                "changed": changed,
            }
            out.append(("profile_updates", one_id, update))
        gap_days = None if last is None else (t - last) / DAY_MS
        rules, outcomes = self.rules.on_event(
            stored["rules"], event, before, after, gap_days, closed_ms=event.get(LATE), one_id=one_id
        )
        stored = self._emit(one_id, {**stored, "tags": tags, "rules": rules}, outcomes, out)
        stored = self._attribute(one_id, stored, outcomes, event, now, out)
        return self._audiences_at(
            one_id,
            stored,
            after,
            now,
            event["event_id"],
            event.get("occurred_at"),
            out,
            event=event,
            before=before,
            gap_days=gap_days,
        )

    def _fire(self, one_id: str, stored: dict[str, Any], due_ms: int, out: list[Emit]) -> dict[str, Any]:
        last = (stored["tags"] or {}).get("last_ms") or 0
        tags = self.engine.read(stored["tags"], max(due_ms, last))
        rules, outcomes = self.rules.on_time(stored["rules"], due_ms, tags, one_id=one_id)
        stored = self._emit(one_id, {**stored, "rules": rules}, outcomes, out)
        stored = self._attribute(one_id, stored, outcomes, None, max(due_ms, last), out)
        audience_due = AudienceEngine.next_due(stored.get("audiences"))
        if audience_due is not None and audience_due <= due_ms:
            stored = self._audiences_at(one_id, stored, tags, max(due_ms, last), "expired", None, out)
        return stored

    # -- event time ----------------------------------------------------------------------------

    def _fire_timers(self, partition: int, now_ms: int, out: list[Emit]) -> None:
        """Everyone on the partition with something due before `now_ms`, earliest first."""
        due = self._due.get(partition)
        if due is None:
            due = self._due[partition] = [
                (at, one_id) for one_id, (p, at) in list(self.timers.items()) if p == partition
            ]
            heapq.heapify(due)
        while due and due[0][0] < now_ms:
            at, one_id = heapq.heappop(due)
            if self.timers.get(one_id) == [partition, at]:
                self._advance(one_id, self._load(one_id), partition, now_ms, out)

    def forget_timer_index(self) -> None:
        """After a rebalance: partitions may have come back with timers set elsewhere meanwhile."""
        self._due.clear()

    # -- merges --------------------------------------------------------------------------------

    def _merge(self, record: dict[str, Any], out: list[Emit]) -> None:
        merged, survivor = record["merged_one_id"], record["one_id"]
        if merged in self.aliases:
            return  # a replay: its state has left already
        # Even with no state: the survivor's events wait for every fragment's absorb (`after`).
        stored = self.states.get(merged) or empty_person()
        if self.audiences is not None and stored.get("audiences"):
            # The merged one_id leaves every audience; the survivor evaluates its own on absorbing.
            at_ms = int(record.get("event_time_ms") or (stored["tags"] or {}).get("last_ms") or 0)
            left = self.audiences.leave_all(stored["audiences"], at_ms)
            self._audience_emit(merged, left.changes, None, out)
            stored = {k: v for k, v in stored.items() if k != "audiences"}
        # Send before forgetting: a crash in between sends again, and the absorb is idempotent.
        absorb = {"kind": "absorb", "one_id": survivor, "merged_one_id": merged, "state": stored}
        out.append(("person_events", survivor, absorb))
        self.states.pop(merged, None)
        self.timers.pop(merged, None)
        self.aliases[merged] = survivor

    def _absorb(self, record: dict[str, Any], partition: int, out: list[Emit]) -> None:
        target = record["one_id"]
        survivor = self.aliases.get(target)
        if survivor is not None:  # the survivor has itself merged on since
            out.append(("person_events", survivor, {**record, "one_id": survivor}))
            return
        stored, incoming = self._load(target), {**empty_person(), **record["state"]}
        merged_id = record["merged_one_id"]
        if merged_id in stored["absorbed"]:
            return
        if incoming == empty_person():  # a fragment with nothing yet: only its name is taken in
            stored = {**stored, "absorbed": sorted({*stored["absorbed"], merged_id})}
            self._advance(target, stored, partition, self.now_ms(partition), out)
            return
        lasts = [s["tags"]["last_ms"] for s in (stored, incoming) if s["tags"] and s["tags"]["last_ms"]]
        now = max(lasts, default=0)
        before = self.engine.read(stored["tags"], now)
        tags = self.engine.merge(stored["tags"], incoming["tags"], now)
        held = {h["event_id"]: {**h, "one_id": target} for h in [*stored["held"], *incoming["held"]]}
        actions = sorted(stored["actions"] + incoming["actions"], key=lambda a: a["event_time_ms"])
        stored = {
            "tags": tags,
            "rules": self.rules.merge(stored["rules"], incoming["rules"]),
            "held": sorted(held.values(), key=_order),
            "absorbed": sorted({*stored["absorbed"], *incoming["absorbed"], merged_id}),
            "actions": actions[-RECENT_ACTIONS:],
            "effect": self.effect.merge(stored.get("effect"), incoming.get("effect")),
            "audiences": stored.get("audiences"),
        }
        stored = self._attribute(target, stored, [], None, now, out, merged=True)  # orders meet windows
        after = self.engine.read(tags, now)
        changed = {name: value for name, value in after.items() if before.get(name) != value}
        if changed:
            update = {
                "schema_version": PROFILE_UPDATES.version,
                "one_id": target,
                "event_id": None,
                "event_time": None,
                "changed": changed,
                "merged_one_id": merged_id,
            }
            out.append(("profile_updates", target, update))
        stored = self._audiences_at(target, stored, after, now, "merged", None, out)
        self._advance(target, stored, partition, self.now_ms(partition), out)

    # -- state and outputs -----------------------------------------------------------------------

    def _load(self, one_id: str) -> dict[str, Any]:
        """The person's state, never changed in place (every step makes a new dict), so a stored
        one with every key is handed out as it is, without a copy."""
        stored = self.states.get(one_id)
        if stored and stored.keys() >= PERSON_KEYS:
            return stored  # type: ignore[no-any-return]
        return {**empty_person(), **(stored or {})}

    def _save(self, one_id: str, stored: dict[str, Any], partition: int, rules_due: int | None) -> None:
        """`rules_due`: `next_due` of the stored rule state (the caller has just asked it)."""
        self.states[one_id] = stored
        due = rules_due
        audience_due = AudienceEngine.next_due(stored.get("audiences"))
        if audience_due is not None:
            due = audience_due if due is None else min(due, audience_due)
        if stored["held"] and not _waiting(stored["held"][0], stored):  # (an absorb wakes a waiting one)
            held_due = int(stored["held"][0]["event_time_ms"])
            due = held_due if due is None else min(due, held_due)
        if due is None:
            if one_id in self.timers:
                del self.timers[one_id]
            return
        if self.timers.get(one_id) != [partition, due]:
            self.timers[one_id] = [partition, due]
            if partition in self._due:
                heapq.heappush(self._due[partition], (due, one_id))

    def _emit(
        self, one_id: str, stored: dict[str, Any], outcomes: list[Outcome], out: list[Emit]
    ) -> dict[str, Any]:
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
                suppressed = {
                    "schema_version": ACTIONS_SUPPRESSED.version,
                    "key": o.key,
                    "action": o.kind,
                    "reason": o.suppressed,
                    **base,
                    **(o.fields if o.suppressed != "holdout" else {}),  # (the window keeps them)
                }
                out.append(("actions_suppressed", one_id, suppressed))
                continue
            self.metrics.actions_emitted.labels(o.rule, o.kind).inc()
            arrived = o.trigger.get("arrived_at_ms") or o.trigger.get("ingested_at_ms")
            if arrived:
                self.metrics.action_latency.labels(o.rule).observe(max(0.0, (wall_ms - arrived) / 1000))
            if o.kind == "coupon":
                coupon = {"schema_version": COUPONS.version, "coupon_key": o.key, **base, **o.fields}
                out.append(("coupons", one_id, coupon))
            else:
                alert = {"schema_version": GUIDE_ALERTS.version, "alert_key": o.key, **base, **o.fields}
                out.append(("guide_alerts", one_id, alert))
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

    def _attribute(
        self,
        one_id: str,
        stored: dict[str, Any],
        outcomes: list[Outcome],
        event: dict[str, Any] | None,
        now_ms: int,
        out: list[Emit],
        merged: bool = False,
    ) -> dict[str, Any]:
        """Campaign effect (`stream_app.effect`): actions open windows, orders convert them."""
        effect = stored.get("effect")
        changed = merged
        for o in outcomes:
            if o.suppressed not in (None, "holdout"):
                continue
            guide = o.fields.get("guide_id") or (o.trigger.get("guide_id") if o.kind == "coupon" else None)
            effect = self.effect.on_action(
                effect,
                rule=o.rule,
                key=o.key,
                kind=o.kind,
                at_ms=o.at_ms,
                held_out=o.suppressed == "holdout",
                template=o.fields.get("template"),
                guide_id=guide,
            )
            self.metrics.effect_actions.labels(o.rule, "holdout" if o.suppressed else "treated").inc()
            changed = True
        if event is not None:
            updated = self.effect.on_event(effect, event)
            if updated is not None:
                effect, changed = updated, True
        if effect is None or not changed:
            return stored
        effect, conversions = self.effect.settle(effect, now_ms)
        if conversions:
            wall_ms = int(self.clock() * 1000)
            for c in conversions:
                record = conversion_record(c, one_id, wall_ms, CONVERSIONS.version)
                self.metrics.conversion(record["rule"], record["group"], record["amount"])
                out.append(("conversions", one_id, record))
        return {**stored, "effect": effect}

    # -- audiences -----------------------------------------------------------------------------

    def _next_due(self, stored: dict[str, Any]) -> int | None:
        """When something is due: the rules' next, or the audiences' (before the horizon, if any)."""
        due = self.rules.next_due(stored["rules"])
        audience_due = AudienceEngine.next_due(stored.get("audiences"))
        horizon = self._audience_horizon
        if audience_due is not None and (horizon is None or audience_due < horizon):
            due = audience_due if due is None else min(due, audience_due)
        return due

    def _audiences_at(
        self,
        one_id: str,
        stored: dict[str, Any],
        values: dict[str, Any],
        at_ms: int,
        cause: str,
        event_time: str | None,
        out: list[Emit],
        event: dict[str, Any] | None = None,
        before: dict[str, Any] | None = None,
        gap_days: float | None = None,
    ) -> dict[str, Any]:
        """Memberships re-evaluated on tag readings `values` at `at_ms`; their changes emitted,
        and the rules they trigger decided (`event`, `before`, `gap_days`: the causing event's)."""
        if self.audiences is None:
            return stored
        previous = stored.get("audiences") or {}
        if previous.get("at", at_ms) > at_ms:
            # Evaluated at a later moment already (a due time; a late event, a merge): event time
            # does not go back, or a lapsed membership would enter again and lapse at once.
            at_ms = previous["at"]
            values = self.engine.read(stored["tags"], at_ms)
        evaluation = self.audiences.evaluate(stored.get("audiences"), stored["tags"], values, at_ms, cause)
        self._audience_emit(one_id, evaluation.changes, event_time, out)
        stored = {**stored, "audiences": evaluation.state}
        return self._audience_rules(one_id, stored, evaluation.changes, values, event, before, gap_days, out)

    def _audience_rules(
        self,
        one_id: str,
        stored: dict[str, Any],
        changes: list[Any],
        values: dict[str, Any],
        event: dict[str, Any] | None,
        before: dict[str, Any] | None,
        gap_days: float | None,
        out: list[Emit],
    ) -> dict[str, Any]:
        """Rules an audience change triggers (`RuleEngine.on_audience`), emitted and attributed
        like an event's. Only the person's own changes trigger: a merged one_id leaving every
        audience (`_merge`) triggers nothing, since that one_id is gone (the survivor's changes on
        taking its tags in, cause `merged`, do trigger)."""
        if not changes or not self.rules.audience_rules:
            return stored
        triggers = [
            AudienceTrigger(
                change_key(one_id, c.membership, c.change, c.cause, c.at_ms),
                c.audience,
                c.sub_key,
                c.membership,
                c.change,
                c.cause if c.cause in CAUSES else "event",
                c.at_ms,
            )
            for c in changes
        ]
        by_event = event if event is not None and triggers[0].cause == "event" else None
        rules, outcomes = self.rules.on_audience(
            stored["rules"],
            triggers,
            by_event,
            values if before is None or by_event is None else before,
            values,
            gap_days if by_event is not None else None,
            closed_ms=by_event.get(LATE) if by_event is not None else None,
            one_id=one_id,
        )
        stored = self._emit(one_id, {**stored, "rules": rules}, outcomes, out)
        return self._attribute(one_id, stored, outcomes, None, changes[0].at_ms, out)

    def _audience_emit(
        self, one_id: str, changes: list[Any], event_time: str | None, out: list[Emit]
    ) -> None:
        if not changes:
            return
        wall_ms = int(self.clock() * 1000)
        key = f"{AUDIENCE_SIZES}{self._partition}"
        sizes = dict(self.states.get(key) or {})
        for change in changes:
            sizes[change.audience] = sizes.get(change.audience, 0) + (1 if change.change == "enter" else -1)
            record = change_record(one_id, change, event_time, wall_ms)
            out.append(("audience_changes", one_id, record))
            member = member_record(one_id, change, record) if change.change == "enter" else None
            out.append(("audience_members", member_key(one_id, change.membership), member))
            self.metrics.audience_changes.labels(change.audience, change.change, record["cause"]).inc()
        self.states[key] = sizes

    def audience_sizes(self, partitions: list[int]) -> dict[str, int]:
        """Memberships per declared audience among the people of `partitions`."""
        names = [audience.name for audience in self.audiences.audiences] if self.audiences else []
        totals = dict.fromkeys(names, 0)
        for partition in partitions:
            for name, size in (self.states.get(f"{AUDIENCE_SIZES}{partition}") or {}).items():
                totals[name] = totals.get(name, 0) + size
        return totals

    # -- lookups -------------------------------------------------------------------------------

    def profile(self, one_id: str) -> dict[str, Any] | None:
        """Tags and recent actions of a live (not merged) person held by this worker."""
        stored = self.states.get(one_id)
        if stored is None or (stored.get("tags") is None and not stored.get("held")):
            return None
        tags = stored["tags"]
        last = (tags or {}).get("last_ms") or 0
        # Event time "now": the newest event time this worker has seen (lookups are rare).
        now = max([*self._newest.values(), last])
        return {
            "one_id": one_id,
            "tags": self.engine.read(tags, now),
            "as_of_ms": now,
            "events_waiting_for_event_time": len(stored.get("held") or []),
            "recent_actions": stored["actions"],
            "audiences": sorted((stored.get("audiences") or {}).get("in") or ()),
        }
