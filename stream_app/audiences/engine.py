"""Audience membership: a pure function of a person's tags at a moment of event time, and when it
can next change without an event.

An audience is a condition over the person's tags (the expressions of derived tags and rules,
`stream_app.expressions`), `idle_days` (days since their last event) and, for an audience `by` a
window tag with sub-keys (`views_24h`), `key`: one membership per sub-key the tag holds now
(`category_interest[bags]`), at most `max_keys` of them (the first in sorted order), so a
person's memberships are bounded by the declared audiences and their `max_keys`.

**When membership can change without an event.** Between a person's events their stored tags stay
as they are; only two readings move with event time: a window tag, which drops a bucket when it
leaves the window (a step, at `bucket + window + bucket_size`), and `idle_days`, which grows. A
condition may compare `idle_days` only with a number (`idle_days >= 60`, also inside a derived tag
it reads), so it can only flip where `idle_days` crosses one of those numbers. `next_change` is the
earliest such moment after now, over the windows and thresholds the audiences read (directly or
through derived tags): nothing any condition reads changes before it, so re-evaluating there (and
again at the next one) finds every exit and enter when it happens, not on a daily schedule. It may
fire where nothing changes (a bucket of another category leaving): re-evaluation is cheap.

>>> from stream_app.config.topology import AudienceSpec, TagSpec, When
>>> tags = {"order_count": TagSpec(kind="count", when=When(event_type=("order_paid",)))}
>>> engine = AudienceEngine.from_specs(
...     {"lapsed": AudienceSpec(condition="order_count >= 1 and idle_days >= 60")}, tags)
>>> state = {"tags": {"order_count": 1}, "recent": [], "last_ms": 0}
>>> result = engine.evaluate(None, state, {"order_count": 1}, 0, "e1")
>>> (result.changes, result.state["due"] - 60 * DAY_MS)  # from a millisecond before day 60 on
([], -1)
>>> [(c.membership, c.change, c.cause) for c in engine.evaluate(
...     result.state, state, {"order_count": 1}, 60 * DAY_MS, "expired").changes]
[('lapsed', 'enter', 'expired')]
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import rule_engine
from rule_engine import DataType
from rule_engine import ast as re_ast

from stream_app.config.topology import AudienceSpec, TagSpec
from stream_app.expressions import (
    Evaluator,
    _children,
    check_expression,
    compile_expression,
    evaluator,
    symbols,
)
from stream_app.tags.engine import TagEngine

DAY_MS = 86_400_000
IDLE = "idle_days"
KEY = "key"
"""The sub-key, in the condition of an audience with `by`."""
WINDOW_KINDS = ("window_count", "window_sum")


class AudienceError(ValueError):
    """Audience declarations that cannot work; `problems` holds `audiences.<name>.<field>: reason`."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class Change(NamedTuple):
    """One person entering or leaving one membership (`high_value`, `category_interest[bags]`)."""

    membership: str
    audience: str
    sub_key: str | None
    change: str  # "enter" or "exit"
    cause: str
    """The causing event's id, `expired` (event time passed) or `merged`."""
    at_ms: int


class Evaluation(NamedTuple):
    state: dict[str, Any]
    """`{"in": {membership: entered at, ms}, "at": evaluated at, ms, "due": next_change or None}`."""
    changes: list[Change]


def membership(audience: str, sub_key: str | None) -> str:
    """The name of one membership: the audience, with its sub-key in brackets.

    >>> membership("category_interest", "bags")
    'category_interest[bags]'
    """
    return audience if sub_key is None else f"{audience}[{sub_key}]"


def split_membership(name: str) -> tuple[str, str | None]:
    """The audience and sub-key of a membership (audience names have no `[`).

    >>> split_membership("category_interest[a[b]]")
    ('category_interest', 'a[b]')
    """
    audience, sep, rest = name.partition("[")
    return (audience, rest[:-1]) if sep else (audience, None)


@dataclass(frozen=True)
class _Audience:
    name: str
    condition: Evaluator
    by: str | None
    max_keys: int


