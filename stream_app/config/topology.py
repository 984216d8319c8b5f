"""The topology file (`topology.yaml`) as frozen, typed models, validated once at load.

A bad file fails with the file, the place inside it and the reason, e.g.::

    topology.yaml: topics.touchpoints.partitions: Input should be greater than or equal to 1
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

IDENTIFIER_TYPES: tuple[str, ...] = (
    "member_id",
    "phone",
    "email",
    "unionid",
    "wecom_external_userid",
    "openid",
    "order_no",
    "device_id",
)
"""Identifier types in priority order, highest first (PRODUCT.md, One-ID)."""

TopicName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicSpec(_Frozen):
    name: TopicName
    partitions: Annotated[int, Field(ge=1, le=10_000)]


class Topics(_Frozen):
    touchpoints: TopicSpec
    dlq: TopicSpec
    resolved: TopicSpec
    identity_merges: TopicSpec
    identity_conflicts: TopicSpec
    profile_updates: TopicSpec
    coupons: TopicSpec
    guide_alerts: TopicSpec
    actions_suppressed: TopicSpec


class InternalTopics(_Frozen):
    events_by_id: TopicSpec
    linker: TopicSpec
    identity_map: TopicSpec
    person_events: TopicSpec
    control: TopicSpec

    @field_validator("linker")
    @classmethod
    def _single_writer(cls, value: TopicSpec) -> TopicSpec:
        if value.partitions != 1:
            raise ValueError("the identity linker is a single writer: partitions must be 1")
        return value


class Identifiers(_Frozen):
    default_phone_region: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "CN"
    junk_values: tuple[str, ...] = ("", "0", "null", "undefined", "unknown", "none")
    deny_list: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("deny_list")
    @classmethod
    def _known_types(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        _check_types(value)
        return value


class Identity(_Frozen):
    limits: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: {"member_id": 1, "unionid": 1, "phone": 3, "email": 3, "device_id": 20}
    )
    shareable_types: tuple[str, ...] = ("device_id",)

    @field_validator("limits")
    @classmethod
    def _limit_types(cls, value: dict[str, int]) -> dict[str, int]:
        _check_types(value)
        return value

    @field_validator("shareable_types")
    @classmethod
    def _shareable(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _check_types(value)
        return value


class Dedupe(_Frozen):
    retention: Annotated[str, Field(pattern=r"^[1-9][0-9]*(ms|s|m|h|d)$")] = "7d"
    """How long (event time) an event_id is remembered: a copy arriving later passes again."""


def _check_types(types: Any) -> None:
    unknown = sorted(set(types) - set(IDENTIFIER_TYPES))
    if unknown:
        raise ValueError(f"unknown identifier type(s) {unknown}; known: {', '.join(IDENTIFIER_TYPES)}")


_DURATION = r"^[1-9][0-9]*(ms|s|m|h|d)$"
_DURATION_OR_ZERO = r"^(0|[1-9][0-9]*)(ms|s|m|h|d)$"
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_ms(text: str) -> int:
    """`30d`, `24h`, `90m`, `5s`, `250ms` in milliseconds.

    >>> duration_ms("24h")
    86400000
    """
    unit = "ms" if text.endswith("ms") else text[-1]
    return int(text[: -len(unit)]) * _UNITS_MS[unit]


class When(_Frozen):
    """Which events update a tag (all of them when omitted)."""

    event_type: tuple[str, ...] | None = None
    channel: tuple[str, ...] | None = None

    @field_validator("event_type", "channel", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value


TagKindName = Literal["count", "sum", "min", "max", "latest", "set", "window_count", "window_sum", "derived"]


class TagSpec(_Frozen):
    """One tag: its kind, what it reads from an event, and (derived) its expression."""

    kind: TagKindName
    field: str | None = Field(None, description="Event field path, e.g. properties.amount")
    when: When = When()
    window: Annotated[str, Field(pattern=_DURATION)] | None = None
    bucket: Annotated[str, Field(pattern=_DURATION)] | None = None
    by: str | None = Field(None, description="Sub-key field path, e.g. properties.category")
    expr: str | None = Field(None, description="Derived tags: a rule-engine expression")

    @model_validator(mode="after")
    def _fits_kind(self) -> TagSpec:
        needs_field = {"sum", "min", "max", "latest", "set", "window_sum"}
        if self.kind in needs_field and not self.field:
            raise ValueError(f"a {self.kind} tag needs `field`")
        windowed = self.kind in ("window_count", "window_sum")
        if windowed and not self.window:
            raise ValueError(f"a {self.kind} tag needs `window` (e.g. 24h, 30d)")
        if not windowed and (self.window or self.bucket or self.by):
            raise ValueError("`window`, `bucket` and `by` are for window_count/window_sum tags")
        if (self.kind == "derived") != bool(self.expr):
            raise ValueError("`expr` is for derived tags, and derived tags need one")
        return self


_CLOCK = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class Store(_Frozen):
    duty_guide: str
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class Cap(_Frozen):
    max: Annotated[int, Field(ge=0)]
    per: Annotated[str, Field(pattern=_DURATION)]


class QuietHours(_Frozen):
    start: Annotated[str, Field(pattern=_CLOCK)] = "22:00"
    end: Annotated[str, Field(pattern=_CLOCK)] = "08:00"


class ContactPolicy(_Frozen):
    coupons: Cap = Cap(max=2, per="7d")
    channels: dict[str, Cap] = Field(default_factory=dict)
    quiet_hours: QuietHours = QuietHours()
    timezone: str = "Asia/Shanghai"


class Absence(_Frozen):
    """The rule fires when no such event of the same person follows within the window."""

    event_type: str
    within: Annotated[str, Field(pattern=_DURATION)]


class Limit(_Frozen):
    once: bool = False
    per: Annotated[str, Field(pattern=_DURATION)] | None = None
    by: str | None = Field(None, description="Event field path: one limit per value, e.g. store_id")

    @model_validator(mode="after")
    def _one_kind(self) -> Limit:
        if self.once == bool(self.per):
            raise ValueError("a limit is either `once: true` or `per: <duration>`")
        return self


class CouponAction(_Frozen):
    template: str
    channel: str | None = Field(None, description="Default: the triggering event's channel")


class GuideAlertAction(_Frozen):
    to: tuple[Literal["bound_guide", "duty_guide"], ...] = ("bound_guide",)
    message: str
    snapshot: tuple[str, ...] = ()
    """Tags copied into the alert for the guide."""


class RuleSpec(_Frozen):
    when: When
    condition: str | None = Field(None, alias="if", description="rule-engine expression")
    absent: Absence | None = None
    coupon: CouponAction | None = None
    guide_alert: GuideAlertAction | None = None
    limit: Limit

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_action(self) -> RuleSpec:
        if (self.coupon is None) == (self.guide_alert is None):
            raise ValueError("a rule has exactly one action: `coupon` or `guide_alert`")
        return self


class Ingest(_Frozen):
    max_event_bytes: Annotated[int, Field(ge=256, le=16 * 1024 * 1024)] = 65536


class Topology(_Frozen):
    version: int = Field(1, ge=1, le=1)
    topics: Topics
    internal_topics: InternalTopics
    replication_factor: Annotated[int, Field(ge=1, le=32)] = 1
    identifiers: Identifiers = Identifiers()
    identity: Identity = Identity()
    dedupe: Dedupe = Dedupe()
    ingest: Ingest = Ingest()
    allowed_lateness: Annotated[str, Field(pattern=_DURATION_OR_ZERO)] = "5m"
    """Also how long events wait to be applied in event-time order; `0s`: as they arrive."""
    tags: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], TagSpec] = Field(default_factory=dict)
    stores: dict[str, Store] = Field(default_factory=dict)
    contact_policy: ContactPolicy = ContactPolicy()
    rules: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], RuleSpec] = Field(default_factory=dict)

    def all_topics(self) -> list[TopicSpec]:
        """Every topic the topology reads or writes, inputs first."""
        return [*self.topics.__dict__.values(), *self.internal_topics.__dict__.values()]

    def stage_inputs(self) -> list[tuple[str, TopicSpec]]:
        """The worker's stages in order, each with the topic it reads; the last reports progress."""
        t, i = self.topics, self.internal_topics
        return [
            ("ingest", t.touchpoints),
            ("dedupe", i.events_by_id),
            ("link", i.linker),
            ("people", i.person_events),
            # The person stage sends merged people's state between its own partitions: a second
            # round of markers on the same topic settles those before a bounded run is done.
            ("people-settle", i.person_events),
        ]

    def output_topics(self) -> list[TopicSpec]:
        """The topics users subscribe to (everything but the input and the internal topics)."""
        return [spec for name, spec in self.topics.__dict__.items() if name != "touchpoints"]


