"""Identity state behind one small interface, over any mappings: dicts, rocksdict, Faust tables.

owners    identifier key -> one_id owning it
profiles  one_id -> Profile (live profiles only)
aliases   merged one_id -> the one_id that absorbed it
refusals  identifier key -> {"count": n, "one_ids": [...]}: links it tried that were refused
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Protocol, TypeVar

import orjson

from stream_app.identity.model import Profile

_MAX_REFUSED_IDS = 50
V = TypeVar("V")


class IdentityStore(Protocol):
    def owner(self, key: str) -> str | None: ...
    def set_owner(self, key: str, one_id: str) -> None: ...
    def profile(self, one_id: str) -> Profile | None: ...
    def put_profile(self, profile: Profile) -> None: ...
    def delete_profile(self, one_id: str) -> None: ...
    def set_alias(self, merged: str, survivor: str) -> None: ...
    def current(self, one_id: str) -> str:
        """The live one_id for `one_id`, following merges."""
        ...

    def record_refusal(self, key: str, one_ids: list[str]) -> None: ...
    def refusals(self) -> Iterator[tuple[str, dict[str, Any]]]: ...
    def profiles(self) -> Iterator[Profile]: ...


class MappingIdentityStore:
    """`IdentityStore` over four mutable mappings (values as the mapping holds them)."""

    def __init__(
        self,
        owners: MutableMapping[str, str] | None = None,
        profiles: MutableMapping[str, Profile] | None = None,
        aliases: MutableMapping[str, str] | None = None,
        refusals: MutableMapping[str, dict[str, Any]] | None = None,
    ):
        self._owners = owners if owners is not None else {}
        self._profiles = profiles if profiles is not None else {}
        self._aliases = aliases if aliases is not None else {}
        self._refusals = refusals if refusals is not None else {}
        # The hot path of every event: a bound `get`, without a Python frame of our own.
        self.owner: Callable[[str], str | None] = self._owners.get

    def set_owner(self, key: str, one_id: str) -> None:
        self._owners[key] = one_id

    def profile(self, one_id: str) -> Profile | None:
        return self._profiles.get(one_id)

    def put_profile(self, profile: Profile) -> None:
        self._profiles[profile.one_id] = profile

    def delete_profile(self, one_id: str) -> None:
        self._profiles.pop(one_id, None)

    def set_alias(self, merged: str, survivor: str) -> None:
        self._aliases[merged] = survivor

    def current(self, one_id: str) -> str:
        seen = 0
        while (nxt := self._aliases.get(one_id)) is not None and seen < 1000:
            one_id, seen = nxt, seen + 1
        return one_id

    def record_refusal(self, key: str, one_ids: list[str]) -> None:
        entry = dict(self._refusals.get(key) or {"count": 0, "one_ids": []})
        known = set(entry["one_ids"])
        entry["count"] += 1
        entry["one_ids"] = (
            entry["one_ids"] + [i for i in one_ids if i not in known][: max(0, _MAX_REFUSED_IDS - len(known))]
        )
        self._refusals[key] = entry

    def refusals(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self._refusals.items()

    def profiles(self) -> Iterator[Profile]:
        yield from self._profiles.values()


class EncodedMapping(MutableMapping[str, V]):
    """A typed view of a mapping that holds encoded values (bytes in rocksdict, JSON in Faust)."""

    def __init__(
        self,
        raw: MutableMapping[str, Any],
        encode: Callable[[V], Any],
        decode: Callable[[Any], V],
    ):
        self.raw, self._encode, self._decode = raw, encode, decode

    def __getitem__(self, key: str) -> V:
        return self._decode(self.raw[key])

    def get(self, key: str, default: Any = None) -> Any:
        value = self.raw.get(key)
        return default if value is None else self._decode(value)

    def __setitem__(self, key: str, value: V) -> None:
        self.raw[key] = self._encode(value)

    def __delitem__(self, key: str) -> None:
        del self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw.keys())

    def __len__(self) -> int:
        return len(self.raw)

    def items(self) -> Iterator[tuple[str, V]]:  # type: ignore[override]
        for key, value in self.raw.items():
            yield key, self._decode(value)

    def values(self) -> Iterator[V]:  # type: ignore[override]
        for value in self.raw.values():
            yield self._decode(value)


def _str(value: str) -> bytes:
    return value.encode()


def _unstr(data: bytes) -> str:
    return data.decode()


def encoded_store(
    owners: MutableMapping[str, bytes],
    profiles: MutableMapping[str, bytes],
    aliases: MutableMapping[str, bytes],
    refusals: MutableMapping[str, bytes],
) -> MappingIdentityStore:
    """A store over four str -> bytes mappings, profiles and refusals as JSON."""
    return MappingIdentityStore(
        EncodedMapping(owners, _str, _unstr),
        EncodedMapping(
            profiles, lambda p: orjson.dumps(p.to_dict()), lambda b: Profile.from_dict(orjson.loads(b))
        ),
        EncodedMapping(aliases, _str, _unstr),
        EncodedMapping(refusals, orjson.dumps, orjson.loads),
    )


def json_value_store(
    owners: MutableMapping[str, Any],
    profiles: MutableMapping[str, Any],
    aliases: MutableMapping[str, Any],
    refusals: MutableMapping[str, Any],
) -> MappingIdentityStore:
    """A store over mappings that keep JSON-able values (Faust tables with the JSON codec)."""
    return MappingIdentityStore(
        owners,
        EncodedMapping(profiles, Profile.to_dict, Profile.from_dict),
        aliases,
        refusals,
    )


_DELETED = object()


class BufferedIdentityStore:
    """Writes held back until `commit()`: the adapter sends an event's outputs (a merge record)
    before the state that makes a replay skip them, so a crash in between repeats, never loses."""

    def __init__(self, inner: MappingIdentityStore):
        self.inner = inner
        self._owners: dict[str, str] = {}
        self._profiles: dict[str, Any] = {}
        self._aliases: dict[str, str] = {}
        self._refusals: list[tuple[str, list[str]]] = []

    def owner(self, key: str) -> str | None:
        found = self._owners.get(key)
        return found if found is not None else self.inner.owner(key)

    def set_owner(self, key: str, one_id: str) -> None:
        self._owners[key] = one_id

    def profile(self, one_id: str) -> Profile | None:
        if one_id in self._profiles:
            found = self._profiles[one_id]
            return None if found is _DELETED else found
        return self.inner.profile(one_id)

    def put_profile(self, profile: Profile) -> None:
        self._profiles[profile.one_id] = profile

    def delete_profile(self, one_id: str) -> None:
        self._profiles[one_id] = _DELETED

    def set_alias(self, merged: str, survivor: str) -> None:
        self._aliases[merged] = survivor

    def current(self, one_id: str) -> str:
        while one_id in self._aliases:
            one_id = self._aliases[one_id]
        return self.inner.current(one_id)

    def record_refusal(self, key: str, one_ids: list[str]) -> None:
        self._refusals.append((key, one_ids))

    def refusals(self) -> Iterator[tuple[str, dict[str, Any]]]:
        return self.inner.refusals()

    def profiles(self) -> Iterator[Profile]:
        return self.inner.profiles()

    @property
    def pending(self) -> bool:
        return bool(self._owners or self._profiles or self._aliases or self._refusals)

    def commit(self) -> dict[str, str]:
        """Apply the held writes; returns the owner changes (identifier key -> one_id)."""
        owners = self._owners
        for key, one_id in owners.items():
            self.inner.set_owner(key, one_id)
        for one_id, profile in self._profiles.items():
            if profile is _DELETED:
                self.inner.delete_profile(one_id)
            else:
                self.inner.put_profile(profile)
        for merged, survivor in self._aliases.items():
            self.inner.set_alias(merged, survivor)
        for key, one_ids in self._refusals:
            self.inner.record_refusal(key, one_ids)
        self.rollback()
        return owners

    def rollback(self) -> None:
        self._owners, self._profiles, self._aliases, self._refusals = {}, {}, {}, []
