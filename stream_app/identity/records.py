"""What the identity stage publishes, as plain dicts: the contracts `touchpoints-resolved`,
`identity-merges` and `identity-conflicts` (docs/contracts.md; schemas in `stream_app/schemas/`)."""

from __future__ import annotations

from typing import Any

from stream_app.contracts import IDENTITY_CONFLICTS, IDENTITY_MERGES, RESOLVED
from stream_app.identity.model import identifier_key, split_key
from stream_app.identity.resolver import Conflict, Merge

FRAGMENTS_PREFIX = "~merged:"
"""Identifier-map key of a survivor's merged one_ids (`~merged:<one_id>` -> JSON list): beside the
identifier keys (`type:value`, never starting with `~`), so workers' replicas know them too."""


def fragments_key(one_id: str) -> str:
    """Where the identifier map keeps the one_ids merged into `one_id` (`Profile.merged`)."""
    return FRAGMENTS_PREFIX + one_id


def event_keys(event: dict[str, Any]) -> list[str]:
    """Identifier keys of a normalised event, in priority order."""
    return [identifier_key(t, v) for t, v in event["identities"].items()]


def _identifiers(keys: tuple[str, ...] | list[str]) -> list[dict[str, str]]:
    # Values are as ingest left them: phones and emails are already keyed hashes.
    return [{"type": t, "value": v} for t, v in map(split_key, keys)]


def resolved(event: dict[str, Any], one_id: str) -> dict[str, Any]:
    """A normalised event with its person (the person stage reads the same record)."""
    return {**event, "one_id": one_id, "schema_version": RESOLVED.version}


def merge_record(merge: Merge, event: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": IDENTITY_MERGES.version,
        "one_id": merge.one_id,
        "merged_one_id": merge.merged_one_id,
        "via": _identifiers(merge.via),
        "event_id": merge.event_id,
        "event_time": event["occurred_at"],
        "event_time_ms": merge.event_time_ms,
    }


def conflict_record(conflict: Conflict, event: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": IDENTITY_CONFLICTS.version,
        "reason": conflict.reason,
        "one_id": conflict.one_id,
        "refused": _identifiers(conflict.refused),
        "other_one_id": conflict.other_one_id,
        "event_id": conflict.event_id,
        "event_time": event["occurred_at"],
        "event_time_ms": conflict.event_time_ms,
    }
