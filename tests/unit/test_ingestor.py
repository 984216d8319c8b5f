import orjson
import pytest

from stream_app.config import load_topology
from stream_app.ingest import Accepted, Ingestor, PiiHasher, Rejected
from stream_app.ingest.pipeline import (
    INVALID_JSON,
    NO_USABLE_IDENTIFIER,
    NOT_UTF8,
    SCHEMA_VIOLATION,
    TOO_LARGE,
)
from tests.unit.test_topology import REPO

HASHER = PiiHasher(b"test-key")
INGESTOR = Ingestor.from_topology(load_topology(REPO / "topology.yaml"), HASHER)


def event(**overrides):
    base = {
        "event_id": "e-1",
        "event_type": "order_paid",
        "occurred_at": "2026-11-22T10:00:00.123+08:00",
        "channel": "pos",
        "identities": {"phone": "+86 138-0013-8000", "member_id": "M1"},
        "store_id": "SH001",
        "properties": {"amount": 128.5, "currency": "CNY"},
    }
    base.update(overrides)
    return orjson.dumps(base)


def test_valid_event_is_normalised_and_hashed():
    out = INGESTOR.process(event(), now_ms=1795312800123 + 42)  # a wall clock 42 ms after the event
    assert isinstance(out, Accepted)
    e = out.event
    assert e["identities"] == {"member_id": "M1", "phone": HASHER.hash("phone", "+8613800138000")}
    assert e["event_time_ms"] == 1795312800123
    assert e["store_id"] == "SH001" and e["properties"]["amount"] == 128.5
    assert e["ingested_at_ms"] == 1795312800123 + 42
    assert "138" not in orjson.dumps(e).decode().replace(e["identities"]["phone"], "")


def test_the_input_records_timestamp_is_kept_where_an_actions_latency_starts():
    arrived = INGESTOR.process(event(), now_ms=1795312800123 + 42, arrived_at_ms=1795312800123 + 7)
    assert isinstance(arrived, Accepted) and arrived.event["arrived_at_ms"] == 1795312800123 + 7
    without = INGESTOR.process(event(), now_ms=1795312800123 + 42)
    assert isinstance(without, Accepted) and "arrived_at_ms" not in without.event


def test_unknown_event_type_is_valid():
    assert isinstance(INGESTOR.process(event(event_type="lottery_spin")), Accepted)


def test_junk_identifier_is_dropped_and_reported():
    out = INGESTOR.process(event(identities={"member_id": "M1", "openid": "null"}))
    assert isinstance(out, Accepted)
    assert out.event["identities"] == {"member_id": "M1"}
    assert out.dropped_identifiers == ("openid",)


def test_pii_in_properties_is_redacted():
    out = INGESTOR.process(event(properties={"note": "call me 13912345678", "email": "X@Y.com"}))
    assert isinstance(out, Accepted)
    text = orjson.dumps(out.event).decode()
    assert "13912345678" not in text and "X@Y.com" not in text


def test_properties_keep_their_shape_and_non_text_values_while_text_is_redacted():
    properties = {
        "amount": 12.5,
        "qty": 2,
        "gift": False,
        "coupon": None,
        "items": [{"sku": "S1", "note": "13912345678"}, 3, "x@y.com"],
        "nested": {"deep": {"email": "Ann@Example.com", "n": 1}},
    }
    out = INGESTOR.process(event(properties=properties))
    assert isinstance(out, Accepted)
    phone = HASHER.hash("phone", "+8613912345678")
    expected = {
        **properties,
        "items": [{"sku": "S1", "note": phone}, 3, HASHER.hash("email", "x@y.com")],
        "nested": {"deep": {"email": HASHER.hash("email", "ann@example.com"), "n": 1}},
    }
    assert out.event["properties"] == expected
    assert [type(v) for v in out.event["properties"].values()] == [type(v) for v in expected.values()]


@pytest.mark.parametrize(
    ("raw", "reason", "detail"),
    [
        (b"not json", INVALID_JSON, ""),
        (None, INVALID_JSON, "null"),
        (b'{"event_id": "e\xff"}', NOT_UTF8, "byte"),
        (b"x" * 70_000, TOO_LARGE, "max_event_bytes"),
        (event(event_id=""), SCHEMA_VIOLATION, "event_id"),
        (event(occurred_at="2026-11-22 10:00"), SCHEMA_VIOLATION, "occurred_at"),
        (event(occurred_at="2026-11-22T10:00:00"), SCHEMA_VIOLATION, "occurred_at"),
        (event(occurred_at="2026-02-30T10:00:00+08:00"), SCHEMA_VIOLATION, "date-time"),
        (event(identities={}), SCHEMA_VIOLATION, "identities"),
        (event(identities={"qq": "1"}), SCHEMA_VIOLATION, "qq"),
        (event(identities={"phone": 13800138000}), SCHEMA_VIOLATION, "identities/phone"),
        (event(properties={"amount": -1}), SCHEMA_VIOLATION, "properties/amount"),
        (event(extra_field=1), SCHEMA_VIOLATION, "extra_field"),
        (b"[1, 2]", SCHEMA_VIOLATION, "object"),
        (
            event(identities={"phone": "00000000000", "openid": "null"}),
            NO_USABLE_IDENTIFIER,
            "phone",
        ),
    ],
)
def test_rejections_carry_reason_and_detail(raw, reason, detail):
    out = INGESTOR.process(raw)
    assert isinstance(out, Rejected)
    assert out.reason == reason
    assert detail in out.detail


def test_internal_error_becomes_a_rejection_not_a_crash(monkeypatch):
    ingestor = Ingestor.from_topology(load_topology(REPO / "topology.yaml"), HASHER)
    monkeypatch.setattr(ingestor, "_normalise", lambda *a: 1 / 0)
    out = ingestor.process(event())
    assert isinstance(out, Rejected) and out.reason == "internal_error"
    assert "ZeroDivisionError" in out.detail


def test_dlq_record_keeps_source_and_redacted_original():
    raw = b'{"event_id": "e-9", "identities": {"phone": "13800138000"}'  # truncated JSON
    out = INGESTOR.process(raw)
    assert isinstance(out, Rejected)
    record = INGESTOR.dlq_record(raw, out, {"topic": "touchpoints", "partition": 3, "offset": 7}, 5)
    assert record["reason"] == INVALID_JSON
    assert record["source"] == {"topic": "touchpoints", "partition": 3, "offset": 7}
    assert "13800138000" not in record["original"]
    assert HASHER.hash("phone", "+8613800138000") in record["original"]
    assert record["original"].startswith('{"event_id": "e-9"')
    assert record["original_bytes"] == len(raw) and not record["original_truncated"]


def test_dlq_record_of_huge_message_is_truncated():
    raw = b"y" * 100_000
    record = INGESTOR.dlq_record(raw, INGESTOR.process(raw), {}, 0)
    assert record["original_truncated"] and len(record["original"]) == INGESTOR.max_event_bytes
