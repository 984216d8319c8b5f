"""Every name a trigger rule reads, checked at load against what will exist when it runs.

At run time a condition naming nothing reads null and never holds, and a message placeholder naming
nothing prints `?`: neither says a word. So `stream-app validate` and a starting worker refuse them
here, each with its place in the file, e.g.::

    topology.yaml: rules.browse_interest.if: unknown tag 'views_24hh' (did you mean 'views_24h'? ...)

Properties are the input contract's: a condition or placeholder may read the properties declared in
`schemas/touchpoint.v1.json` (declare a brand's own there), so a typo cannot pass as a property.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import rule_engine
from rule_engine import DataType

from stream_app.config.topology import IDENTIFIER_TYPES, TagSpec, Topology
from stream_app.expressions import check_expression, literal_paths
from stream_app.ingest.schema import touchpoint_validator
from stream_app.rules.engine import AUDIENCE_FIELDS, CONDITION_NAMES, TRIGGER_FIELDS


def rule_problems(topology: Topology) -> list[str]:
    """Every name a rule reads, checked against what will exist when it runs.

    At run time a condition naming nothing reads null and never holds, and a message placeholder
    naming nothing prints `?`: neither says a word, so they are refused here, each with its place.
    """
    try:
        names = _Names.of(topology)
    except OSError as exc:
        return [f"{exc.filename}: cannot read the event schema rules are checked against: {exc.strerror}"]
    problems = [
        f"tags.{tag}: the name is taken: {why}" for tag, why in _TAKEN.items() if tag in topology.tags
    ]
    types = {**names.tag_types, **dict.fromkeys(CONDITION_NAMES, rule_engine.DataType.UNDEFINED)}
    types.update(
        before=rule_engine.DataType.MAPPING(rule_engine.DataType.STRING),
        event=rule_engine.DataType.MAPPING(rule_engine.DataType.STRING),
        properties=rule_engine.DataType.MAPPING(rule_engine.DataType.STRING),
        gap_days=rule_engine.DataType.FLOAT,
    )
    for name, rule in topology.rules.items():
        if rule.condition:
            where = f"rules.{name}.if"
            checked = check_expression(rule.condition, types)
            problems += [f"{where}: {names.unknown_root(symbol)}" for symbol in checked.unknown]
            problems += [f"{where}: {error}{_type_hint(error)}" for error in checked.errors]
            if checked.rule is not None:
                for root, keys in literal_paths(checked.rule):
                    reason = names.unknown_key(root, keys)
                    if reason:
                        problems.append(f"{where}: {root}{''.join(f'[{k!r}]' for k in keys)}: {reason}")
        if rule.when.audience_triggered:
            problems += _audience_trigger_problems(name, topology)
        elif rule.limit.by:
            reason = names.unknown_kept_field(rule.limit.by)
            if reason:
                problems.append(f"rules.{name}.limit.by: {reason}")
        if rule.guide_alert is not None:
            where = f"rules.{name}.guide_alert.message"
            named = names.for_audience_changes() if rule.when.audience_triggered else names
            problems += [f"{where}: {reason}" for reason in named.message_problems(rule.guide_alert.message)]
            unknown = sorted(set(rule.guide_alert.snapshot) - set(topology.tags))
            if unknown:
                problems.append(f"rules.{name}.guide_alert.snapshot: unknown tag(s) {unknown}")
    return problems


_MEMBERSHIP = re.compile(r"^(?P<audience>[^\[\]]+)(\[(?P<sub_key>[^\[\]]+)\])?$")

_AUDIENCE_LIMIT_BY = ("sub_key", "audience")
"""What `limit.by` of a rule triggered by audience changes may name: the change's own fields (an
expiry or a merge has no event to read one from)."""


def _audience_trigger_problems(name: str, topology: Topology) -> list[str]:
    """A rule triggered by audience changes names declared audiences (a sub-key only of one with
    `by`), and reads nothing only an event has: an expiry or a merge has none."""
    rule = topology.rules[name]
    problems = []
    for field in ("audience_enter", "audience_exit"):
        for wanted in getattr(rule.when, field) or ():
            where = f"rules.{name}.when.{field}"
            match = _MEMBERSHIP.match(wanted)
            audience = topology.audiences.get(match["audience"]) if match else None
            if match is None:
                problems.append(f"{where}: {wanted!r} is not an audience or `audience[sub_key]`")
            elif audience is None:
                known = ", ".join(sorted(topology.audiences)) or "none declared"
                hint = _did_you_mean(match["audience"], topology.audiences)
                problems.append(f"{where}: unknown audience {match['audience']!r} ({hint}known: {known})")
            elif match["sub_key"] is not None and audience.by is None:
                problems.append(
                    f"{where}: {wanted!r}: audience {match['audience']!r} has no sub-keys (no `by`); "
                    "name the audience alone"
                )
    if rule.absent is not None:
        problems.append(
            f"rules.{name}.absent: absence windows open on events; a rule triggered by audience "
            "changes takes none"
        )
    if rule.coupon is not None and rule.coupon.channel is None:
        problems.append(
            f"rules.{name}.coupon.channel: a rule triggered by audience changes names its channel "
            "(an expiry or a merge has no event to take it from)"
        )
    if rule.limit.by and rule.limit.by not in _AUDIENCE_LIMIT_BY:
        problems.append(
            f"rules.{name}.limit.by: {rule.limit.by!r}: a rule triggered by audience changes is "
            f"limited by {' or '.join(_AUDIENCE_LIMIT_BY)} (an expiry or a merge has no event field)"
        )
    return problems


_TAKEN = {
    "before": "rule conditions read `before` as the tags before the event",
    "event": "rule conditions read `event` as the triggering event",
    "properties": "rule conditions read `properties` as the event's properties",
    "gap_days": "rule conditions read `gap_days` as the days since the previous event",
    "idle_days": "derived tags read `idle_days` as the days since the last event",
}
"""Names the tag and rule engines give themselves: a tag of that name would be hidden."""

_NOT_IN_MESSAGES = {
    "gap_days": "only rule conditions read it",
    "idle_days": "only derived tags read it",
    "before": "only rule conditions read it",
    "event": "only rule conditions read it; name the field itself, e.g. {store_id}",
    "identities": "an alert keeps no identifiers",
    "one_id": "an alert keeps no one_id",
}

_IDLE_DAYS_IN_A_RULE = (
    "unknown tag 'idle_days': only derived tags read it (rules read gap_days, days since the last event)"
)

_ADDED_EVENT_FIELDS = ("event_time_ms", "ingested_at_ms", "arrived_at_ms", "one_id")
"""Event fields the pipeline adds to the input contract's (ingest/pipeline.py, identity/records.py);
every event has them, and `properties` (`{}` when the input has none)."""


@dataclass(frozen=True)
class _Names:
    """What exists for a rule: tags (with rule-engine types), event fields, declared properties."""

    tags: Mapping[str, TagSpec]
    tag_types: Mapping[str, Any]
    event_fields: tuple[str, ...]
    always_there: frozenset[str]  # event fields every event has
    properties: Mapping[str, str]  # name -> JSON Schema type ("" when the schema gives none)
    trigger_fields: tuple[str, ...] = TRIGGER_FIELDS  # what an action keeps of its trigger

    @classmethod
    def of(cls, topology: Topology) -> _Names:
        schema = touchpoint_validator().schema
        declared = schema["properties"]["properties"].get("properties", {})
        return cls(
            topology.tags,
            {name: _tag_type(spec) for name, spec in topology.tags.items()},
            tuple(sorted({*schema["properties"], *_ADDED_EVENT_FIELDS})),
            frozenset({*schema["required"], *_ADDED_EVENT_FIELDS, "properties"}),
            {name: str(prop.get("type", "")) for name, prop in sorted(declared.items())},
        )

    def for_audience_changes(self) -> _Names:
        """The names of a rule triggered by audience changes: the change's fields as well, and of
        the event's only what an expiry or a merge also has (`audience_trigger`)."""
        kept = {"event_id", "event_time_ms", "occurred_at", "properties", *AUDIENCE_FIELDS} - {"sub_key"}
        return dataclasses.replace(
            self, always_there=frozenset(kept), trigger_fields=(*TRIGGER_FIELDS, *AUDIENCE_FIELDS)
        )

    def _known_roots(self) -> str:
        tags = ", ".join(sorted(self.tags))
        return f"known: {tags}; and before[...], event[...], properties[...], gap_days"

    def _known_properties(self) -> str:
        return f"declared in schemas/touchpoint.v1.json: {', '.join(self.properties)}"

    def unknown_root(self, name: str) -> str:
        if name == "idle_days":
            return _IDLE_DAYS_IN_A_RULE
        hint = _did_you_mean(name, [*self.tags, *CONDITION_NAMES])
        return f"unknown tag {name!r} ({hint}{self._known_roots()})"

    def unknown_key(self, root: str, keys: tuple[str, ...]) -> str | None:
        """Why `root[keys...]` in a condition reads nothing, or None if it may read something."""
        if root == "before" and keys[0] not in self.tags:
            known = ", ".join(sorted(self.tags))
            return f"unknown tag {keys[0]!r} ({_did_you_mean(keys[0], self.tags)}known: {known})"
        if root == "event":
            if keys[0] not in self.event_fields:
                hint, known = _did_you_mean(keys[0], self.event_fields), ", ".join(self.event_fields)
                return f"unknown event field {keys[0]!r} ({hint}known: {known})"
            if keys[0] == "identities" and len(keys) > 1 and keys[1] not in IDENTIFIER_TYPES:
                return f"unknown identifier type {keys[1]!r} (known: {', '.join(IDENTIFIER_TYPES)})"
            if keys[0] == "properties" and len(keys) > 1:
                return self.unknown_key("properties", keys[1:])
        if root == "properties" and keys[0] not in self.properties:
            hint = _did_you_mean(keys[0], self.properties)
            return f"unknown property {keys[0]!r} ({hint}{self._known_properties()})"
        return None

    def unknown_kept_field(self, path: str) -> str | None:
        """Why `limit.by: path` would read nothing of the triggering event, or None."""
        first, _, rest = path.partition(".")
        if first == "properties" and rest:
            if "." in rest or rest not in self.properties:
                hint = _did_you_mean(rest, self.properties)
                return f"unknown property {rest!r} ({hint}{self._known_properties()})"
            return None
        if first not in TRIGGER_FIELDS or rest or first == "properties":
            kept = ", ".join(f for f in TRIGGER_FIELDS if f != "properties")
            return f"{path!r} is not a field an action keeps (known: {kept}, properties.<name>)"
        return None

    def message_problems(self, message: str) -> list[str]:
        """Each placeholder of a guide alert message that would not be filled when it is sent."""
        try:
            parsed = list(string.Formatter().parse(message))
        except ValueError as exc:
            return [f"bad template: {exc}"]
        found = (
            self._placeholder(field, spec or "", conv) for _, field, spec, conv in parsed if field is not None
        )
        return [problem for problem in found if problem]

    def _placeholder(self, field: str, spec: str, conversion: str | None) -> str | None:
        shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if field == "" or field.isdigit():
            return f"placeholder {shown!r}: positional placeholders are not filled; name a tag or event field"
        if "[" in field or "." in field:
            return f"placeholder {shown!r}: only plain names are filled (a missing key would raise)"
        if conversion not in (None, "r", "s", "a"):
            return f"placeholder {shown!r}: unknown conversion '!{conversion}' (known: !r, !s, !a)"
        samples = self._samples(field)
        if samples is None:
            if field in _NOT_IN_MESSAGES:
                why = _NOT_IN_MESSAGES[field]
                return f"placeholder {shown!r} is not filled in messages (it prints '?'): {why}"
            known = sorted({*self.tags, *self.trigger_fields, *self.properties} - {"properties"})
            return f"unknown placeholder {shown!r} ({_did_you_mean(field, known)}known: {', '.join(known)})"
        if "{" in spec:
            return f"placeholder {shown!r}: nested placeholders in a format spec are not filled"
        for value, when in samples:
            try:
                format(_convert(value, conversion), spec)
            except (ValueError, TypeError) as exc:
                return f"{shown!r} fails for {value!r} ({when}): {exc}"
        return None

    def _samples(self, name: str) -> list[tuple[Any, str]] | None:
        """Values `name` can have when a message is filled, as `message_values` layers them.

        None: nothing fills it (it prints `?`); [] for a derived tag, whose type is its expression's.
        """
        samples: list[tuple[Any, str]] | None = None
        spec = self.tags.get(name)
        if spec is not None:
            samples = [(value, "a person without the tag") for value in _tag_samples(spec)]
        missing = samples if samples is not None else [("?", "an event without it")]
        if name in self.trigger_fields:
            typical: Any = 0 if name.endswith("_ms") else {} if name == "properties" else "x"
            samples = [(typical, "a typical event"), *([] if name in self.always_there else missing)]
        if name == "sub_key" and name in self.trigger_fields:
            samples = [("x", "an audience with `by`"), (None, "an audience without `by`")]
        if name in self.properties:
            typical = 0.0 if self.properties[name] in ("number", "integer") else "x"
            samples = [(typical, "a typical event"), *missing]
        return samples


