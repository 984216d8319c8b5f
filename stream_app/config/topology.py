"""The topology file (`topology.yaml`) as frozen, typed models, validated once at load.

A bad file fails with the file, the place inside it and the reason, e.g.::

    topology.yaml: topics.touchpoints.partitions: Input should be greater than or equal to 1
"""

from __future__ import annotations

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
"""Identifier types in priority order, highest first (docs/contracts.md, docs/architecture.md "One-ID")."""

TopicName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicSpec(_Frozen):
    name: TopicName
    partitions: Annotated[int, Field(ge=1, le=10_000)]
    config: dict[str, str] = Field(default_factory=dict)
    """Kafka topic configs set when stream_app creates the topic (an existing topic is left as is)."""


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
    conversions: TopicSpec = TopicSpec(name="conversions", partitions=8)
    audience_changes: TopicSpec
    audience_members: TopicSpec

    @field_validator("audience_members")
    @classmethod
    def _members_compacted(cls, value: TopicSpec) -> TopicSpec:
        """Compacted: each key (audience, one_id) holds its latest membership, a tombstone on exit,
        so a consumer reading from the beginning materialises who is in now."""
        policy = value.config.get("cleanup.policy", "compact")
        if policy != "compact":
            raise ValueError(f"cleanup.policy must be compact (not {policy!r}): members are a table")
        return value.model_copy(update={"config": {**value.config, "cleanup.policy": policy}})


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

    @field_validator("identity_map")
    @classmethod
    def _compacted(cls, value: TopicSpec) -> TopicSpec:
        """Compacted, and only that: each identifier's latest owner must outlive any retention, since
        a worker's replica may have to rebuild from the topic's beginning."""
        policy = value.config.get("cleanup.policy", "compact")
        if policy != "compact":
            raise ValueError(
                f"cleanup.policy must be compact (not {policy!r}): retention would drop old owners"
            )
        return value.model_copy(update={"config": {**value.config, "cleanup.policy": policy}})


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


class Effect(_Frozen):
    """How a rule's effect is measured (docs/architecture.md "Campaign effect")."""

    window: Annotated[str, Field(pattern=_DURATION)] = "7d"
    """Attribution window: an order of the person this long (event time) after the action converts."""
    holdout: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    """Share of eligible people held out (no action; `actions-suppressed`, reason `holdout`)."""


class RuleWhen(When):
    """What triggers a rule: an event (`event_type`, `channel`; every event when both are
    omitted), or a person entering or leaving an audience (`audience_enter`, `audience_exit`: an
    audience of `audiences:`, or one membership of an audience with `by`, `category_interest[bags]`;
    checked against the declarations in `config/rule_names.py`)."""

    audience_enter: tuple[str, ...] | None = None
    audience_exit: tuple[str, ...] | None = None

    @field_validator("audience_enter", "audience_exit", mode="before")
    @classmethod
    def _audiences(cls, value: Any) -> Any:
        value = (value,) if isinstance(value, str) else value
        if value is not None and len(value) == 0:
            raise ValueError("name at least one audience")
        return value

    @model_validator(mode="after")
    def _one_kind_of_trigger(self) -> RuleWhen:
        if self.audience_triggered and (self.event_type is not None or self.channel is not None):
            raise ValueError(
                "a rule is triggered by events (`event_type`, `channel`) or by audience changes "
                "(`audience_enter`, `audience_exit`), not both"
            )
        return self

    @property
    def audience_triggered(self) -> bool:
        return self.audience_enter is not None or self.audience_exit is not None


class RuleSpec(_Frozen):
    when: RuleWhen
    condition: str | None = Field(None, alias="if", description="rule-engine expression")
    absent: Absence | None = None
    coupon: CouponAction | None = None
    guide_alert: GuideAlertAction | None = None
    limit: Limit
    stale_after: Annotated[str, Field(pattern=_DURATION)] = "10m"
    """A trigger that arrives this far behind event time (late, past the allowed lateness) is
    stale: not acted on, recorded as suppressed with reason `late`. Absence rules: see `late`."""
    effect: Effect = Effect()

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_action(self) -> RuleSpec:
        if (self.coupon is None) == (self.guide_alert is None):
            raise ValueError("a rule has exactly one action: `coupon` or `guide_alert`")
        if self.absent is not None and "stale_after" in self.model_fields_set:
            raise ValueError(
                "`stale_after` is for rules an event triggers; a late absence is `late` by its window"
            )
        return self


class AudienceSpec(_Frozen):
    """One audience: who holds `if` (over tags and `idle_days`) now; with `by`, one membership per
    sub-key of that windowed tag (`key` in the condition), at most `max_keys` of them a person."""

    description: str = ""
    condition: str = Field(alias="if", description="rule-engine expression over tags")
    by: str | None = Field(None, description="A window tag with `by`, e.g. views_24h")
    max_keys: Annotated[int, Field(ge=1, le=1000)] = 32

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Ingest(_Frozen):
    """Bounds on what one input message may be; beyond them it goes to the DLQ with the reason."""

    max_event_bytes: Annotated[int, Field(ge=256, le=16 * 1024 * 1024)] = 65536
    max_future: Annotated[str, Field(pattern=_DURATION)] = "5m"
    """How far past the wall clock an event time may be: one event dated 9999 per input partition
    would otherwise move every watermark to the end of time. Allows for producers' clock skew."""
    max_properties_depth: Annotated[int, Field(ge=1, le=64)] = 8
    """Nesting levels in `properties`, the object itself being level 1."""
    max_properties_values: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    """JSON values (containers and scalars) inside `properties`."""


class Topology(_Frozen):
    version: int = Field(1, ge=1, le=1)
    topics: Topics
    internal_topics: InternalTopics
    replication_factor: Annotated[int, Field(ge=1, le=32)] = 1
    identifiers: Identifiers = Identifiers()
    identity: Identity = Identity()
    dedupe: Dedupe = Dedupe()
    ingest: Ingest = Ingest()
    allowed_lateness: Annotated[str, Field(pattern=_DURATION_OR_ZERO)] = "250ms"
    """How far out of order events may arrive within one input partition and still be applied in
    event-time order; also about how long each event waits for that (the latency it adds)."""
    tags: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], TagSpec] = Field(default_factory=dict)
    stores: dict[str, Store] = Field(default_factory=dict)
    contact_policy: ContactPolicy = ContactPolicy()
    rules: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], RuleSpec] = Field(default_factory=dict)
    audiences: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], AudienceSpec] = Field(
        default_factory=dict
    )

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
            # The person stage sends merged people's state between its own partitions: rounds of
            # markers on the same topic settle those, as many as the longest chain of hand-ons
            # needs (the runner sends them; see LocalRun.finish_input).
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
    from stream_app.config.rule_names import rule_problems
    from stream_app.tags.engine import TagEngine, TagError  # the tag compiler checks expressions

    problems: list[str] = []
    try:
        TagEngine.from_specs(topology.tags)
    except TagError as exc:
        problems += exc.problems
    problems += rule_problems(topology)  # every problem at once, tags' and rules' alike
    from stream_app.audiences.engine import audience_problems

    problems += audience_problems(topology.audiences, topology.tags)
    names = [spec.name for spec in topology.all_topics()]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        problems.append(f"topics: topic name(s) used twice: {duplicated}")
    if problems:
        raise TopologyError([f"{source}: {problem}" for problem in problems])
    return topology


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
