"""Input that makes every kind of output record, for the contract tests (unit and integration).

Scripted people, each for one record shape, plus a generated population for variety. Times are
day-time in Shanghai (guide alerts outside quiet hours) and in the past (ingest refuses the future).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson

from stream_app.sample import generate

SH = timezone(timedelta(hours=8))
DAY0 = datetime(2026, 11, 10, 10, 0, tzinfo=SH)


def _ev(event_id: str, event_type: str, at: datetime, identities: dict[str, str], **extra: object) -> bytes:
    event = {
        "event_id": event_id,
        "event_type": event_type,
        "occurred_at": at.isoformat(timespec="milliseconds"),
        "channel": extra.pop("channel", "app"),
        "identities": identities,
        **extra,
    }
    return orjson.dumps(event)


def _minutes(n: float) -> datetime:
    return DAY0 + timedelta(minutes=n)


SCRIPTED: list[bytes] = [
    # coupons (welcome) and a capped coupon: welcome + one cart in 7 days, the second cart capped
    _ev("k-reg", "member_register", DAY0, {"member_id": "CK1"}),
    _ev("k-cart1", "add_to_cart", _minutes(60), {"member_id": "CK1"}, properties={"sku": "S1"}),
    _ev("k-cart2", "add_to_cart", DAY0 + timedelta(days=2), {"member_id": "CK1"}),
    _ev("k-reg2", "member_register", DAY0 + timedelta(days=3), {"member_id": "CK1"}),  # rule_limit
    # guide-alerts: a bound customer views one category three times
    _ev("g-bind", "guide_bind", DAY0, {"member_id": "CG2"}, channel="wecom", guide_id="G1", store_id="SH001"),
    *[
        _ev(f"g-view{n}", "product_view", _minutes(n), {"member_id": "CG2"}, properties={"category": "bags"})
        for n in (1, 2, 3)
    ],
    # actions-suppressed (no_recipient): the same without a guide
    *[
        _ev(f"u-view{n}", "product_view", _minutes(n), {"member_id": "CU1"}, properties={"category": "shoes"})
        for n in (1, 2, 3)
    ],
    # identity-merges and a profile update after a merge: a member and a phone, then both at once
    _ev("m-reg", "member_register", DAY0, {"member_id": "CM1"}, channel="miniprogram"),
    _ev("m-view", "page_view", _minutes(5), {"phone": "+86 139-0000-1111"}, channel="web"),
    _ev("m-link", "login", _minutes(10), {"member_id": "CM1", "phone": "13900001111"}),
    # identity-conflicts, two from one event: its phone and its email belong to other members
    _ev("x-a", "login", DAY0, {"member_id": "CX1", "phone": "13900002222"}),
    _ev("x-b", "login", DAY0, {"member_id": "CX2", "email": "X2@example.com"}),
    _ev(
        "x-both",
        "login",
        _minutes(1),
        {"member_id": "CX3", "phone": "13900002222", "email": "x2@example.com"},
    ),
    # conversions: a welcome coupon redeemed, then an order in its window (CV2 is in the welcome
    # holdout: actions-suppressed, reason holdout, and a holdout conversion)
    _ev("v-reg", "member_register", DAY0, {"member_id": "CV1"}),
    _ev(
        "v-redeem",
        "coupon_redeemed",
        _minutes(30),
        {"member_id": "CV1"},
        properties={"template": "WELCOME_10"},
    ),
    _ev("v-order", "order_paid", _minutes(40), {"member_id": "CV1"}, properties={"amount": 120.5}),
    _ev("h-reg", "member_register", DAY0, {"member_id": "CV2"}),
    _ev("h-order", "order_paid", _minutes(50), {"member_id": "CV2"}, properties={"amount": 80}),
    # guide-alerts of a rule on an audience change: a bound customer's order passes 5,000
    # (high_value_alert); CH2's two fragments pass it together (`LATE_LINK` merges them)
    _ev(
        "hv-bind", "guide_bind", DAY0, {"member_id": "CH1"}, channel="wecom", guide_id="G3", store_id="SH002"
    ),
    _ev("hv-order", "order_paid", _minutes(20), {"member_id": "CH1"}, properties={"amount": 5200}),
    _ev(
        "hm-bind", "guide_bind", DAY0, {"member_id": "CH2"}, channel="wecom", guide_id="G4", store_id="SH002"
    ),
    _ev("hm-order1", "order_paid", _minutes(20), {"member_id": "CH2"}, properties={"amount": 3000}),
    _ev("hm-order2", "order_paid", _minutes(25), {"phone": "13900003333"}, properties={"amount": 3000}),
    # touchpoints-dlq
    b'{"event_id": "d-1", "event_type": ',
    _ev("d-2", "login", DAY0, {"member_id": "CD1"}, unknown_field=1),
    _ev("d-3", "login", DAY0, {"phone": "null"}),
]
"""Every output topic gets at least one record from these alone (the unit test checks it)."""

LATE_LINK: list[bytes] = [
    _ev("hm-link", "login", _minutes(90), {"member_id": "CH2", "phone": "13900003333"}),
]
"""Sent after everything else: CH2's fragments have been decided apart by then, so the survivor
enters high_value on the merge, and its alert names the audience change (no event caused it)."""

TWO_CONFLICTS_EVENT = "x-both"
"""An event that is refused twice: identity-conflicts' event_id alone does not name a record."""


def contract_input(people: int = 150, days: int = 2, seed: int = 23) -> list[bytes]:
    """The scripted cases, a generated population (its junk, repeats and malformed lines too), and
    the late link."""
    return SCRIPTED + generate(people=people, days=days, seed=seed).lines + LATE_LINK