def _type_hint(error: str) -> str:
    if "data type mismatch" not in error:
        return ""
    return " (counts, sums and windows are numbers, windows with `by` mappings of them, sets arrays)"


def _tag_type(spec: TagSpec) -> Any:
    """The rule-engine type of a tag's reading (`Kind.read`); undefined where it depends on data."""
    if spec.kind in ("count", "sum"):
        return DataType.FLOAT
    if spec.kind in ("window_count", "window_sum"):
        return DataType.MAPPING(DataType.STRING, DataType.FLOAT) if spec.by else DataType.FLOAT
    if spec.kind == "set":
        return DataType.ARRAY(DataType.UNDEFINED)
    return DataType.UNDEFINED  # min, max, latest (null until the first value), derived


def _tag_samples(spec: TagSpec) -> list[Any]:
    """What a tag reads for a person without it: what a message format spec must survive."""
    if spec.kind in ("count", "window_count") and not spec.by:
        return [0]
    if spec.kind in ("sum", "window_sum") and not spec.by:
        return [0.0, 0]
    if spec.kind in ("window_count", "window_sum"):
        return [{}]
    if spec.kind == "set":
        return [[]]
    if spec.kind in ("min", "max", "latest"):
        return [None]
    return []  # derived: its type is its expression's; nothing to try a format spec on


def _convert(value: Any, conversion: str | None) -> Any:
    if conversion is None:
        return value
    return repr(value) if conversion == "r" else ascii(value) if conversion == "a" else str(value)


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.7)  # a typo, not any name
    return f"did you mean {close[0]!r}? " if close else ""
