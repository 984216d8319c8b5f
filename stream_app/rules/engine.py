"""Rule evaluation, limits, absence windows, the contact policy, quiet hours and idempotent keys.

A person's rule state is plain JSON and merges like tag state, so limits follow a person across an
identity merge:

    fired     {"rule|sub-key": event time of the last firing}     rule limits
    contacts  [[event time, channel, key], ...]                   coupons sent (frequency caps)
    pending   [{rule, deadline_ms, trigger}]                      absence windows still open
    deferred  [{due_ms, outcome}]                                 guide alerts held for quiet hours
    keys      [action keys decided]                               idempotency: a replay decides nothing
    awaited   {event type: [recent event times]}                  for absence windows opened late

Every action key is a hash of the rule, the triggering event and the limit's sub-key: the same cause
always gives the same key, whichever worker, one_id or replay decides it. For a rule triggered by an
audience change (`when: {audience_enter: ...}`, `on_audience`) the cause is the change, named by
its `change_key` (`stream_app.audiences.records`): one event can change several memberships.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import rule_engine

from stream_app.config.topology import ContactPolicy, RuleSpec, Store, duration_ms
from stream_app.effect.holdout import held_out
from stream_app.expressions import Evaluator, compile_expression, evaluator, symbols

KEYS_KEPT = 512
AWAITED_KEPT = 50


def action_key(rule: str, trigger_event_id: str, sub_key: str) -> str:
    """The idempotency key of one action.

    >>> action_key("welcome", "ev-1", "")
    'a_14c4b743e05b0c956a60'
    """
    return "a_" + hashlib.sha256(f"{rule}|{trigger_event_id}|{sub_key}".encode()).hexdigest()[:20]


def _get(event: Mapping[str, Any], path: str) -> Any:
    value: Any = event
    for part in path.split("."):
        if type(value) is not dict and not isinstance(value, Mapping):  # (dict first: an ABC check is dear)
            return None
        value = value.get(part)
    return value


CONDITION_NAMES = ("before", "event", "properties", "gap_days")
"""What a rule's `if` reads besides the tags after the event (`condition_context`)."""

TRIGGER_FIELDS = (
    "event_id",
    "event_type",
    "occurred_at",
    "event_time_ms",
    "ingested_at_ms",
    "arrived_at_ms",
    "channel",
    "store_id",
    "guide_id",
    "properties",
)
"""What an action keeps of the event that caused it; a guide alert's message reads these."""

AUDIENCE_FIELDS = ("audience", "sub_key", "change", "cause", "change_key")
"""What an action triggered by an audience change keeps of it (with the causing event's
`TRIGGER_FIELDS` when an event caused it); a guide alert's message reads these too."""


class AudienceTrigger(NamedTuple):
    """One audience change of a person, as a trigger (`RuleEngine.on_audience`)."""

    change_key: str
    """The change's key on `audience-changes`: the cause in the action key."""
    audience: str
    sub_key: str | None
    membership: str
    """`audience`, or `audience[sub_key]` for an audience with `by`."""
    change: str  # "enter" or "exit"
    cause: str  # "event", "expired" or "merged"
    at_ms: int


def audience_trigger(change: AudienceTrigger, event: Mapping[str, Any] | None) -> dict[str, Any]:
    """What an action remembers of an audience change: the causing event's fields (cause `event`)
    and the change's. `event_id` (the action's `trigger_event_id`) is the causing event's, else the
    change's `change_key`; `occurred_at` the event's, else the change's moment (UTC).

    >>> change = AudienceTrigger("c_1", "high_value", None, "high_value", "enter", "expired", 0)
    >>> trigger = audience_trigger(change, None)
    >>> trigger["event_id"], trigger["occurred_at"], trigger["properties"]
    ('c_1', '1970-01-01T00:00:00.000+00:00', {})
    """
    trigger = _trigger(event) if event is not None and change.cause == "event" else {"properties": {}}
    trigger.update(
        audience=change.audience,
        sub_key=change.sub_key,
        change=change.change,
        cause=change.cause,
        change_key=change.change_key,
    )
    if "event_id" not in trigger:
        moment = datetime.fromtimestamp(change.at_ms / 1000, tz=UTC)
        trigger.update(
            event_id=change.change_key,
            event_time_ms=change.at_ms,
            occurred_at=moment.isoformat(timespec="milliseconds"),
        )
    return trigger


