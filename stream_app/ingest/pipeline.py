"""One raw input message in, one decision out: an accepted, normalised event or a rejection.

The accepted event is what every later stage sees (the `normalized` internal topic):

    {"event_id", "event_type", "occurred_at", "event_time_ms", "channel",
     "identities": {type: normalised value, phone/email hashed},
     "store_id"?, "guide_id"?, "properties": {... free text with PII redacted}, "ingested_at_ms"}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from stream_app.config.topology import IDENTIFIER_TYPES, Topology, duration_ms
from stream_app.contracts import DLQ
from stream_app.ingest.document import duplicate_key, shape_problem
from stream_app.ingest.identifiers import IdentifierRules, normalize_identifier
from stream_app.ingest.pii import PiiHasher
from stream_app.ingest.schema import parse_event_time, schema_problems

log = logging.getLogger(__name__)

# DLQ reasons: a closed set, so they can be metric labels.
TOO_LARGE = "too_large"
NOT_UTF8 = "not_utf8"
INVALID_JSON = "invalid_json"
SCHEMA_VIOLATION = "schema_violation"
NO_USABLE_IDENTIFIER = "no_usable_identifier"
FUTURE_EVENT_TIME = "future_event_time"
INTERNAL_ERROR = "internal_error"
REJECTION_REASONS = (
    TOO_LARGE,
    NOT_UTF8,
    INVALID_JSON,
    SCHEMA_VIOLATION,
    NO_USABLE_IDENTIFIER,
    FUTURE_EVENT_TIME,
    INTERNAL_ERROR,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
_LATEST = datetime(9999, 12, 30, tzinfo=UTC)
EARLIEST_EVENT_TIME_MS = (_EARLIEST - _EPOCH) // _ONE_MS
LATEST_EVENT_TIME_MS = (_LATEST - _EPOCH) // _ONE_MS
"""Event times a later stage can turn back into a datetime in any time zone (a day inside the range
of `datetime`: `fromtimestamp(ms / 1000, UTC).astimezone(zone)` overflows at its very ends)."""


@dataclass(frozen=True)
class Accepted:
    event: dict[str, Any]
    dropped_identifiers: tuple[str, ...] = field(default=())
    """Types of identifiers that were present but junk (counted, never linked)."""

    @property
    def event_id(self) -> str:
        return str(self.event["event_id"])


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str


class Ingestor:
    """Validates and normalises raw touchpoint messages.

    Hostile input is refused with a reason, in this order (cheap checks first, and nothing that
    recurses before the depth is known): size (`too_large`), UTF-8 (`not_utf8`), JSON (`invalid_json`:
    also NaN, Infinity, numbers beyond a double), depth and size of the document (`schema_violation`:
    `properties` at most `max_properties_depth` levels and `max_properties_values` values, no other
    field nested), duplicate keys in one object (`invalid_json`), the JSON Schema (`schema_violation`:
    e.g. `properties.amount` in [0, 1e12], so sums stay finite), the event time (`future_event_time`
    beyond `now_ms + max_future`; far past is accepted), usable identifiers (`no_usable_identifier`;
    an identifier holding a control character such as NUL is junk, dropped and counted like `null`).

    >>> ingestor = Ingestor(IdentifierRules(), PiiHasher(b"key"))
    >>> ingestor.process(b'{"event_id": "e1"}').reason
    'schema_violation'
    """

    def __init__(
        self,
        rules: IdentifierRules,
        hasher: PiiHasher,
        max_event_bytes: int = 65536,
        max_future: str = "5m",
        max_properties_depth: int = 8,
        max_properties_values: int = 1000,
    ):
        self.rules = rules
        self.hasher = hasher
        self.max_event_bytes = max_event_bytes
        self.max_future = max_future
        self.max_future_ms = duration_ms(max_future)
        self.max_properties_depth = max_properties_depth
        self.max_properties_values = max_properties_values

    @classmethod
    def from_topology(cls, topology: Topology, hasher: PiiHasher) -> Ingestor:
        ids, ingest = topology.identifiers, topology.ingest
        rules = IdentifierRules.build(ids.default_phone_region, ids.junk_values, ids.deny_list)
        return cls(
            rules,
            hasher,
            ingest.max_event_bytes,
            ingest.max_future,
            ingest.max_properties_depth,
            ingest.max_properties_values,
        )

    def process(
        self, raw: bytes | None, now_ms: int = 0, arrived_at_ms: int | None = None
    ) -> Accepted | Rejected:
        """Never raises: a bug met by one odd message costs that message (to the DLQ), not the worker.

        `now_ms` is the wall clock (the worker passes it). `now_ms <= 0` means there is none (tools
        and tests replaying a file of past days): then only the calendar bounds apply to event time,
        not `max_future`. `arrived_at_ms`: the input record's timestamp, kept on the event (where
        an action's latency starts).
        """
        try:
            accepted = self._process(raw, now_ms)
            if arrived_at_ms is not None and isinstance(accepted, Accepted):
                accepted.event["arrived_at_ms"] = arrived_at_ms
            return accepted
        except Exception as exc:  # noqa: BLE001 - the DLQ keeps the message and the reason
            log.exception("ingest failed on one message")
            return Rejected(INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")

    def _process(self, raw: bytes | None, now_ms: int) -> Accepted | Rejected:
        if raw is None:
            return Rejected(INVALID_JSON, "empty message (null value)")
        if len(raw) > self.max_event_bytes:
            return Rejected(TOO_LARGE, f"{len(raw)} bytes > max_event_bytes {self.max_event_bytes}")
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejected(NOT_UTF8, f"not UTF-8 at byte {exc.start}")
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return Rejected(INVALID_JSON, str(exc))
        problem = shape_problem(raw, document, self.max_properties_depth, self.max_properties_values)
        if problem:
            return Rejected(SCHEMA_VIOLATION, problem)
        repeated = duplicate_key(raw, document)
        if repeated is not None:
            return Rejected(INVALID_JSON, f"duplicate key {repeated[:64]!r} in one object")
        problems = schema_problems(document)
        if problems:
            return Rejected(SCHEMA_VIOLATION, "; ".join(problems))
        return self._normalise(document, now_ms)

    def _event_time_ms(self, occurred_at: str, now_ms: int) -> int | Rejected:
        """Exact integer ms (float seconds * 1000 can be a ms short far from 1970), within bounds."""
        ms = (parse_event_time(occurred_at) - _EPOCH) // _ONE_MS
        if now_ms > 0 and ms > now_ms + self.max_future_ms:
            ahead = (ms - now_ms) / 1000
            return Rejected(
                FUTURE_EVENT_TIME,
                f"event time is {ahead:.3f} s ahead of the wall clock (max_future {self.max_future})",
            )
        if ms > LATEST_EVENT_TIME_MS:
            return Rejected(FUTURE_EVENT_TIME, f"event time is after {_LATEST:%Y-%m-%d}, the latest handled")
        if ms < EARLIEST_EVENT_TIME_MS:
            return Rejected(
                SCHEMA_VIOLATION, f"occurred_at: before {_EARLIEST:%Y-%m-%d}, the earliest handled"
            )
        return ms

    def _normalise(self, doc: dict[str, Any], now_ms: int) -> Accepted | Rejected:
        event_time_ms = self._event_time_ms(doc["occurred_at"], now_ms)
        if isinstance(event_time_ms, Rejected):
            return event_time_ms
        identities: dict[str, str] = {}
        dropped: list[str] = []
        for id_type in IDENTIFIER_TYPES:  # priority order, so the output order is stable
            raw_value = doc["identities"].get(id_type)
            if raw_value is None:
                continue
            value = normalize_identifier(id_type, raw_value, self.rules)
            if value is None:
                dropped.append(id_type)
            else:
                identities[id_type] = self.hasher.protect(id_type, value)
        if not identities:
            return Rejected(
                NO_USABLE_IDENTIFIER,
                f"every identifier is junk or deny-listed: {', '.join(dropped)}",
            )
        event: dict[str, Any] = {
            "event_id": doc["event_id"],
            "event_type": doc["event_type"],
            "occurred_at": doc["occurred_at"],
            "event_time_ms": event_time_ms,
            "channel": doc["channel"],
            "identities": identities,
        }
        for optional in ("store_id", "guide_id"):
            if optional in doc:
                event[optional] = doc[optional]
        event["properties"] = self._redact(doc.get("properties", {}))
        event["ingested_at_ms"] = now_ms
        return Accepted(event, tuple(dropped))

    def _redact(self, value: Any) -> Any:
        """Free-form properties may hold a phone or an email anywhere: hash them in place.

        Recursive, safely: `shape_problem` has bounded the depth before."""
        if isinstance(value, str):
            return self.hasher.redact_text(value)
        if isinstance(value, dict):
            redact_text = self.hasher.redact_text
            out = {}
            for key, item in value.items():
                kind = type(item)
                if kind is str:
                    out[key] = redact_text(item)
                elif kind is int or kind is float or kind is bool or item is None:
                    out[key] = item  # (most values: kept without a call)
                else:
                    out[key] = self._redact(item)
            return out
        if isinstance(value, list):
            return [self._redact(item) for item in value]
        return value

    def dlq_record(
        self, raw: bytes | None, rejected: Rejected, source: dict[str, Any], now_ms: int
    ) -> dict[str, Any]:
        """The DLQ record for a rejected message (contract `touchpoints-dlq`, docs/contracts.md).

        `original` is the message as text with phones and emails hashed (PII never reaches an
        output topic); the exact bytes stay at `source` (topic, partition, offset) for replay.
        """
        data = raw or b""
        truncated = len(data) > self.max_event_bytes
        text = data[: self.max_event_bytes].decode("utf-8", "backslashreplace")
        return {
            "schema_version": DLQ.version,
            "reason": rejected.reason,
            "detail": self.hasher.redact_text(rejected.detail),
            "source": source,
            "original": self.hasher.redact_text(text),
            "original_truncated": truncated,
            "original_bytes": len(data),
            "rejected_at_ms": now_ms,
        }
