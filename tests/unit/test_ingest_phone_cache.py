"""The phone cache: the same answers as libphonenumber, a bound that holds, no junk kept in it.

The oracle is libphonenumber called here directly (parse, is_valid_number, E.164), on spellings
a producer writes; the cache must not change any answer, first call or repeated.
"""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.ingest import identifiers
from stream_app.ingest.identifiers import PHONE_CACHE_SIZE, normalize_phone


@pytest.fixture(autouse=True)
def empty_cache():
    identifiers._parse_phone.cache_clear()
    yield
    identifiers._parse_phone.cache_clear()


def oracle(raw: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


spellings = st.builds(
    lambda prefix, rest, style: style.format(p=prefix, a=rest[:4], b=rest[4:]),
    st.sampled_from(["138", "139", "150", "186", "199", "120", "555"]),
    st.text("0123456789", min_size=8, max_size=8),
    st.sampled_from(["{p}{a}{b}", "+86 {p}-{a}-{b}", "0086 {p}{a}{b}", "({p}) {a} {b}", "+1 {p} {a}{b}"]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(spellings, st.sampled_from(["CN", "US", "GB"])), min_size=1, max_size=20))
def test_cached_answers_are_libphonenumbers(calls):
    """Each call twice over (a miss, then a hit): both answers are the oracle's."""
    identifiers._parse_phone.cache_clear()
    for _ in range(2):
        for raw, region in calls:
            # (No placeholder, one digit repeated, which normalize_phone drops: prefixes differ.)
            assert normalize_phone(raw, region) == oracle(raw, region)
    assert identifiers._parse_phone.cache_info().hits >= len(calls)


def test_region_is_part_of_the_key():
    # A national number means another phone in another region.
    assert normalize_phone("2025550123", "US") == "+12025550123"
    assert normalize_phone("2025550123", "CN") != "+12025550123"
    assert normalize_phone("2025550123", "US") == "+12025550123"


def test_the_bound_holds():
    for n in range(PHONE_CACHE_SIZE + 100):
        normalize_phone(f"139{n:08d}", "CN")
    assert identifiers._parse_phone.cache_info().currsize == PHONE_CACHE_SIZE


@pytest.mark.parametrize(
    "junk", ["1" * 256, "call me 13800138000", "13800138000\x00", "1380013800013800138000138001380013"]
)
def test_what_cannot_be_a_phone_is_not_kept(junk):
    """Values refused before parsing never reach the cache (long strings would swell its bound)."""
    assert normalize_phone(junk, "CN") is None
    assert identifiers._parse_phone.cache_info().currsize == 0
