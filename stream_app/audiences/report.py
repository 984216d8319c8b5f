"""What the audience topics say: current members (the compacted `audience-members` read to the
end), sizes, and enters and exits per hour of event time (`audience-changes`). Pure: the CLI
reads the topics and hands the records in, as (key, value) pairs in each partition's order.

>>> rows = [(b"high_value:p_1", b'{"audience": "high_value", "sub_key": null, "one_id": "p_1"}'),
...         (b"high_value:p_2", b'{"audience": "high_value", "sub_key": null, "one_id": "p_2"}'),
...         (b"high_value:p_1", None)]
>>> sizes(current_members(rows), ["high_value", "new_members"])
{'high_value': 1, 'new_members': 0}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC
from typing import Any

import orjson

Row = tuple[bytes | None, bytes | None]


def current_members(rows: Iterable[Row]) -> dict[str, dict[str, Any]]:
    """Key -> the latest member record, tombstoned keys dropped (what compaction keeps).

    A key's records are all in one partition, in order, so the last one read is the latest."""
    latest: dict[str, dict[str, Any] | None] = {}
    for key, value in rows:
        if key is not None:
            latest[key.decode()] = None if value is None else orjson.loads(value)
    return {key: record for key, record in latest.items() if record is not None}


def sizes(members: Mapping[str, Mapping[str, Any]], audiences: Iterable[str]) -> dict[str, int]:
    """Memberships per audience (an audience with sub-keys counts each person and sub-key)."""
    counts = dict.fromkeys(audiences, 0)
    for record in members.values():
        counts[record["audience"]] = counts.get(record["audience"], 0) + 1
    return counts


def by_hour(changes: Iterable[bytes | None]) -> dict[tuple[str, str], dict[str, int]]:
    """(hour of event time, UTC, as `YYYY-MM-DDTHH`, audience) -> enters and exits, counted once
    per `change_key` (delivery is at-least-once)."""
    from stream_app.contracts import parse_event_time

    seen: set[str] = set()
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for value in changes:
        if value is None:
            continue
        record = orjson.loads(value)
        if record["change_key"] in seen:
            continue
        seen.add(record["change_key"])
        when = parse_event_time(record["event_time"]).astimezone(UTC).strftime("%Y-%m-%dT%H")
        cell = counts.setdefault((when, record["audience"]), {"enter": 0, "exit": 0})
        cell[record["change"]] += 1
    return dict(sorted(counts.items()))


def export_rows(
    members: Mapping[str, Mapping[str, Any]],
    name: str,
    owners: Iterable[Row],
) -> list[dict[str, Any]]:
    """The members of `name` (an audience, or one membership such as `category_interest[bags]`),
    each with the person's *hashed* identifiers only (phones and emails, `h:`), from the
    identifier map (`stream-app-identity-map`: identifier key -> one_id, the latest per key)."""
    audience, _, rest = name.partition("[")
    sub_key = rest[:-1] if rest else None
    chosen = [
        record
        for record in members.values()
        if record["audience"] == audience and (sub_key is None or record["sub_key"] == sub_key)
    ]
    wanted = {record["one_id"] for record in chosen}
    owner_of: dict[str, str] = {}
    for key, value in owners:
        if key is not None and value is not None:
            owner_of[key.decode()] = value.decode()
    hashed: dict[str, list[str]] = {}
    for identifier, one_id in owner_of.items():
        if one_id in wanted and identifier.partition(":")[2].startswith("h:"):
            hashed.setdefault(one_id, []).append(identifier)
    return [
        {
            "audience": record["audience"],
            "sub_key": record["sub_key"],
            "one_id": record["one_id"],
            "since": record["since"],
            "identifiers": sorted(hashed.get(record["one_id"], [])),
        }
        for record in sorted(chosen, key=lambda r: (r["sub_key"] or "", r["one_id"]))
    ]