class TopologyError(ValueError):
    """A topology file that cannot be used; `problems` holds one `file: path: reason` line each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_topology(data: Any, source: str = "<topology>") -> Topology:
    """Validate already-parsed YAML data; raise `TopologyError` naming `source`."""
    if not isinstance(data, dict):
        raise TopologyError([f"{source}: (top level): expected a mapping, got {type(data).__name__}"])
    try:
        topology = Topology.model_validate(data)
    except ValidationError as exc:
        raise TopologyError(
            [f"{source}: {_location(err['loc'])}: {err['msg']}" for err in exc.errors()]
        ) from None
    from stream_app.tags.engine import TagEngine, TagError  # the tag compiler checks expressions

    try:
        TagEngine.from_specs(topology.tags)
    except TagError as exc:
        raise TopologyError([f"{source}: {problem}" for problem in exc.problems]) from None
    problems = [f"{source}: {problem}" for problem in _rule_problems(topology)]
    if problems:
        raise TopologyError(problems)
    names = [spec.name for spec in topology.all_topics()]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise TopologyError([f"{source}: topics: topic name(s) used twice: {duplicated}"])
    return topology


def _rule_problems(topology: Topology) -> list[str]:
    """Every name a rule reads, checked against what will exist when it runs.

    At run time a condition naming nothing reads null and never holds, and a message placeholder
    naming nothing prints `?`: neither says a word, so they are refused here, each with its place.
    """
    import rule_engine

    from stream_app.expressions import check_expression, literal_paths
    from stream_app.rules.engine import CONDITION_NAMES

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
        if rule.limit.by:
            reason = names.unknown_kept_field(rule.limit.by)
            if reason:
                problems.append(f"rules.{name}.limit.by: {reason}")
        if rule.guide_alert is not None:
            where = f"rules.{name}.guide_alert.message"
            problems += [f"{where}: {reason}" for reason in names.message_problems(rule.guide_alert.message)]
            unknown = sorted(set(rule.guide_alert.snapshot) - set(topology.tags))
            if unknown:
                problems.append(f"rules.{name}.guide_alert.snapshot: unknown tag(s) {unknown}")
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

_ADDED_EVENT_FIELDS = ("event_time_ms", "ingested_at_ms", "one_id")
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

    @classmethod
    def of(cls, topology: Topology) -> _Names:
        from stream_app.ingest.schema import touchpoint_validator

        schema = touchpoint_validator().schema
        declared = schema["properties"]["properties"].get("properties", {})
        return cls(
            topology.tags,
            {name: _tag_type(spec) for name, spec in topology.tags.items()},
            tuple(sorted({*schema["properties"], *_ADDED_EVENT_FIELDS})),
            frozenset({*schema["required"], *_ADDED_EVENT_FIELDS, "properties"}),
            {name: str(prop.get("type", "")) for name, prop in sorted(declared.items())},
        )

    def _known_roots(self) -> str:
        tags = ", ".join(sorted(self.tags))
        return f"known: {tags}; and before[...], event[...], properties[...], gap_days"

    def _known_properties(self) -> str:
        return f"declared in schemas/touchpoint.v1.json: {', '.join(self.properties)}"

    def unknown_root(self, name: str) -> str:
        from stream_app.rules.engine import CONDITION_NAMES

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
        from stream_app.rules.engine import TRIGGER_FIELDS

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
        import string

        try:
            parsed = list(string.Formatter().parse(message))
        except ValueError as exc:
            return [f"bad template: {exc}"]
        found = (
            self._placeholder(field, spec or "", conv) for _, field, spec, conv in parsed if field is not None
        )
        return [problem for problem in found if problem]

    def _placeholder(self, field: str, spec: str, conversion: str | None) -> str | None:
        from stream_app.rules.engine import TRIGGER_FIELDS

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
            known = sorted({*self.tags, *TRIGGER_FIELDS, *self.properties} - {"properties"})
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
        from stream_app.rules.engine import TRIGGER_FIELDS

        """Values `name` can have when a message is filled, as `message_values` layers them.

        None: nothing fills it (it prints `?`); [] for a derived tag, whose type is its expression's.
        """
        samples: list[tuple[Any, str]] | None = None
        spec = self.tags.get(name)
        if spec is not None:
            samples = [(value, "a person without the tag") for value in _tag_samples(spec)]
        missing = samples if samples is not None else [("?", "an event without it")]
        if name in TRIGGER_FIELDS:
            typical: Any = 0 if name.endswith("_ms") else {} if name == "properties" else "x"
            samples = [(typical, "a typical event"), *([] if name in self.always_there else missing)]
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
    from rule_engine import DataType

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
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.7)  # a typo, not any name
    return f"did you mean {close[0]!r}? " if close else ""


def load_topology(path: str | Path) -> Topology:
    """Load and validate a topology file.

    >>> load_topology("topology.yaml").topics.touchpoints.partitions
    8
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(unknown place)"
        reason = getattr(exc, "problem", None) or str(exc)
        raise TopologyError([f"{path}: {where}: invalid YAML: {reason}"]) from None
    return parse_topology(data, source=str(path))
