"""The audience output records (`audience-changes`, `audience-members`), as the contracts say.

`change_key` names the cause of one change, so a replay or a restart re-sends the same key: the
person, the membership, enter or exit, the cause and its event time.

>>> change_key("p_0123456789abcdef", "high_value", "enter", "e1", 0)
'c_260999a9af53d27468df'
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from stream_app.audiences.engine import Change
from stream_app.contracts import AUDIENCE_CHANGES, AUDIENCE_MEMBERS

CAUSES = ("expired", "merged")
"""Causes that are not an event (otherwise `cause` is `event` and `event_id` names it)."""


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def change_key(one_id: str, membership: str, change: str, cause: str, at_ms: int) -> str:
    text = f"{one_id}|{membership}|{change}|{cause}|{at_ms}"
    return "c_" + hashlib.sha256(text.encode()).hexdigest()[:20]


def member_key(one_id: str, membership: str) -> str:
    """The compacted topic's message key: one per person and membership."""
    return f"{membership}:{one_id}"


def change_record(one_id: str, change: Change, event_time: str | None, wall_ms: int) -> dict[str, Any]:
    """`event_time`: the causing event's `occurred_at` as sent; else the change's moment (UTC)."""
    by_event = change.cause not in CAUSES
    return {
        "schema_version": AUDIENCE_CHANGES.version,
        "change_key": change_key(one_id, change.membership, change.change, change.cause, change.at_ms),
        "one_id": one_id,
        "audience": change.audience,
        "sub_key": change.sub_key,
        "change": change.change,
        "cause": "event" if by_event else change.cause,
        "event_id": change.cause if by_event else None,
        "event_time": event_time if by_event and event_time else iso(change.at_ms),
        "emitted_at": iso(wall_ms),
    }


def member_record(one_id: str, change: Change, record: dict[str, Any]) -> dict[str, Any]:
    """The current membership an enter starts (its `change_record` given), until a tombstone."""
    return {
        "schema_version": AUDIENCE_MEMBERS.version,
        "one_id": one_id,
        "audience": change.audience,
        "sub_key": change.sub_key,
        "since": record["event_time"],
        "change_key": record["change_key"],
        "emitted_at": record["emitted_at"],
    }
