"""PII hashing: phone numbers and emails never leave ingest in the clear.

A keyed hash (HMAC-SHA256) keeps them joinable (the same phone always hashes the same) without
making them readable to anyone who sees a topic, a state store, a log line or a metric. The key
comes from `STREAM_APP_PII_KEY`; rotating it splits every hashed identity, so treat it like a
database master key.
"""

from __future__ import annotations

import hashlib
import hmac
import re

import phonenumbers

PII_TYPES = frozenset({"phone", "email"})
"""Identifier types that are personal data and are hashed."""

_EMAIL_IN_TEXT = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_MAYBE_PHONE = re.compile(r"\d[\d\s().-]{5,}\d")


class PiiHasher:
    """Keyed hashing of personal identifiers.

    >>> PiiHasher(b"k").hash("phone", "+8613800138000")
    'h:1c92d9dc547750b0c4dd76131e74abb8'
    """

    def __init__(self, key: bytes, phone_region: str = "CN"):
        self._key = key
        self._region = phone_region

    def hash(self, id_type: str, normalized_value: str) -> str:
        """`h:` + 128 bits of HMAC-SHA256 over the type and the normalised value."""
        digest = hmac.new(self._key, f"{id_type}:{normalized_value}".encode(), hashlib.sha256)
        return "h:" + digest.hexdigest()[:32]

    def protect(self, id_type: str, normalized_value: str) -> str:
        """The value to keep for an identifier: hashed when it is PII, as is otherwise."""
        return self.hash(id_type, normalized_value) if id_type in PII_TYPES else normalized_value

    def redact_text(self, text: str) -> str:
        """Free text with every email and valid phone number replaced by its hash.

        Used on anything that is not a declared identifier: property values, DLQ originals.
        """
        if "@" in text:
            text = _EMAIL_IN_TEXT.sub(lambda m: self.hash("email", m.group(0).lower()), text)
        if not _MAYBE_PHONE.search(text):
            return text
        pieces: list[str] = []
        end = 0
        for match in phonenumbers.PhoneNumberMatcher(
            text, self._region, leniency=phonenumbers.Leniency.VALID
        ):
            e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
            pieces += [text[end : match.start], self.hash("phone", e164)]
            end = match.end
        pieces.append(text[end:])
        return "".join(pieces)
