"""The compiled validator on the hot path answers as `jsonschema` does on the contract.

The oracle is built here from `schemas/touchpoint.v1.json` with `jsonschema` (draft 2020-12) and the
contract's one format, `date-time`, read by `parse_event_time` (the parser that makes event time).
The corpus: every line of the sample generator (with many malformed lines), then mutations of valid
events drawn by hypothesis: required fields dropped, wrong types, extra properties and identifier
types, bad and nearly-good date-times, strings at their length bounds, amounts at their range bounds,
deep nesting in and out of `properties`, documents that are not objects.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from stream_app.ingest import schema
from stream_app.ingest.schema import SCHEMA_PATH, is_valid, parse_event_time, schema_problems
from stream_app.sample import generate

_checker = FormatChecker(formats=())


@_checker.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(parse_event_time(value))


ORACLE = Draft202012Validator(orjson.loads(SCHEMA_PATH.read_bytes()), format_checker=_checker)
ID_TYPES = [
    "member_id",
    "phone",
    "email",
    "unionid",
    "wecom_external_userid",
    "openid",
    "order_no",
    "device_id",
]
REQUIRED = ["event_id", "event_type", "occurred_at", "channel", "identities"]


def agree(document: Any) -> None:
    """Same verdict as the oracle, and the reasons the reference writes (none when valid)."""
    expected = ORACLE.is_valid(document)
    assert is_valid(document) is expected, document
    problems = schema_problems(document)
    assert (problems == []) is expected, (document, problems)
    assert problems == schema._reference_problems(document)


def roundtrip(document: Any) -> Any:
    """What the hot path sees: a value orjson decoded."""
    return orjson.loads(orjson.dumps(document))


# -- the sample generator's output -----------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_agree_on_generated_lines(seed):
    lines = generate(people=150, days=1, seed=seed, malformed_rate=0.3).lines
    documents = []
    for line in lines:
        try:
            documents.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    verdicts = {ORACLE.is_valid(doc) for doc in documents}
    assert verdicts == {True, False}  # the corpus holds both, or it proves nothing
    for document in documents:
        agree(document)


# -- mutations of valid events ---------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def nested(depth: int, leaf: Any, as_list: bool) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if as_list and level % 2 else {"k": value}
    return value


deep_values = st.builds(nested, st.integers(1, 30), json_scalars, st.booleans())

digits = st.integers(0, 99).map(lambda n: f"{n:02d}")
good_times = st.builds(
    lambda y, mo, d, h, mi, s, frac, off: f"{y:04d}-{mo}-{d}T{h}:{mi}:{s}{frac}{off}",
    st.integers(1, 9999),
    st.integers(1, 12).map(lambda n: f"{n:02d}"),
    st.integers(1, 28).map(lambda n: f"{n:02d}"),
    st.integers(0, 23).map(lambda n: f"{n:02d}"),
    st.integers(0, 59).map(lambda n: f"{n:02d}"),
    st.integers(0, 59).map(lambda n: f"{n:02d}"),
    st.sampled_from(["", ".1", ".123", ".123456", ".123456789"]),
    st.sampled_from(["Z", "z", "+08:00", "-05:30", "+00:00"]),
)
nearly_times = st.builds(
    lambda y, mo, d, h, mi, s, frac, sep, off, tail: f"{y}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{off}{tail}",
    st.sampled_from(["2026", "0000", "9999", "226", "２０２６"]),
    digits,
    digits,
    digits,
    digits,
    digits,
    st.sampled_from(["", ".", ".1", ".1234567890", ".123456789012"]),
    st.sampled_from(["T", "t", " ", "_"]),
    st.sampled_from(["Z", "z", "+08:00", "+0800", "+24:00", "+08:60", "-23:59", "", "+8:00"]),
    st.sampled_from(["", "\n", " ", "Z", "\x00"]),
)
pattern_times = st.builds(
    # What the contract's pattern lets through, calendar or not: month 13, day 31 of June, hour 24.
    lambda y, mo, d, h, mi, s, off: f"{y:04d}-{mo}-{d}T{h}:{mi}:{s}{off}",
    st.integers(0, 9999),
    digits,
    digits,
    digits,
    digits,
    digits,
    st.sampled_from(["Z", "+08:00", "+24:00", "+08:60", "-99:99"]),
)
date_times = good_times | pattern_times | nearly_times | st.text(max_size=30)


def sized_text(bound: int) -> st.SearchStrategy[str]:
    """Strings at and beside a length bound, some of non-BMP characters (lengths count code points)."""
    return st.builds(
        lambda n, char: char * n,
        st.sampled_from([0, 1, bound - 1, bound, bound + 1]),
        st.sampled_from(["a", "é", "😀", " "]),
    )


amounts = (
    st.sampled_from([0, -0.0, 1e12, 10**12, 10**12 + 1, 1e12 + 0.0001, -1e-300, 5e-324, True, False])
    | st.floats(-1.0, 1.0)
    | st.floats(-1.0, 2e12)
    | st.integers(-5, 2 * 10**12)
    | json_values
)

valid_events = st.fixed_dictionaries(
    {
        "event_id": st.text(min_size=1, max_size=128),
        "event_type": st.text(min_size=1, max_size=64),
        "occurred_at": good_times,
        "channel": st.text(min_size=1, max_size=64),
        "identities": st.dictionaries(st.sampled_from(ID_TYPES), st.text(max_size=256), min_size=1),
    },
    optional={
        "store_id": st.text(min_size=1, max_size=128),
        "guide_id": st.text(min_size=1, max_size=128),
        "properties": st.fixed_dictionaries(
            {},
            optional={
                "sku": st.text(max_size=8),
                "amount": st.floats(0, 1e12),
                "currency": st.text(max_size=4),
                "page": st.text(max_size=8),
                "free": deep_values,
            },
        ),
    },
)


MUTATIONS = [
    *["drop", "retype", "extra", "identity", "time", "length", "amount", "deep"] * 3,
    "whole",  # rarer: a document that is not an event says little about the keywords
]


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    event = draw(valid_events)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(MUTATIONS))
        if kind == "drop":
            event.pop(draw(st.sampled_from(REQUIRED)), None)
        elif kind == "retype":
            field = draw(st.sampled_from([*REQUIRED, "store_id", "guide_id", "properties"]))
            event[field] = draw(json_values | deep_values)
        elif kind == "extra":
            event[draw(st.text(max_size=12))] = draw(json_values)
        elif kind == "identity":
            identities = event["identities"] if isinstance(event.get("identities"), dict) else {}
            name = draw(st.sampled_from(ID_TYPES) | st.text(max_size=12))
            identities[name] = draw(sized_text(256) | st.text(max_size=300) | json_values)
            if draw(st.integers(0, 9)) == 0:
                identities.clear()
            event["identities"] = identities
        elif kind == "time":
            event["occurred_at"] = draw(date_times)
        elif kind == "length":
            field, bound = draw(
                st.sampled_from(
                    [
                        ("event_id", 128),
                        ("event_type", 64),
                        ("channel", 64),
                        ("store_id", 128),
                        ("guide_id", 128),
                    ]
                )
            )
            event[field] = draw(sized_text(bound))
        elif kind == "amount":
            properties = event.get("properties") if isinstance(event.get("properties"), dict) else {}
            key = draw(st.sampled_from(["amount", "amount", "amount", "sku", "currency", "page"]))
            properties[key] = draw(amounts)
            event["properties"] = properties
        elif kind == "deep":
            event[draw(st.sampled_from(["properties", "identities", "channel", "store_id"]))] = draw(
                deep_values
            )
        else:
            return roundtrip(draw(json_values))  # not an event at all
    return roundtrip(event)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_agree_on_mutated_events(document):
    event("valid" if ORACLE.is_valid(document) else "invalid")  # --hypothesis-show-statistics
    agree(document)


@settings(max_examples=150, deadline=None)
@given(valid_events)
def test_valid_events_are_valid(document):
    """The strategy for valid events is one (else every mutation test would start from junk)."""
    document = roundtrip(document)
    assert ORACLE.is_valid(document)
    agree(document)


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2026-11-22T10:00:00+08:00\n",  # `$` in Python's re matches before it, in Rust's not
        "2026-02-30T10:00:00+08:00",  # the pattern passes it, the calendar does not
        "2026-11-22T10:00:60+08:00",  # RFC 3339 allows a leap second, parse_event_time does not
        "2026-11-22T10:00:00.1234567890+08:00",
        "2026-11-22t10:00:00z",
        "２０２６-11-22T10:00:00+08:00",
    ],
)
def test_agree_on_date_time_edges(occurred_at):
    agree(
        {
            "event_id": "e",
            "event_type": "login",
            "occurred_at": occurred_at,
            "channel": "app",
            "identities": {"member_id": "M1"},
        }
    )


VALID = {
    "event_id": "e",
    "event_type": "login",
    "occurred_at": "2026-11-22T10:00:00+08:00",
    "channel": "app",
    "identities": {"member_id": "M1"},
}
ABOVE_1E12 = 1e12 + 1.220703125e-4  # the next double above 1e12


@pytest.mark.parametrize(
    "change",
    [
        *({"drop": name} for name in REQUIRED),
        *(
            {name: value}
            for name in ("event_id", "store_id", "guide_id")
            for value in ("", "é" * 128, "é" * 129)
        ),
        *({name: value} for name in ("event_type", "channel") for value in ("😀" * 64, "😀" * 65)),
        *({"identities": {id_type: "x" * n}} for id_type in ID_TYPES for n in (256, 257)),
        {"identities": {}},
        {"identities": {"qq": "1"}},
        {"identities": {"member_id": None}},
        *(
            {"properties": {"amount": value}}
            for value in (0, -0.0, -5e-324, 1e12, 10**12, 10**12 + 1, ABOVE_1E12)
        ),
        *({"properties": {"amount": value}} for value in (True, "1", None, [1])),
        {"properties": {"sku": 1}},
        {"properties": {"other": {"any": ["thing", 1, None]}}},
        {"properties": []},
        {"extra": 1},
        {"store_id": 1},
    ],
)
def test_agree_at_each_keyword_bound(change):
    """One keyword at a time, on and past its bound: certain cases beside the random ones."""
    document = dict(VALID)
    for name, value in change.items():
        if name == "drop":
            document.pop(value)
        else:
            document[name] = value
    agree(roundtrip(document))
