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
        if type(value) is not dict and not isinstance(value, Mapping):  # (dict first: an ABC check is dear)
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


class _Fold(NamedTuple):
    """One stored tag as `_fold` runs it: everything about it decided once, at compile time."""

    name: str
    fold: Callable[[Any, Any, str, int, str, int], Any]
    channels: tuple[str, ...] | None
    field: tuple[str, ...] | None
    numeric: bool
    by: tuple[str, ...] | None


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
        self._readers: dict[str, Callable[[Any, int], Any]] = {
            tag.name: tag.kind.reader(tag.by is not None) for tag in stored
        }
        self._read_stored = _compile_reading(stored, self._readers)
        folds = [
            _Fold(
                tag.name,
                tag.kind.folder(),
                tag.when.channel,
                tag.field,
                tag.kind.kind in ("sum", "window_sum"),
                tag.by,
            )
            for tag in stored
        ]
        # The tags an event of a type may change, in declaration order (most tags name a type
        # or two, so most events try a few); an event of a type no tag names tries the rest.
        named = {t for tag in stored for t in (tag.when.event_type or ())}
        self._any_type = [f for f, tag in zip(folds, stored, strict=True) if tag.when.event_type is None]
        self._by_type = {
            t: [
                f
                for f, tag in zip(folds, stored, strict=True)
                if tag.when.event_type is None or t in tag.when.event_type
            ]
            for t in named
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
        """The state after `event`, and the tags whose value changed (read at `now_ms`)."""
        step = self.step(state, event, now_ms)
        return step.state, step.changed

    def step(self, state: dict[str, Any] | None, event: Mapping[str, Any], now_ms: int) -> Step:
        """`apply`, with the readings before and after the event at `now_ms` (what rules read).

        A replay (an event already applied) gives the very `state` back, and no readings.

        The reading after the event is made whole; the one before it differs only in the tags
        the event changed and the derived tags that read them (a tag whose state the event left
        alone reads the same before and after, at the same `now_ms`)."""
        old = state or _EMPTY
        new_state, names = self._fold(old, event, now_ms)
        if new_state is old:
            return Step(old, {}, {}, {})
        after = self.read(new_state, now_ms)
        fresh_last = new_state["last_ms"] != old["last_ms"]
        if not names and not fresh_last:
            return Step(new_state, {}, after, after)
        before = dict(after)
        old_tags = old["tags"]
        readers = self._readers
        for name in names:
            before[name] = readers[name](old_tags.get(name, MISSING), now_ms)
        candidates = names
        if self.derived:
            fresh = set(names)
            if fresh_last:
                fresh.add("idle_days")
            before["idle_days"] = _idle_days(old["last_ms"], now_ms)
            candidates = list(names)
            for derived in self.derived:
                if derived.reads & fresh:
                    before[derived.name] = derived.evaluate(before)
                    fresh.add(derived.name)
                    candidates.append(derived.name)
            del before["idle_days"]
        changed = {name: after[name] for name in candidates if before[name] != after[name]}
        return Step(new_state, changed, before, after)

    def _fold(
        self, state: dict[str, Any], event: Mapping[str, Any], now_ms: int
    ) -> tuple[dict[str, Any], list[str]]:
        """The state after `event` (`state` itself for a replay), and the stored tags it changed
        (in declaration order)."""
        event_id = event["event_id"]
        recent = state["recent"]
        if event_id in recent:
            return state, []
        tags = state["tags"]
        new_tags: dict[str, Any] | None = None
        event_time_ms = int(event["event_time_ms"])
        event_type = event.get("event_type")
        plan = self._by_type.get(event_type, self._any_type) if type(event_type) is str else self._any_type
        changed: list[str] = []
        for name, fold, channels, field, numeric, by in plan:
            if channels is not None and event.get("channel") not in channels:
                continue
            if field is None:
                value = None
            else:
                value = event.get(field[0]) if len(field) == 1 else _get(event, field)
                if value is None or (numeric and not _number(value)):
                    continue
            if by is None:
                sub_key = ""
            else:
                sub_key = str(_get(event, by) or "")
                if not sub_key:
                    continue
            before = tags.get(name)
            after = fold(before, value, sub_key, event_time_ms, event_id, now_ms)
            if after is not before and after != before:
                if new_tags is None:
                    new_tags = dict(tags)
                new_tags[name] = after
                changed.append(name)
        last = state["last_ms"]
        recent = [*recent, event_id]
        new_state = {
            # Tag states are never changed in place, so an unchanged dict can be shared.
            "tags": new_tags if new_tags is not None else dict(tags),
            "recent": recent[-RECENT_EVENTS:] if len(recent) > RECENT_EVENTS else recent,
            "last_ms": event_time_ms if last is None else max(last, event_time_ms),
        }
        return new_state, changed

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
        values = self._read_stored(state["tags"], now_ms)
        if not self.derived:
            return values
        values["idle_days"] = _idle_days(state["last_ms"], now_ms)
        for derived in self.derived:
            values[derived.name] = derived.evaluate(values)
        del values["idle_days"]
        return values


# What `Kind.reader` gives for each kind that needs no code of its own, as one expression over
# `s`, the tag's state or MISSING (`M`): the same value, without a call per tag.
_INLINE_READ = {
    "count": "(0 if (s := g({name}, M)) is M else s)",
    "sum": "round(0.0 if (s := g({name}, M)) is M else (s or 0.0), 6)",
    "latest": "(None if (s := g({name})) is None else s[2])",
    "set": "([] if (s := g({name}, M)) is M else s)",
    "min": "g({name})",
    "max": "g({name})",
}


def _compile_reading(
    stored: list[_Stored], readers: Mapping[str, Callable[[Any, int], Any]]
) -> Callable[[Mapping[str, Any], int], dict[str, Any]]:
    """`{name: reader(tags.get(name, MISSING), now_ms)}` over the stored tags in declaration order,
    compiled once into one function: a reading is made on every event applied (twice, around it),
    and a call per tag was half its cost. Windowed kinds still call their reader (a loop over
    buckets); the others are inlined (`_INLINE_READ`, each the reader's own expression).
    `tests/unit/tags/test_fast_paths.py` holds it to `Kind.read`."""
    scope: dict[str, Any] = {"M": MISSING}
    items = []
    for n, tag in enumerate(stored):
        inline = _INLINE_READ.get(tag.kind.kind)
        if inline is None:
            scope[f"r{n}"] = readers[tag.name]
            items.append(f"{tag.name!r}: r{n}(g({tag.name!r}, M), now_ms)")
        else:
            items.append(f"{tag.name!r}: " + inline.format(name=repr(tag.name)))
    source = "def read_stored(tags, now_ms):\n    g = tags.get\n    return {" + ", ".join(items) + "}\n"
    exec(compile(source, "<tag readings>", "exec"), scope)  # noqa: S102 - source built from repr()s above
    return scope["read_stored"]  # type: ignore[no-any-return]


_EMPTY: dict[str, Any] = {"tags": {}, "recent": [], "last_ms": None}
"""The state of a person with no events (read only: never handed out to be changed)."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