class AudienceEngine:
    def __init__(
        self,
        audiences: list[_Audience],
        windows: Mapping[str, tuple[int, int]],
        thresholds: Iterable[float],
    ):
        self.audiences = audiences
        self.windows = dict(windows)
        """Window tags the conditions read -> (window, bucket) in ms: their expiries are changes."""
        self.thresholds = tuple(sorted(set(thresholds)))
        """Days `idle_days` is compared with, over every condition."""

    @classmethod
    def from_specs(cls, audiences: Mapping[str, AudienceSpec], tags: Mapping[str, TagSpec]) -> AudienceEngine:
        """Compile declarations; raise `AudienceError` with every problem (`audience_problems`)."""
        problems = audience_problems(audiences, tags)
        if problems:
            raise AudienceError(problems)
        kinds = {tag.name: tag.kind for tag in TagEngine.from_specs(tags).stored}
        compiled, windows, thresholds = [], {}, []
        for name, spec in audiences.items():
            rule = compile_expression(spec.condition)
            compiled.append(_Audience(name, evaluator(rule), spec.by, spec.max_keys))
            for tag in _reads(rule, tags):
                if tag in kinds and kinds[tag].windowed:
                    windows[tag] = (kinds[tag].window_ms, kinds[tag].bucket_ms)
            for expression in _time_expressions(rule, tags):
                thresholds += _idle_thresholds(expression)[0]
        return cls(compiled, windows, thresholds)

    def members(self, values: Mapping[str, Any], last_ms: int | None, at_ms: int) -> list[str]:
        """Every membership that holds for tag readings `values` at `at_ms` (the definition)."""
        context = dict(values)
        context[IDLE] = 0.0 if last_ms is None else max(0.0, (at_ms - last_ms) / DAY_MS)
        found = []
        for audience in self.audiences:
            if audience.by is None:
                if _holds(audience.condition, context):
                    found.append(audience.name)
                continue
            reading = values.get(audience.by)
            held = []
            # (`type is dict` first: an ABC's isinstance is a dear call, and readings are dicts)
            keys = reading if type(reading) is dict or isinstance(reading, Mapping) else ()
            for sub_key in sorted(keys):
                context[KEY] = sub_key
                if _holds(audience.condition, context):
                    held.append(membership(audience.name, sub_key))
                    if len(held) == audience.max_keys:
                        break
            context.pop(KEY, None)
            found += held
        return found

    def next_change(self, tag_state: Mapping[str, Any] | None, at_ms: int) -> int | None:
        """The earliest event time after `at_ms` at which, with no event, a reading a condition
        reads may change: a window bucket starting or leaving its window, or `idle_days` crossing a
        threshold (each threshold gives the few milliseconds around it where float division
        may put the crossing). None: nothing changes until the next event."""
        if not tag_state:
            return None
        found: list[int] = []
        tags = tag_state.get("tags") or {}
        for name, (window_ms, bucket_ms) in self.windows.items():
            for key in tags.get(name) or ():
                start = int(key)
                for moment in (start, start + window_ms + bucket_ms):
                    if moment > at_ms:
                        found.append(moment)
        last = tag_state.get("last_ms")
        if last is not None:
            for days in self.thresholds:
                edge = math.floor(days * DAY_MS)
                found += [m for m in range(last + edge - 1, last + edge + 3) if m > at_ms]
        return min(found) if found else None

    def evaluate(
        self,
        state: Mapping[str, Any] | None,
        tag_state: Mapping[str, Any] | None,
        values: Mapping[str, Any],
        at_ms: int,
        cause: str,
    ) -> Evaluation:
        """Memberships at `at_ms` from the readings `values` (`TagEngine.read` of `tag_state` at
        `at_ms`), the changes from `state`'s, and the next moment to look again."""
        last = tag_state.get("last_ms") if tag_state else None
        now = self.members(values, last, at_ms)
        before: Mapping[str, int] = (state or {}).get("in") or {}
        changes = [self._change(m, "exit", cause, at_ms) for m in sorted(set(before) - set(now))]
        changes += [self._change(m, "enter", cause, at_ms) for m in now if m not in before]
        held = {m: before.get(m, at_ms) for m in now}
        return Evaluation({"in": held, "at": at_ms, "due": self.next_change(tag_state, at_ms)}, changes)

    def leave_all(self, state: Mapping[str, Any] | None, at_ms: int, cause: str = "merged") -> Evaluation:
        """Every membership ends (the person merged into another one_id)."""
        before = (state or {}).get("in") or {}
        changes = [self._change(m, "exit", cause, at_ms) for m in sorted(before)]
        return Evaluation({"in": {}, "at": at_ms, "due": None}, changes)

    @staticmethod
    def next_due(state: Mapping[str, Any] | None) -> int | None:
        return state.get("due") if state else None

    @staticmethod
    def _change(name: str, change: str, cause: str, at_ms: int) -> Change:
        audience, sub_key = split_membership(name)
        return Change(name, audience, sub_key, change, cause, at_ms)


def _holds(condition: Evaluator, context: Mapping[str, Any]) -> bool:
    try:
        return bool(condition(context))
    except rule_engine.errors.EvaluationError:
        return False  # e.g. a sub-key the reading does not have: the condition does not hold


# -- validation ------------------------------------------------------------------------------------


def _tag_type(spec: TagSpec) -> Any:
    """The rule-engine type of a tag's reading (as rule conditions are checked)."""
    if spec.kind in ("count", "sum"):
        return DataType.FLOAT
    if spec.kind in WINDOW_KINDS:
        return DataType.MAPPING(DataType.STRING, DataType.FLOAT) if spec.by else DataType.FLOAT
    if spec.kind == "set":
        return DataType.ARRAY(DataType.UNDEFINED)
    return DataType.UNDEFINED  # min, max, latest (null until the first value), derived


