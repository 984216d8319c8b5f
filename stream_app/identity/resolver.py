"""Incremental identity resolution with merge protection.

For one event, its identifiers fall into groups: each profile that already owns some of them, and
each identifier seen for the first time on its own. The groups are joined in priority order of
their best identifier on the event (member_id first), starting from the group of the event's
highest-priority identifier. A group joins unless the union would break a per-profile limit (two
member ids, a fourth phone) or the only evidence linking it is a shareable identifier (a family
tablet) while both sides already hold a non-shareable one. The event belongs to the joined group;
refused groups are reported as conflicts. When several profiles join, the oldest survives.

With no limits and no shareable types this is exactly connected components of the identifiers
seen together on events (union-find), whatever the order of events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from stream_app.identity.model import IdentityRules, Profile, new_one_id, sort_key, split_key
from stream_app.identity.store import IdentityStore


@dataclass(frozen=True)
class Merge:
    one_id: str
    """The survivor (older profile)."""
    merged_one_id: str
    via: tuple[str, ...]
    """Identifier keys on the event through which the merged profile was reached."""
    event_id: str
    event_time_ms: int


@dataclass(frozen=True)
class Conflict:
    reason: str
    """`limit:<type>` or `shared_identifier`."""
    one_id: str
    """The profile the event was attributed to."""
    refused: tuple[str, ...]
    """Identifier keys of the event that were not linked."""
    other_one_id: str | None
    """The profile the refused identifiers belong to (None: they were new)."""
    event_id: str
    event_time_ms: int


@dataclass(frozen=True)
class Resolution:
    one_id: str
    created: bool = False
    added: tuple[str, ...] = ()
    merges: tuple[Merge, ...] = ()
    conflicts: tuple[Conflict, ...] = ()

    @property
    def changed(self) -> bool:
        return self.created or bool(self.added) or bool(self.merges)


@dataclass
class _Group:
    """Identifiers of the event that already resolve together (a profile), or one new identifier."""

    event_keys: list[str]
    profile: Profile | None = None
    rebuilt: bool = False
    """The profile was missing and is rebuilt from this event (`IdentityResolver._profile_of`)."""

    def count(self, id_type: str) -> int:
        if self.profile is not None:
            return self.profile.count(id_type)
        return sum(1 for k in self.event_keys if split_key(k)[0] == id_type)

    def holds_non_shareable(self, shareable: frozenset[str]) -> bool:
        if self.profile is not None:
            return self.profile.holds_non_shareable(shareable)
        return any(split_key(k)[0] not in shareable for k in self.event_keys)


@dataclass
class _Joined:
    groups: list[_Group] = field(default_factory=list)
    event_keys: list[str] = field(default_factory=list)
    non_shareable: bool = False

    def take(self, group: _Group, shareable: frozenset[str]) -> None:
        self.groups.append(group)
        self.event_keys += group.event_keys
        self.non_shareable = self.non_shareable or group.holds_non_shareable(shareable)

    def count(self, id_type: str) -> int:
        return sum(group.count(id_type) for group in self.groups)


def known_owner(owner: Callable[[str], str | None], keys: list[str]) -> str | None:
    """The one_id when every identifier is known and all resolve to it, else None.

    The common case, and a decision that needs no linking: the resolver answers it before any
    sorting, and workers answer it from their replica of the identifier map.

    >>> known_owner({"a": "p1", "b": "p1"}.get, ["a", "b"]), known_owner({"a": "p1"}.get, ["a", "b"])
    ('p1', None)
    """
    first = owner(keys[0]) if keys else None
    if first is None:
        return None
    for key in keys[1:]:
        if owner(key) != first:
            return None
    return first


class IdentityResolver:
    """Resolves events' identifiers to one_ids against an `IdentityStore`.

    >>> from stream_app.identity.store import MappingIdentityStore
    >>> resolver = IdentityResolver(MappingIdentityStore(), IdentityRules())
    >>> first = resolver.resolve(["member_id:M1", "device_id:D1"], "e1", 1000)
    >>> resolver.resolve(["device_id:D1"], "e2", 2000).one_id == first.one_id
    True
    """

    def __init__(self, store: IdentityStore, rules: IdentityRules | None = None):
        self.store = store
        self.rules = rules or IdentityRules()

    def lookup(self, key: str) -> str | None:
        """The one_id an identifier resolves to now, if any."""
        return self.store.owner(key)

    def fragments(self, one_id: str) -> list[str]:
        """The one_ids merged into `one_id` so far (what its person stage must have taken in)."""
        profile = self.store.profile(one_id)
        return profile.merged if profile is not None else []

    def resolve(self, keys: Iterable[str], event_id: str, event_time_ms: int) -> Resolution:
        keys = keys if isinstance(keys, list) else list(keys)
        owner = self.store.owner
        known = known_owner(owner, keys)
        if known is not None:
            return Resolution(known)
        ordered = sorted(set(keys), key=sort_key)
        if not ordered:
            raise ValueError("an event needs at least one identifier")
        return self._link(ordered, [owner(k) for k in ordered], event_id, event_time_ms)

    def _groups(self, ordered: list[str], owners: list[str | None], event_time_ms: int) -> list[_Group]:
        groups: list[_Group] = []
        by_owner: dict[str, _Group] = {}
        for key, owner in zip(ordered, owners, strict=True):
            if owner is None:
                groups.append(_Group([key]))
                continue
            group = by_owner.get(owner)
            if group is None:
                profile, rebuilt = self._profile_of(owner, event_time_ms)
                group = by_owner.get(profile.one_id)  # (a stale owner and its survivor: one group)
                if group is None:
                    group = by_owner[profile.one_id] = _Group([], profile, rebuilt)
                    groups.append(group)
                by_owner[owner] = group
            group.event_keys.append(key)
            if group.rebuilt:
                group.profile.add(key)  # type: ignore[union-attr]
        return groups  # already in priority order of each group's best identifier

    def _profile_of(self, owner: str, event_time_ms: int) -> tuple[Profile, bool]:
        """The owner's profile, and whether it had to be rebuilt.

        An owner without a profile is a commit of which a crash landed only part (the tables'
        changelogs land apart; `tests/unit/identity/test_partial_state.py`). Events were
        published under that one_id, so it stays the person's: followed through a merge if it
        was merged, else rebuilt under the same one_id from what this event shows of it. (Minting
        a new one_id, or handing its identifiers to another person without a merge, split the
        person in a chaos run.)"""
        profile = self.store.profile(owner)
        if profile is not None:
            return profile, False
        current = self.store.current(owner)
        profile = self.store.profile(current) if current != owner else None
        if profile is not None:
            return profile, False
        return Profile(owner, event_time_ms), True

    def _link(
        self, ordered: list[str], owners: list[str | None], event_id: str, event_time_ms: int
    ) -> Resolution:
        shareable = self.rules.shareable_types
        groups = self._groups(ordered, owners, event_time_ms)
        joined = _Joined()
        joined.take(groups[0], shareable)
        refused: list[tuple[_Group, str]] = []
        for group in groups[1:]:
            reason = self._refusal(joined, group)
            if reason is None:
                joined.take(group, shareable)
            else:
                refused.append((group, reason))

        profiles = [g.profile for g in joined.groups if g.profile is not None]
        created = not profiles
        if created:
            survivor = Profile(new_one_id(joined.event_keys[0]), event_time_ms)
        else:
            survivor = min(profiles, key=lambda p: (p.created_ms, p.one_id))
        merges = []
        for group in joined.groups:
            if group.profile is not None and group.profile is not survivor:
                merges.append(self._absorb(survivor, group, event_id, event_time_ms))
        added = tuple(k for g in joined.groups if g.profile is None for k in g.event_keys)
        for key in added:
            survivor.add(key)
            self.store.set_owner(key, survivor.one_id)
        rebuilt = any(g.rebuilt for g in joined.groups if g.profile is survivor)
        if created or added or merges or rebuilt:
            survivor.links.append([event_id, event_time_ms, sorted(joined.event_keys, key=sort_key)])
            self.store.put_profile(survivor)

        conflicts = []
        for group, reason in refused:
            other = group.profile.one_id if group.profile is not None else None
            conflicts.append(
                Conflict(reason, survivor.one_id, tuple(group.event_keys), other, event_id, event_time_ms)
            )
            for key in group.event_keys:
                self.store.record_refusal(key, [survivor.one_id, *([other] if other else [])])
        return Resolution(survivor.one_id, created, added, tuple(merges), tuple(conflicts))

    def _refusal(self, joined: _Joined, group: _Group) -> str | None:
        shareable = self.rules.shareable_types
        if shareable and joined.non_shareable and group.holds_non_shareable(shareable):
            only_shared = all(split_key(k)[0] in shareable for k in group.event_keys) or all(
                split_key(k)[0] in shareable for k in joined.event_keys
            )
            if only_shared:
                return "shared_identifier"
        for id_type, limit in self.rules.limits.items():
            if group.count(id_type) and joined.count(id_type) + group.count(id_type) > limit:
                return f"limit:{id_type}"
        return None

    def _absorb(self, survivor: Profile, group: _Group, event_id: str, event_time_ms: int) -> Merge:
        merged = group.profile
        assert merged is not None
        for key in merged.identifier_keys():
            self.store.set_owner(key, survivor.one_id)
        for id_type, values in merged.ids.items():
            survivor.ids.setdefault(id_type, []).extend(values)
        survivor.links.extend(merged.links)
        survivor.merged.extend([*merged.merged, merged.one_id])
        self.store.delete_profile(merged.one_id)
        self.store.set_alias(merged.one_id, survivor.one_id)
        return Merge(survivor.one_id, merged.one_id, tuple(group.event_keys), event_id, event_time_ms)
