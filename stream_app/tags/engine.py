"""Tags per person: declared in `topology.yaml`, folded over that person's events, merged on merges.

A profile's state is plain JSON: `{"tags": {name: kind state}, "recent": [event ids], "last_ms": n}`.
`apply` folds one event in (and ignores an event it has already applied, so an at-least-once replay
does not count twice), `merge` joins two people's states, `read` gives the tag values at a moment of
event time, derived tags included.

>>> orders = TagSpec(kind="count", when=When(event_type=("order_paid",)))
>>> engine = TagEngine.from_specs({"order_count": orders})
>>> state, changed = engine.apply(None, {"event_id": "e1", "event_type": "order_paid", "event_time_ms": 0}, 0)
>>> changed
{'order_count': 1}
"""

from __future__ import annotations

import graphlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import rule_engine

from stream_app.config.topology import TagSpec, When, duration_ms
from stream_app.expressions import Evaluator, compile_expression, evaluator, symbols
from stream_app.tags.kinds import MISSING, Kind

RECENT_EVENTS = 64
"""Event ids remembered per person to recognise a replay (at-least-once redelivery)."""
DAY_MS = 86_400_000


class TagError(ValueError):
    """A tag declaration that cannot work; `problems` holds `tags.<name>.<field>: reason` lines."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _path(field: str) -> tuple[str, ...]:
    return tuple(field.split("."))


def _get(event: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = event
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


@dataclass(frozen=True)
class _Stored:
    name: str
    kind: Kind
    when: When
    field: tuple[str, ...] | None
    by: tuple[str, ...] | None

    def matches(self, event: Mapping[str, Any]) -> bool:
        w = self.when
        return (w.event_type is None or event.get("event_type") in w.event_type) and (
            w.channel is None or event.get("channel") in w.channel
        )


@dataclass(frozen=True)
class _Derived:
    name: str
    rule: rule_engine.Rule
    evaluate: Evaluator
    reads: frozenset[str]


class Step(NamedTuple):
    """One event folded in (`TagEngine.step`): the readings are those the rules see around it."""

    state: dict[str, Any]
    changed: dict[str, Any]
    """Tags whose value changed (derived included), as `apply` gives them."""
    before: dict[str, Any]
    after: dict[str, Any]


def _idle_days(last: int | None, now_ms: int) -> float:
    return 0.0 if last is None else max(0.0, (now_ms - last) / DAY_MS)


class TagEngine:
    def __init__(self, stored: list[_Stored], derived: list[_Derived]):
        self.stored = stored
        self.derived = derived  # in dependency order
        self._plan = [(tag, tag.kind.kind in ("sum", "window_sum"), tag.kind.windowed) for tag in stored]
        self._readers: dict[str, Callable[[Any, int], Any]] = {
            tag.name: tag.kind.reader(tag.by is not None) for tag in stored
        }

    @classmethod
    def from_specs(cls, specs: Mapping[str, TagSpec]) -> TagEngine:
        """Compile declarations; raise `TagError` on a bad expression, unknown name or cycle."""
        stored, problems = [], []
        for name, spec in specs.items():
            if spec.kind == "derived":
                continue
            window = duration_ms(spec.window) if spec.window else 0
            bucket = duration_ms(spec.bucket) if spec.bucket else max(60_000, window // 720)
            stored.append(
                _Stored(
                    name,
                    Kind(spec.kind, window, bucket),
                    spec.when,
                    _path(spec.field) if spec.field else None,
                    _path(spec.by) if spec.by else None,
                )
            )
        names = set(specs) | {"idle_days"}
        rules: dict[str, rule_engine.Rule] = {}
        graph: dict[str, set[str]] = {}
        for name, spec in specs.items():
            if spec.kind != "derived" or spec.expr is None:  # TagSpec requires expr for derived
                continue
            try:
                rule = compile_expression(spec.expr)
            except rule_engine.errors.EngineError as exc:
                problems.append(f"tags.{name}.expr: {type(exc).__name__}: {exc.message}")
                continue
            used = symbols(rule)
            unknown = sorted(used - names)
            if unknown:
                problems.append(f"tags.{name}.expr: unknown name(s) {unknown}")
            rules[name] = rule
            graph[name] = {u for u in used if specs.get(u) is not None and specs[u].kind == "derived"}
        try:
            order = [n for n in graphlib.TopologicalSorter(graph).static_order() if n in rules]
        except graphlib.CycleError as exc:
            problems.append(f"tags: derived tags depend on each other in a cycle: {exc.args[1]}")
            order = []
        if problems:
            raise TagError(problems)
        return cls(
            stored,
            [_Derived(n, rules[n], evaluator(rules[n]), frozenset(symbols(rules[n]))) for n in order],
        )

    def apply(
        self, state: dict[str, Any] | None, event: Mapping[str, Any], now_ms: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The state after `event`, and the stored tags whose value changed (read at `now_ms`)."""
        state = state or _EMPTY
        new_state, names = self._fold(state, event, now_ms)
        if new_state is state or (not names and new_state["last_ms"] == state["last_ms"]):
            return new_state, {}
        # Derived tags (vip, lifecycle) change with the tags they read: compare whole readings.
        before = self.read(state, now_ms)
        after = self._reread(before, state, new_state, names, now_ms)
        return new_state, {k: v for k, v in after.items() if before.get(k) != v}

    def step(self, state: dict[str, Any] | None, event: Mapping[str, Any], now_ms: int) -> Step:
        """`apply`, with the readings before and after the event at `now_ms` (what rules read).

        A replay (an event already applied) gives the very `state` back, and no readings."""
        old = state or _EMPTY
        new_state, names = self._fold(old, event, now_ms)
        if new_state is old:
            return Step(old, {}, {}, {})
        before = self.read(old, now_ms)
        if not names and new_state["last_ms"] == old["last_ms"]:
            return Step(new_state, {}, before, before)
        after = self._reread(before, old, new_state, names, now_ms)
        return Step(new_state, {k: v for k, v in after.items() if before.get(k) != v}, before, after)

    def _fold(
        self, state: dict[str, Any], event: Mapping[str, Any], now_ms: int
    ) -> tuple[dict[str, Any], set[str]]:
        """The state after `event` (`state` itself for a replay), and the stored tags it changed."""
        event_id = event["event_id"]
        if event_id in state["recent"]:
            return state, set()
        tags = dict(state["tags"])
        event_time_ms = int(event["event_time_ms"])
        changed: set[str] = set()
        for tag, numeric, windowed in self._plan:
            if not tag.matches(event):
                continue
            value = _get(event, tag.field) if tag.field else None
            if tag.field and (value is None or (numeric and not _number(value))):
                continue
            sub_key = "" if tag.by is None else str(_get(event, tag.by) or "")
            if tag.by is not None and not sub_key:
                continue
            before = tags.get(tag.name)
            after = tag.kind.update(before, value, sub_key, event_time_ms, event_id, now_ms)
            if windowed:  # (other kinds never expire)
                after = tag.kind.expire(after, now_ms)
            if after != before:
                tags[tag.name] = after
                changed.add(tag.name)
        last = state["last_ms"]
        new_state = {
            "tags": tags,
            "recent": (state["recent"] + [event_id])[-RECENT_EVENTS:],
            "last_ms": event_time_ms if last is None else max(last, event_time_ms),
        }
        return new_state, changed

    def _reread(
        self,
        before: dict[str, Any],
        old: dict[str, Any],
        new: dict[str, Any],
        changed: set[str],
        now_ms: int,
    ) -> dict[str, Any]:
        """`read(new, now_ms)` from `read(old, now_ms)`: only the tags whose state changed are read
        again, and only the derived tags that read a value read again (the rest are the same)."""
        after = dict(before)
        tags = new["tags"]
        for name, reader in self._readers.items():
            if name in changed:
                after[name] = reader(tags.get(name, MISSING), now_ms)
        if not self.derived:
            return after
        fresh = set(changed)
        if new["last_ms"] != old["last_ms"]:
            fresh.add("idle_days")
        after["idle_days"] = _idle_days(new["last_ms"], now_ms)
        for derived in self.derived:
            if derived.reads & fresh:
                after[derived.name] = derived.evaluate(after)
                fresh.add(derived.name)
        del after["idle_days"]
        return after

    def merge(self, a: dict[str, Any] | None, b: dict[str, Any] | None, now_ms: int) -> dict[str, Any]:
        """The state of one person made of two (identity merge); commutative."""
        if a is None or b is None:
            return a or b or {"tags": {}, "recent": [], "last_ms": None}
        tags = {}
        for tag in self.stored:
            merged = tag.kind.merge(a["tags"].get(tag.name), b["tags"].get(tag.name))
            if merged is not None:
                tags[tag.name] = tag.kind.expire(merged, now_ms)
        # Both fragments' latest ids, in arrival order (not sorted: that kept the ids that sort last
        # and let a replay of another one, after a crash, count twice).
        seen_b = set(b["recent"])
        recent = [*(e for e in a["recent"] if e not in seen_b), *b["recent"]][-2 * RECENT_EVENTS :]
        lasts = [x for x in (a["last_ms"], b["last_ms"]) if x is not None]
        return {"tags": tags, "recent": recent, "last_ms": max(lasts) if lasts else None}

    def read(self, state: dict[str, Any] | None, now_ms: int) -> dict[str, Any]:
        """Every tag's value at `now_ms` (event time), derived tags included."""
        state = state or _EMPTY
        tags = state["tags"]
        values = {name: reader(tags.get(name, MISSING), now_ms) for name, reader in self._readers.items()}
        if not self.derived:
            return values
        values["idle_days"] = _idle_days(state["last_ms"], now_ms)
        for derived in self.derived:
            values[derived.name] = derived.evaluate(values)
        del values["idle_days"]
        return values


_EMPTY: dict[str, Any] = {"tags": {}, "recent": [], "last_ms": None}
"""The state of a person with no events (read only: never handed out to be changed)."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