def audience_problems(audiences: Mapping[str, AudienceSpec], tags: Mapping[str, TagSpec]) -> list[str]:
    """Every problem of the audience declarations, each as `audiences.<name>.<field>: reason`.

    A condition naming nothing would read null and never hold, silently; one whose time of change
    cannot be known (`idle_days` other than compared with a number) would miss its exits."""
    problems: list[str] = []
    types = {name: _tag_type(spec) for name, spec in tags.items()}
    types[IDLE] = DataType.FLOAT
    for name, spec in audiences.items():
        where = f"audiences.{name}"
        names = dict(types)
        if spec.by is not None:
            by = tags.get(spec.by)
            if by is None:
                problems.append(f"{where}.by: unknown tag {spec.by!r} ({_hint(spec.by, tags)})")
            elif by.kind not in WINDOW_KINDS or not by.by:
                problems.append(
                    f"{where}.by: {spec.by!r} is a {by.kind} tag without sub-keys; `by` names a "
                    "window_count or window_sum tag with `by` (one membership per sub-key)"
                )
            if KEY in tags:
                problems.append(f"{where}.by: a tag named 'key' would be hidden by the sub-key `key`")
            names[KEY] = DataType.STRING
        checked = check_expression(spec.condition, names)
        for symbol in checked.unknown:
            if symbol == KEY:
                problems.append(f"{where}.if: `key` is the sub-key of an audience with `by`; this has none")
            else:
                problems.append(f"{where}.if: unknown tag {symbol!r} ({_hint(symbol, [*tags, IDLE])})")
        problems += [f"{where}.if: {error}" for error in checked.errors]
        if checked.rule is None or checked.unknown:
            continue
        for expression in _time_expressions(checked.rule, tags):
            for reason in _idle_thresholds(expression)[1]:
                problems.append(f"{where}.if: {reason}")
    return problems


def _hint(name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
    return (f"did you mean {close[0]!r}? " if close else "") + f"known: {', '.join(known)}"


def _derived(name: str, tags: Mapping[str, TagSpec]) -> rule_engine.Rule | None:
    """A derived tag's compiled expression (None for another tag, or one that does not compile:
    its own problem, reported under `tags:`)."""
    spec = tags.get(name)
    if spec is None or spec.kind != "derived" or not spec.expr:
        return None
    try:
        return compile_expression(spec.expr)
    except rule_engine.errors.EngineError:
        return None


def _reads(rule: rule_engine.Rule, tags: Mapping[str, TagSpec]) -> set[str]:
    """The tags a condition reads, directly or through derived tags."""
    seen: set[str] = set()
    todo = list(symbols(rule))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            derived = _derived(name, tags)
            todo += symbols(derived) if derived is not None else ()
    return seen


TimeExpression = tuple[str, rule_engine.Rule]


def _time_expressions(rule: rule_engine.Rule, tags: Mapping[str, TagSpec]) -> list[TimeExpression]:
    """(where, expression) of the condition and of each derived tag it reads (they read idle_days)."""
    found = [("the condition", rule)]
    for name in sorted(_reads(rule, tags)):
        derived = _derived(name, tags)
        if derived is not None:
            found.append((f"derived tag {name!r}", derived))
    return found


def _idle_thresholds(expression: TimeExpression) -> tuple[list[float], list[str]]:
    """The numbers `idle_days` is compared with, and why a use of it is refused."""
    where, rule = expression
    thresholds: list[float] = []
    problems: list[str] = []

    def refuse() -> None:
        reason = (
            f"{where} uses idle_days other than compared (<, <=, >, >=) with a number, "
            "so when it lapses cannot be known"
        )
        if reason not in problems:
            problems.append(reason)

    def is_idle(node: Any) -> bool:
        return isinstance(node, re_ast.SymbolExpression) and node.scope is None and node.name == IDLE

    def walk(node: Any) -> None:
        if isinstance(node, re_ast.ArithmeticComparisonExpression):
            sides = (node.left, node.right)
            if any(is_idle(side) for side in sides):
                other = node.right if is_idle(node.left) else node.left
                if isinstance(other, re_ast.FloatExpression) and other.value.is_finite():
                    thresholds.append(float(other.value))
                else:
                    refuse()
                for side in sides:
                    if not is_idle(side):
                        walk(side)
                return
        if is_idle(node):
            refuse()
            return
        for child in _children(node):
            walk(child)

    walk(rule.statement.expression)
    return thresholds, problems


__all__ = ["AudienceEngine", "AudienceError", "Change", "Evaluation", "audience_problems", "membership"]
