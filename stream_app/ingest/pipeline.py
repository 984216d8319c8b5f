"""One raw input message in, one decision out: an accepted, normalised event or a rejection.

The accepted event is what every later stage sees (the `normalized` internal topic):

    {"event_id", "event_type", "occurred_at", "event_time_ms", "channel",
     "identities": {type: normalised value, phone/email hashed},
     "store_id"?, "guide_id"?, "properties": {... free text with PII redacted}, "ingested_at_ms"}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream_app.config.topology import IDENTIFIER_TYPES, Topology
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
INTERNAL_ERROR = "internal_error"
REJECTION_REASONS = (
    TOO_LARGE,
    NOT_UTF8,
    INVALID_JSON,
    SCHEMA_VIOLATION,
    NO_USABLE_IDENTIFIER,
    INTERNAL_ERROR,
)


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

    >>> ingestor = Ingestor(IdentifierRules(), PiiHasher(b"key"))
    >>> ingestor.process(b'{"event_id": "e1"}').reason
    'schema_violation'
    """

    def __init__(self, rules: IdentifierRules, hasher: PiiHasher, max_event_bytes: int = 65536):
        self.rules = rules
        self.hasher = hasher
        self.max_event_bytes = max_event_bytes

    @classmethod
    def from_topology(cls, topology: Topology, hasher: PiiHasher) -> Ingestor:
        ids = topology.identifiers
        rules = IdentifierRules.build(ids.default_phone_region, ids.junk_values, ids.deny_list)
        return cls(rules, hasher, topology.ingest.max_event_bytes)

    def process(self, raw: bytes | None, now_ms: int = 0) -> Accepted | Rejected:
        """Never raises: a bug met by one odd message costs that message (to the DLQ), not the worker."""
        try:
            return self._process(raw, now_ms)
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
        problems = schema_problems(document)
        if problems:
            return Rejected(SCHEMA_VIOLATION, "; ".join(problems))
        return self._normalise(document, now_ms)

    def _normalise(self, doc: dict[str, Any], now_ms: int) -> Accepted | Rejected:
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
        event_time = parse_event_time(doc["occurred_at"])
        event: dict[str, Any] = {
            "event_id": doc["event_id"],
            "event_type": doc["event_type"],
            "occurred_at": doc["occurred_at"],
            "event_time_ms": int(event_time.timestamp() * 1000),
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
        """Free-form properties may hold a phone or an email anywhere: hash them in place."""
        if isinstance(value, str):
            return self.hasher.redact_text(value)
        if isinstance(value, dict):
            return {key: self._redact(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._redact(item) for item in value]
        return value

    def dlq_record(
        self, raw: bytes | None, rejected: Rejected, source: dict[str, Any], now_ms: int
    ) -> dict[str, Any]:
        """The DLQ record for a rejected message.

        `original` is the message as text with phones and emails hashed (PII never reaches an
        output topic); the exact bytes stay at `source` (topic, partition, offset) for replay.
        """
        data = raw or b""
        truncated = len(data) > self.max_event_bytes
        text = data[: self.max_event_bytes].decode("utf-8", "backslashreplace")
        return {
            "reason": rejected.reason,
            "detail": self.hasher.redact_text(rejected.detail),
            "source": source,
            "original": self.hasher.redact_text(text),
            "original_truncated": truncated,
            "original_bytes": len(data),
            "rejected_at_ms": now_ms,
        }
