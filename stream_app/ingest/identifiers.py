"""Identifier normalisation: one spelling per real identifier, and junk that never links anyone.

Phone numbers become E.164 (`13800138000`, `+86 138-0013-8000` and `0086 13800138000` are one phone),
emails are trimmed and lower-cased, and placeholder values (`null`, `0`, a phone of one repeated
digit, deny-listed values) are dropped: a junk identifier shared by thousands of events would
otherwise merge thousands of people into one. So is a value holding a control character (NUL, ESC,
DEL, C1; surrounding whitespace is trimmed first): it is a broken producer's buffer, not an id, and
stripping the character instead could link it to a real one.

Phone parsing (libphonenumber) is the dearest step of ingest, and the same shoppers come back within
minutes, so `normalize_phone` keeps its last `PHONE_CACHE_SIZE` answers (an LRU, per process).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import phonenumbers

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE_CHARS = re.compile(r"^[+0-9()\s.-]{5,32}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

PHONE_CACHE_SIZE = 32_768
"""Bound of the phone cache, in entries (raw spelling and region to E.164 or None): ~9 MB when full
(~275 bytes an entry with its key, measured with tracemalloc). The entries are raw phone numbers,
so personal data, but only in this process's memory: never written to state, a topic, a log or a
metric, and gone when the process exits."""


@dataclass(frozen=True)
class IdentifierRules:
    """What counts as a usable identifier; built once from `topology.yaml`."""

    default_phone_region: str = "CN"
    junk_values: frozenset[str] = frozenset({"", "0", "null", "undefined", "unknown", "none"})
    deny_list: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        default_phone_region: str,
        junk_values: Iterable[str],
        deny_list: Mapping[str, Iterable[str]],
    ) -> IdentifierRules:
        """Deny-listed values are normalised like the identifiers they are compared with."""
        rules = cls(default_phone_region, frozenset(v.strip().lower() for v in junk_values))
        normalised: dict[str, frozenset[str]] = {}
        for id_type, values in deny_list.items():
            kept = {_normalise(id_type, value, rules) for value in values}
            normalised[id_type] = frozenset(v for v in kept if v is not None)
        return cls(rules.default_phone_region, rules.junk_values, normalised)


def normalize_phone(raw: str, region: str) -> str | None:
    """E.164 form of a valid phone number, or None.

    >>> normalize_phone("0086 138-0013-8000", "CN")
    '+8613800138000'
    """
    if not _PHONE_CHARS.match(raw):
        return None  # before the cache: only what may be a phone (at most 32 characters) is kept
    return _parse_phone(raw, region)


@lru_cache(maxsize=PHONE_CACHE_SIZE)
def _parse_phone(raw: str, region: str) -> str | None:
    digits = re.sub(r"\D", "", raw)
    if len(set(digits)) <= 1:  # 00000000000, 11111111111: placeholders, not phones
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    national = str(number.national_number)
    if len(set(national)) <= 1:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _normalise(id_type: str, raw: str, rules: IdentifierRules) -> str | None:
    value = raw.strip()
    if value.lower() in rules.junk_values or _CONTROL.search(value):
        return None
    if id_type == "phone":
        return normalize_phone(value, rules.default_phone_region)
    if id_type == "email":
        value = value.lower()
        return value if _EMAIL.match(value) else None
    return value


def normalize_identifier(id_type: str, raw: str, rules: IdentifierRules) -> str | None:
    """The canonical value of one identifier, or None when it must not link anyone.

    >>> normalize_identifier("email", "  Ann@Example.COM ", IdentifierRules())
    'ann@example.com'
    >>> normalize_identifier("openid", "null", IdentifierRules()) is None
    True
    """
    value = _normalise(id_type, raw, rules)
    if value is None or value in rules.deny_list.get(id_type, ()):
        return None
    return value
