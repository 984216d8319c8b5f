"""Identity state behind one small interface, over any mappings: dicts, rocksdict, Faust tables.

owners    identifier key -> one_id owning it
profiles  one_id -> Profile (live profiles only)
aliases   merged one_id -> the one_id that absorbed it
refusals  identifier key -> {"count": n, "one_ids": [first 50], "sketch": [...]}: links it tried
          that were refused, and a bounded sketch of how many distinct people (one_ids) they involved
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Protocol, TypeVar

import orjson

from stream_app.identity.model import Profile

_MAX_REFUSED_IDS = 50
"""one_ids kept per refused identifier, to show; counting them is the sketch's job."""
SKETCH_SIZE = 256
"""Hashes kept per refused identifier: the count of people is exact up to this many, and beyond it an
estimate within a few per cent (standard error about 1/sqrt(254)); 256 numbers, whatever the hub's size."""
_HASH_BITS = 52  # exact as a JSON number in any consumer
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
        self._refusals[key] = add_refusal(self._refusals.get(key), one_ids)

    def refusals(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self._refusals.items()

    def profiles(self) -> Iterator[Profile]:
        yield from self._profiles.values()


def _people_hash(one_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(one_id.encode(), digest_size=8).digest()) >> (64 - _HASH_BITS)


def add_refusal(entry: dict[str, Any] | None, one_ids: list[str]) -> dict[str, Any]:
    """A refused identifier's entry with one more refused link between `one_ids`.

    The distinct people are counted with a bottom-k sketch (the `SKETCH_SIZE` smallest hashes of the
    one_ids seen), not a list of them all: a fake phone on 10,000 members would otherwise grow one
    state value by every member and rewrite it on every refusal. Entries from before the sketch
    start one from the one_ids they kept.

    >>> entry = add_refusal(add_refusal(None, ["p_a", "p_b"]), ["p_a", "p_c"])
    >>> entry["count"], people_count(entry)
    (2, (3, False))
    """
    entry = dict(entry or {"count": 0, "one_ids": []})
    known = set(entry["one_ids"])
    entry["count"] += 1
    entry["one_ids"] = (
        entry["one_ids"] + [i for i in one_ids if i not in known][: max(0, _MAX_REFUSED_IDS - len(known))]
    )
    sketch = set(entry.get("sketch") or map(_people_hash, known))
    sketch.update(map(_people_hash, one_ids))
    entry["sketch"] = sorted(sketch)[:SKETCH_SIZE]
    return entry


def people_count(entry: dict[str, Any]) -> tuple[int, bool]:
    """(distinct people a refused identifier tried to link, whether that number is an estimate)."""
    sketch = entry.get("sketch")
    if sketch is None:  # an entry from before the sketch: its one_ids, which stopped at 50
        return len(entry["one_ids"]), len(entry["one_ids"]) >= _MAX_REFUSED_IDS
    if len(sketch) < SKETCH_SIZE:
        return len(sketch), False
    return round((SKETCH_SIZE - 1) * 2**_HASH_BITS / (sketch[-1] + 1)), True


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
