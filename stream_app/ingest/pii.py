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
import unicodedata

import phonenumbers

PII_TYPES = frozenset({"phone", "email"})
"""Identifier types that are personal data and are hashed."""

_EMAIL_IN_TEXT = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")
"""Bounded as RFC 5321 bounds the parts: unbounded, a long run of letters and one `@` anywhere made
the search quadratic (30 kB: 0.5 s; a 1 MB property: minutes)."""
_MAYBE_PHONE = re.compile(r"\d[\d\s().-]{5,}\d")
_GLUED_CANDIDATE = re.compile(r"(?<!\d)\+?\d[\d\s().-]{5,22}\d(?!\d)")
"""Digits, maybe formatted, not inside a longer number: what the matcher skips when letters touch it."""


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

        Used on anything that is not a declared identifier: property values, DLQ originals. A phone
        glued to letters (`tel13800138000`, or `\\n13800138000` in a DLQ original, where JSON escapes
        the newline) is hashed too, which libphonenumber's matcher alone skips; a phone-like run
        inside a longer number (an order number) is not a phone and stays.
        """
        if "@" not in text:
            return self._redact_phones(text)
        pieces: list[str] = []
        end = 0
        for match in _EMAIL_IN_TEXT.finditer(text):
            # Phones are looked for between emails, so an email's hash is never read as digits.
            pieces += [self._redact_phones(text[end : match.start()]), self.hash("email", match[0].lower())]
            end = match.end()
        pieces.append(self._redact_phones(text[end:]))
        return "".join(pieces)

    def _redact_phones(self, text: str) -> str:
        if not _MAYBE_PHONE.search(text):
            return text
        pieces: list[str] = []
        end = 0
        for match in phonenumbers.PhoneNumberMatcher(
            text, self._region, leniency=phonenumbers.Leniency.VALID
        ):
            pieces += [self._redact_glued(text[end : match.start]), self._hash_number(match.number)]
            end = match.end
        pieces.append(self._redact_glued(text[end:]))
        return "".join(pieces)

    def _redact_glued(self, text: str) -> str:
        """Phones the matcher passed over: it refuses a candidate with a Latin letter beside it."""
        if not _MAYBE_PHONE.search(text):
            return text
        return _GLUED_CANDIDATE.sub(self._hash_candidate, text)

    def _hash_candidate(self, candidate: re.Match[str]) -> str:
        text = candidate[0]
        whole = candidate.string
        before = whole[candidate.start() - 1] if candidate.start() else " "
        after = whole[candidate.end()] if candidate.end() < len(whole) else " "
        if not (_skipped_beside(before) or _skipped_beside(after)):
            return text  # the matcher had no reason to pass it over: not a phone
        pieces: list[str] = []
        end = 0
        for match in phonenumbers.PhoneNumberMatcher(
            text, self._region, leniency=phonenumbers.Leniency.VALID
        ):
            pieces += [text[end : match.start], self._hash_number(match.number)]
            end = match.end
        pieces.append(text[end:])
        return "".join(pieces)

    def _hash_number(self, number: phonenumbers.PhoneNumber) -> str:
        return self.hash("phone", phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _skipped_beside(char: str) -> bool:
    """Whether libphonenumber's matcher (leniency VALID) refuses a number with `char` beside it:
    a (Latin) letter, `%` or a currency sign. Any letter is taken, to be safe."""
    return char.isalpha() or char == "%" or unicodedata.category(char) == "Sc"