def condition_context(
    event: Mapping[str, Any], before: Mapping[str, Any], after: Mapping[str, Any], gap_days: float | None
) -> dict[str, Any]:
    """The names a rule condition reads: the tags after the event and `CONDITION_NAMES`.

    Absence rules read the same: their condition is evaluated when the event opens the window.
    """
    return {
        **after,
        "before": dict(before),
        "event": dict(event),
        "properties": dict(event.get("properties") or {}),
        "gap_days": gap_days,
    }


def _fill_context(
    context: dict[str, Any],
    names: tuple[str, ...],
    event: Mapping[str, Any],
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    gap_days: float | None,
) -> None:
    """Add to `context` the names of `condition_context` a condition reads, no copies made.

    A condition only reads (the compiled closures never write), so the caller's mappings serve as
    they are; a name `condition_context` would not have stays out (it reads as null either way)."""
    for name in names:
        if name in context:
            continue
        if name == "gap_days":
            context[name] = gap_days
        elif name == "before":
            context[name] = before if type(before) is dict else dict(before)
        elif name == "event":
            context[name] = event if type(event) is dict else dict(event)
        elif name == "properties":
            properties = event.get("properties") or {}
            context[name] = properties if type(properties) is dict else dict(properties)
        elif name in after:
            context[name] = after[name]


