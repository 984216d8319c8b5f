"""The words of identity resolution: identifier keys, profiles and the rules that protect merges."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stream_app.config.topology import IDENTIFIER_TYPES

PRIORITY = {id_type: rank for rank, id_type in enumerate(IDENTIFIER_TYPES)}
"""Identifier type -> rank; 0 is the highest priority (member_id)."""


def identifier_key(id_type: str, value: str) -> str:
    """The state key of one identifier.

    >>> identifier_key("member_id", "M1")
    'member_id:M1'
    """
    return f"{id_type}:{value}"


def split_key(key: str) -> tuple[str, str]:
    id_type, _, value = key.partition(":")
    return id_type, value


def sort_key(key: str) -> tuple[int, str]:
    """Priority order of identifier keys: by type priority, then by value (deterministic)."""
    id_type, value = split_key(key)
    return PRIORITY.get(id_type, len(PRIORITY)), value


def new_one_id(anchor_key: str) -> str:
    """The one_id of a profile created by `anchor_key`: stable, opaque, the same on every worker.

    An identifier creates at most one profile (once owned, it stays owned, by the survivor of any
    merge), so one_ids never collide.

    >>> new_one_id("member_id:M1")
    'p_f780405af58de0c8'
    """
    return "p_" + hashlib.sha256(anchor_key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class IdentityRules:
    """Merge protection: per-profile limits and the identifier types that can be shared."""

    limits: Mapping[str, int] = field(
        default_factory=lambda: {"member_id": 1, "unionid": 1, "phone": 3, "email": 3, "device_id": 20}
    )
    shareable_types: frozenset[str] = frozenset({"device_id"})
    """Types one thing can carry for several people (a family tablet). A link made only through
    them never joins two profiles that both hold a non-shareable identifier."""

    @classmethod
    def unlimited(cls) -> IdentityRules:
        """No protection at all: identity is plain connected components (for tests)."""
        return cls(limits={}, shareable_types=frozenset())


@dataclass
class Profile:
    """One person: the identifiers that resolve to them, by type, and when they were first seen."""

    one_id: str
    created_ms: int
    ids: dict[str, list[str]] = field(default_factory=dict)
    links: list[list[Any]] = field(default_factory=list)
    """Evidence: [event_id, event_time_ms, [identifier keys]] of each event that added identifiers
    or merged profiles, enough to rebuild the identity graph with networkx."""
    merged: list[str] = field(default_factory=list)
    """The one_ids merged into this person, directly or along a chain (at most one per identifier
    held: each merged profile brought at least one). The person stage applies an event only once it
    has taken in each one's state, so a replay cannot be counted in two fragments."""

    def identifier_keys(self) -> Iterable[str]:
        for id_type, values in self.ids.items():
            for value in values:
                yield identifier_key(id_type, value)

    def count(self, id_type: str) -> int:
        return len(self.ids.get(id_type, ()))

    def size(self) -> int:
        return sum(len(values) for values in self.ids.values())

    def holds_non_shareable(self, shareable: frozenset[str]) -> bool:
        return any(values and id_type not in shareable for id_type, values in self.ids.items())

    def add(self, key: str) -> None:
        id_type, value = split_key(key)
        self.ids.setdefault(id_type, []).append(value)

    def older_than(self, other: Profile) -> bool:
        """Survivor rule: the profile first seen (event time, then one_id) is the older."""
        return (self.created_ms, self.one_id) < (other.created_ms, other.one_id)

    def to_dict(self) -> dict[str, Any]:
        data = {"one_id": self.one_id, "created_ms": self.created_ms, "ids": self.ids, "links": self.links}
        if self.merged:
            data["merged"] = self.merged
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        return cls(
            data["one_id"],
            data["created_ms"],
            dict(data["ids"]),
            list(data.get("links", [])),
            list(data.get("merged", [])),  # (absent from profiles written before it was kept)
        )
