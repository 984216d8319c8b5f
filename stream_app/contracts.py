"""The published contracts: one JSON Schema (draft 2020-12) per topic, shipped inside the package.

The files live in `stream_app/schemas/<name>.v<version>.json` (the repository's top-level
`schemas/` is a link to that folder, so there is one copy) and are found through
`importlib.resources`: an installed wheel finds its own contracts wherever it runs, whatever the
working directory. Every output record carries `schema_version`, its topic's contract version from
the constants below, set where the record is built (`identity/records.py`, `people/processor.py`,
`ingest/pipeline.py`). What may change within a version is in docs/contracts.md.

>>> COUPONS.file
'coupons.v1.json'
>>> schema(COUPONS)["properties"]["schema_version"]["const"] == COUPONS.version
True
>>> validator(DLQ).is_valid({"reason": "invalid_json"})
False
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

import orjson
from jsonschema import Draft202012Validator, FormatChecker

SCHEMA_DIR: Traversable = files("stream_app") / "schemas"


@dataclass(frozen=True)
class Contract:
    """One published schema: `name` is the file's stem (the default topic name of an output)."""

    name: str
    version: int

    @property
    def file(self) -> str:
        return f"{self.name}.v{self.version}.json"

    @property
    def path(self) -> Traversable:
        return SCHEMA_DIR / self.file


TOUCHPOINT = Contract("touchpoint", 1)
"""The input (`touchpoints`); producers send no `schema_version`: its version is the topic's."""

RESOLVED = Contract("touchpoints-resolved", 1)
DLQ = Contract("touchpoints-dlq", 1)
IDENTITY_MERGES = Contract("identity-merges", 1)
IDENTITY_CONFLICTS = Contract("identity-conflicts", 1)
PROFILE_UPDATES = Contract("profile-updates", 1)
COUPONS = Contract("coupons", 1)
GUIDE_ALERTS = Contract("guide-alerts", 1)
ACTIONS_SUPPRESSED = Contract("actions-suppressed", 1)
CONVERSIONS = Contract("conversions", 1)
AUDIENCE_CHANGES = Contract("audience-changes", 1)
AUDIENCE_MEMBERS = Contract("audience-members", 1)

OUTPUTS: dict[str, Contract] = {
    "dlq": DLQ,
    "resolved": RESOLVED,
    "identity_merges": IDENTITY_MERGES,
    "identity_conflicts": IDENTITY_CONFLICTS,
    "profile_updates": PROFILE_UPDATES,
    "coupons": COUPONS,
    "guide_alerts": GUIDE_ALERTS,
    "actions_suppressed": ACTIONS_SUPPRESSED,
    "conversions": CONVERSIONS,
    "audience_changes": AUDIENCE_CHANGES,
    "audience_members": AUDIENCE_MEMBERS,
}
"""Each output topic's contract, by its key under `topics:` in topology.yaml (names may change
there; the contract goes with the role)."""


def parse_event_time(value: str) -> datetime:
    """RFC 3339 timestamp with an offset as an aware datetime; ValueError otherwise.

    >>> parse_event_time("2026-11-22T10:00:00.123+08:00").utcoffset().total_seconds()
    28800.0
    """
    parsed = datetime.fromisoformat(value.upper())
    if parsed.tzinfo is None:
        raise ValueError("no UTC offset")
    return parsed


FORMATS = FormatChecker(formats=())
"""The one format the schemas assert, `date-time`, checked by the parser ingest turns event time
with (the reference's own checker needs an extra package and knows no other we use)."""


@FORMATS.checks("date-time", raises=ValueError)
def is_datetime(value: object) -> bool:
    return not isinstance(value, str) or bool(parse_event_time(value))


@cache
def schema(contract: Contract) -> dict[str, Any]:
    """The contract's schema document, read from the package once."""
    document: dict[str, Any] = orjson.loads(contract.path.read_bytes())
    return document


@cache
def validator(contract: Contract) -> Draft202012Validator:
    """The reference validator (`jsonschema`) of one contract, its schema checked first."""
    document = schema(contract)
    Draft202012Validator.check_schema(document)
    return Draft202012Validator(document, format_checker=FORMATS)