class _Defaulting(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return "?"


def message_values(tags: Mapping[str, Any], trigger: Mapping[str, Any]) -> dict[str, Any]:
    """What fills a guide alert's `{placeholders}`: tags, then trigger fields, then its properties.

    A name none of them has prints `?` (validation at load refuses such a name).
    """
    return _Defaulting({**tags, **trigger, **(trigger.get("properties") or {})})


@dataclass(frozen=True)
class Outcome:
    """An action to emit (`suppressed` None) or one the policy held back (`suppressed` = reason)."""

    rule: str
    key: str
    kind: str  # "coupon" or "guide_alert"
    trigger: dict[str, Any]
    at_ms: int
    fields: dict[str, Any] = field(default_factory=dict)
    suppressed: str | None = None


def empty_state() -> dict[str, Any]:
    return {"fired": {}, "contacts": [], "pending": [], "deferred": [], "keys": [], "awaited": {}}


@dataclass(frozen=True)
class _Rule:
    name: str
    spec: RuleSpec
    condition: Evaluator | None
    per_ms: int
    within_ms: int
    stale_ms: int
    reads: tuple[str, ...] | None = None
    """The names the condition reads (`_fill_context`); None: the whole `condition_context`."""


def _compiled_rule(name: str, spec: RuleSpec) -> _Rule:
    per_ms = duration_ms(spec.limit.per) if spec.limit.per else 0
    within_ms = duration_ms(spec.absent.within) if spec.absent else 0
    stale_ms = duration_ms(spec.stale_after)
    if not spec.condition:
        return _Rule(name, spec, None, per_ms, within_ms, stale_ms)
    compiled = compile_expression(spec.condition)
    condition = evaluator(compiled)
    # rule-engine's own evaluate (an expression outside the closures' subset) gets every name.
    reads = None if condition == compiled.evaluate else tuple(sorted(symbols(compiled)))
    return _Rule(name, spec, condition, per_ms, within_ms, stale_ms, reads)


class RuleEngine:
    def __init__(
        self,
        rules: Mapping[str, RuleSpec],
        policy: ContactPolicy,
        stores: Mapping[str, Store],
    ):
        self.rules = [_compiled_rule(name, spec) for name, spec in rules.items()]
        self.audience_rules = [r for r in self.rules if r.spec.when.audience_triggered]
        """Rules an audience change triggers (`on_audience`); events trigger the others."""
        event_rules = [r for r in self.rules if not r.spec.when.audience_triggered]
        self._named = {r.name: r for r in self.rules}
        self.policy = policy
        self.stores = stores
        self.coupon_window_ms = duration_ms(policy.coupons.per)
        self.channel_caps = {ch: (cap.max, duration_ms(cap.per)) for ch, cap in policy.channels.items()}
        self.history_ms = max([self.coupon_window_ms, *(per for _, per in self.channel_caps.values())])
        self.awaited = {r.spec.absent.event_type for r in self.rules if r.spec.absent}
        self.awaited_ms = max([r.within_ms for r in self.rules], default=0) * 4
        # The rules an event of a type may trigger, in declaration order: most rules name one
        # type, so most events try one or two rules, not every one.
        self._any_type = [r for r in event_rules if r.spec.when.event_type is None]
        named = {t for r in event_rules for t in (r.spec.when.event_type or ())}
        self._by_type = {
            t: [r for r in event_rules if r.spec.when.event_type is None or t in r.spec.when.event_type]
            for t in named
        }

    # -- events ------------------------------------------------------------------------------

    def on_event(
        self,
        state: dict[str, Any] | None,
        event: Mapping[str, Any],
        before: Mapping[str, Any],
        after: Mapping[str, Any],
        gap_days: float | None,
        closed_ms: int | None = None,
        one_id: str | None = None,
    ) -> tuple[dict[str, Any], list[Outcome]]:
        """Rules triggered by `event`; `before`/`after` are the person's tags around it.

        `one_id`: the person's, for rules with a holdout (`effect.holdout`; none without it).

        `closed_ms`: for a late event, where event time already stands. An absence window that
        would have closed before it is never opened (it would fire at once, for a cause long
        gone), and a trigger at least the rule's `stale_after` behind is not acted on (a product
        view from hours ago is no reason to alert a guide now): both are recorded as suppressed,
        reason `late`."""
        t = int(event["event_time_ms"])
        event_type = event["event_type"]
        # Conditions read the event and the tags, never the rule state: decide which rules the
        # event triggers first, and copy the state only if something is to change in it.
        triggered = []
        context: dict[str, Any] | None = None
        for rule in self._by_type.get(event_type, self._any_type):
            w = rule.spec.when
            if w.channel is not None and event["channel"] not in w.channel:
                continue
            if rule.condition is not None:
                if rule.reads is None:
                    context = condition_context(event, before, after, gap_days)
                elif context is None:
                    context = {}
                    _fill_context(context, rule.reads, event, before, after, gap_days)
                else:
                    _fill_context(context, rule.reads, event, before, after, gap_days)
                if not _holds(rule.condition, context):
                    continue
            triggered.append(rule)
        if not triggered and event_type not in self.awaited:
            # Most events: nothing to decide, and no window to close (only an awaited type closes
            # one), so the state stays as it is (one stored before `awaited` existed gets it).
            if state is None:
                return empty_state(), []
            if "awaited" in state:
                return state, []
        state = _copy(state)
        for pending in state["pending"]:  # an awaited event closes its absence window
            absent = self._named[pending["rule"]].spec.absent
            awaited = absent is not None and event_type == absent.event_type
            if awaited and pending["start_ms"] < t <= pending["deadline_ms"]:
                pending["cancelled"] = True
        if event_type in self.awaited:
            # Remembered a while, because it may overtake the event that opens its window
            # (it took the identity fast path; the other waited for the linker).
            seen = [x for x in state["awaited"].get(event_type, []) if x > t - self.awaited_ms]
            state["awaited"][event_type] = sorted({*seen, t})[-AWAITED_KEPT:]
        outcomes: list[Outcome] = []
        for rule in triggered:
            trigger = _trigger(event)
            if rule.spec.absent is not None:
                known = any(
                    p["trigger"]["event_id"] == trigger["event_id"] and p["rule"] == rule.name
                    for p in state["pending"]
                )
                if not known and closed_ms is not None and t + rule.within_ms <= closed_ms:
                    outcomes.extend(self._late(state, rule, trigger, t))
                elif not known:
                    deadline = t + rule.within_ms
                    already = state["awaited"].get(rule.spec.absent.event_type, [])
                    state["pending"].append(
                        {
                            "rule": rule.name,
                            "start_ms": t,
                            "deadline_ms": deadline,
                            "trigger": trigger,
                            "cancelled": any(t < x <= deadline for x in already),
                        }
                    )
                continue
            if closed_ms is not None and closed_ms - t >= rule.stale_ms:
                outcomes.extend(self._late(state, rule, trigger, t))
                continue
            outcome = self._decide(state, rule, trigger, t, after, one_id)
            if outcome is not None:
                outcomes.append(outcome)
        return state, outcomes

    # -- audience changes ----------------------------------------------------------------------

    def on_audience(
        self,
        state: dict[str, Any] | None,
        changes: list[AudienceTrigger],
        event: Mapping[str, Any] | None,
        before: Mapping[str, Any],
        after: Mapping[str, Any],
        gap_days: float | None,
        closed_ms: int | None = None,
        one_id: str | None = None,
    ) -> tuple[dict[str, Any], list[Outcome]]:
        """Rules triggered by the person's audience changes (`when: {audience_enter: ...}`, or
        `audience_exit`), decided as those of an event: `if`, limit, caps, recipient, holdout,
        quiet hours, at the change's moment.

        `event`: the causing event when one caused them (the `if` reads it as for an event
        trigger; `before`, `gap_days` are its), else None (an expiry, a merge: `event` and
        `properties` read empty, `gap_days` null, `before` is `after`). `closed_ms`: for a late
        causing event, where event time stands: a change at least `stale_after` behind it is
        suppressed as `late`, as an event trigger would be."""
        if not self.audience_rules or not changes:
            return (empty_state() if state is None else state), []
        context: dict[str, Any] | None = None
        source = event or {}
        matched = []
        for change in changes:
            for rule in self.audience_rules:
                when = rule.spec.when
                wanted = when.audience_enter if change.change == "enter" else when.audience_exit
                if not wanted or (change.audience not in wanted and change.membership not in wanted):
                    continue
                if rule.condition is not None:
                    if context is None:
                        context = condition_context(source, before, after, gap_days)
                    if not _holds(rule.condition, context):
                        continue
                matched.append((rule, change))
        if not matched:
            return (empty_state() if state is None else state), []
        state = _copy(state)
        outcomes: list[Outcome] = []
        for rule, change in matched:
            trigger = audience_trigger(change, event)
            behind = closed_ms - change.at_ms if closed_ms is not None and change.cause == "event" else 0
            if behind >= rule.stale_ms:  # (stale_after is at least 1 ms)
                outcomes.extend(self._late(state, rule, trigger, change.at_ms))
                continue
            outcome = self._decide(state, rule, trigger, change.at_ms, after, one_id)
            if outcome is not None:
                outcomes.append(outcome)
        return state, outcomes

    # -- event time passing ------------------------------------------------------------------

    def on_time(
        self, state: dict[str, Any] | None, now_ms: int, tags: Mapping[str, Any], one_id: str | None = None
    ) -> tuple[dict[str, Any], list[Outcome]]:
        """Absence windows whose deadline has passed, and deferred alerts now due."""
        state = _copy(state)
        outcomes: list[Outcome] = []
        still_open = []
        for pending in sorted(state["pending"], key=lambda p: (p["deadline_ms"], p["trigger"]["event_id"])):
            if pending["deadline_ms"] > now_ms:
                still_open.append(pending)
            elif not pending.get("cancelled"):
                rule = self._rule(pending["rule"])
                outcome = self._decide(state, rule, pending["trigger"], pending["deadline_ms"], tags, one_id)
                if outcome is not None:
                    outcomes.append(outcome)
        state["pending"] = still_open
        waiting = []
        for deferred in sorted(state["deferred"], key=lambda d: (d["due_ms"], d["outcome"]["key"])):
            if deferred["due_ms"] <= now_ms:
                o = deferred["outcome"]
                outcomes.append(
                    Outcome(o["rule"], o["key"], o["kind"], o["trigger"], deferred["due_ms"], o["fields"])
                )
            else:
                waiting.append(deferred)
        state["deferred"] = waiting
        return state, outcomes

    def next_due(self, state: dict[str, Any] | None) -> int | None:
        """The earliest event time at which `on_time` has something to do."""
        if not state or not (state["pending"] or state["deferred"]):
            return None  # most people, most of the time
        times = [p["deadline_ms"] for p in state["pending"]] + [d["due_ms"] for d in state["deferred"]]
        return min(times) if times else None

    # -- merges ------------------------------------------------------------------------------

    def merge(self, a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
        """One person's rule state from two: limits, contact history and open windows carry over."""
        a, b = _copy(a), _copy(b)
        fired = dict(a["fired"])
        for key, at in b["fired"].items():
            fired[key] = max(at, fired.get(key, at))
        contacts = {c[2]: c for c in a["contacts"] + b["contacts"]}
        pending = {(p["rule"], p["trigger"]["event_id"]): p for p in a["pending"] + b["pending"]}
        deferred = {d["outcome"]["key"]: d for d in a["deferred"] + b["deferred"]}
        keys = sorted(set(a["keys"]) | set(b["keys"]))
        awaited = {
            kind: sorted(set(a["awaited"].get(kind, [])) | set(b["awaited"].get(kind, [])))[-AWAITED_KEPT:]
            for kind in {*a["awaited"], *b["awaited"]}
        }
        return {
            "awaited": awaited,
            "fired": fired,
            "contacts": sorted(contacts.values()),
            "pending": [pending[k] for k in sorted(pending)],
            "deferred": [deferred[k] for k in sorted(deferred)],
            "keys": keys[-KEYS_KEPT:],
        }

    # -- deciding one action -----------------------------------------------------------------

    def _late(self, state: dict[str, Any], rule: _Rule, trigger: dict[str, Any], at_ms: int) -> list[Outcome]:
        """A window too late to open or a stale trigger, recorded once as suppressed (its key
        decided, like any)."""
        sub_key = str(_get(trigger, rule.spec.limit.by) or "") if rule.spec.limit.by else ""
        key = action_key(rule.name, _cause(trigger), sub_key)
        if key in state["keys"]:
            return []
        state["keys"] = (state["keys"] + [key])[-KEYS_KEPT:]
        kind = "coupon" if rule.spec.coupon else "guide_alert"
        return [Outcome(rule.name, key, kind, trigger, at_ms, suppressed="late")]

    def _rule(self, name: str) -> _Rule:
        return self._named[name]

    def _decide(
        self,
        state: dict[str, Any],
        rule: _Rule,
        trigger: dict[str, Any],
        at_ms: int,
        tags: Mapping[str, Any],
        one_id: str | None = None,
    ) -> Outcome | None:
        spec = rule.spec
        sub_key = str(_get(trigger, spec.limit.by) or "") if spec.limit.by else ""
        key = action_key(rule.name, _cause(trigger), sub_key)
        if key in state["keys"]:
            return None  # decided before: a replay, or the same cause seen again
        state["keys"] = (state["keys"] + [key])[-KEYS_KEPT:]
        kind = "coupon" if spec.coupon else "guide_alert"
        limit_key = f"{rule.name}|{sub_key}"
        last = state["fired"].get(limit_key)
        if last is not None and (spec.limit.once or at_ms - last < rule.per_ms):
            return Outcome(rule.name, key, kind, trigger, at_ms, suppressed="rule_limit")
        if spec.coupon is not None:
            channel = spec.coupon.channel or trigger["channel"]
            reason = self._capped(state, channel, at_ms)
            fields = {"template": spec.coupon.template, "channel": channel}
            if reason is not None:
                return Outcome(rule.name, key, kind, trigger, at_ms, fields, suppressed=reason)
            state["fired"][limit_key] = at_ms
            if self._held_out(rule, one_id):  # eligible, not sent: no contact counted
                return Outcome(rule.name, key, kind, trigger, at_ms, fields, suppressed="holdout")
            cutoff = at_ms - self.history_ms
            state["contacts"] = [c for c in state["contacts"] if c[0] > cutoff] + [[at_ms, channel, key]]
            return Outcome(rule.name, key, kind, trigger, at_ms, fields)
        assert spec.guide_alert is not None
        alert = spec.guide_alert
        store_id = trigger.get("store_id")
        guide = None
        for recipient in alert.to:
            if recipient == "bound_guide" and tags.get("bound_guide_id"):
                guide = tags["bound_guide_id"]
            elif recipient == "duty_guide" and (store := self.stores.get(store_id or "")) is not None:
                guide = store.duty_guide
            if guide:
                break
        if not guide:
            return Outcome(rule.name, key, kind, trigger, at_ms, suppressed="no_recipient")
        values = message_values(tags, trigger)
        fields = {
            "guide_id": guide,
            "store_id": store_id,
            "message": alert.message.format_map(values),
            "tags": {name: tags.get(name) for name in alert.snapshot},
        }
        state["fired"][limit_key] = at_ms
        if self._held_out(rule, one_id):  # eligible (a recipient), not sent, not deferred
            return Outcome(rule.name, key, kind, trigger, at_ms, fields, suppressed="holdout")
        due = self._after_quiet_hours(at_ms, store_id)
        if due is not None:
            state["deferred"].append(
                {
                    "due_ms": due,
                    "outcome": {
                        "rule": rule.name,
                        "key": key,
                        "kind": kind,
                        "trigger": trigger,
                        "fields": fields,
                    },
                }
            )
            return None
        return Outcome(rule.name, key, kind, trigger, at_ms, fields)

    def _held_out(self, rule: _Rule, one_id: str | None) -> bool:
        """In the rule's holdout (`stream_app.effect.holdout`): its limit counts as if sent, so
        both groups have the same eligibility afterwards; its caps do not (nothing reached them)."""
        return one_id is not None and held_out(one_id, rule.name, rule.spec.effect.holdout)

    def _capped(self, state: dict[str, Any], channel: str, at_ms: int) -> str | None:
        cap = self.policy.coupons
        recent = [c for c in state["contacts"] if at_ms - self.coupon_window_ms < c[0] <= at_ms]
        if len(recent) >= cap.max:
            return f"cap:coupons_per_{cap.per}"
        if channel in self.channel_caps:
            limit, per_ms = self.channel_caps[channel]
            used = [c for c in state["contacts"] if c[1] == channel and at_ms - per_ms < c[0] <= at_ms]
            if len(used) >= limit:
                return f"cap:{channel}_per_{self.policy.channels[channel].per}"
        return None

    def _after_quiet_hours(self, at_ms: int, store_id: str | None) -> int | None:
        """The end of the quiet hours `at_ms` falls in (store time), or None outside them."""
        store = self.stores.get(store_id or "")
        zone = ZoneInfo(store.timezone if store is not None else self.policy.timezone)
        local = datetime.fromtimestamp(at_ms / 1000, tz=UTC).astimezone(zone)
        start = _clock(self.policy.quiet_hours.start)
        end = _clock(self.policy.quiet_hours.end)
        now = (local.hour, local.minute)
        quiet = (start <= now or now < end) if start > end else (start <= now < end)
        if not quiet:
            return None
        day = local.date() if now < end else local.date() + timedelta(days=1)
        resume = datetime(day.year, day.month, day.day, end[0], end[1], tzinfo=zone)
        return int(resume.timestamp() * 1000)


def _clock(text: str) -> tuple[int, int]:
    hours, minutes = text.split(":")
    return int(hours), int(minutes)


def _holds(condition: Evaluator, context: Mapping[str, Any]) -> bool:
    try:
        return bool(condition(context))
    except rule_engine.errors.EvaluationError:
        return False  # e.g. a tag the event did not have: the condition does not hold


def _cause(trigger: Mapping[str, Any]) -> str:
    """What names an action's cause in its key: the audience change, else the event."""
    return str(trigger.get("change_key") or trigger["event_id"])


def _trigger(event: Mapping[str, Any]) -> dict[str, Any]:
    """What an action needs to remember of the event that caused it."""
    trigger = {k: event[k] for k in TRIGGER_FIELDS if k != "properties" and k in event}
    trigger["properties"] = dict(event.get("properties") or {})
    return trigger


def _copy(state: dict[str, Any] | None) -> dict[str, Any]:
    if state is None:
        return empty_state()
    return {
        "fired": dict(state["fired"]),
        "contacts": [list(c) for c in state["contacts"]],
        "pending": [dict(p) for p in state["pending"]],
        "deferred": list(state["deferred"]),
        "keys": list(state["keys"]),
        "awaited": {kind: list(times) for kind, times in state.get("awaited", {}).items()},
    }


__all__ = [
    "AUDIENCE_FIELDS",
    "AudienceTrigger",
    "CONDITION_NAMES",
    "TRIGGER_FIELDS",
    "Outcome",
    "RuleEngine",
    "action_key",
    "audience_trigger",
    "condition_context",
    "empty_state",
    "message_values",
]
