"""A synthetic population of shoppers and their touchpoints, with the truth behind every event.

People have several identifiers across channels (members and guests, WeChat unionid and per-app
openids, devices, WeCom ids with a bound shopping guide), shop in stores and on marketplaces, and
sometimes share a family tablet. The stream also carries what real producers send: phones in many
spellings, junk identifiers, resent events and a few malformed lines. `truth` maps every event_id to
the person who really did it, so identity resolution can be scored.

**Response to coupons** (`_respond`). The generator does not see the pipeline's actions, so it
models them: a `member_register` gets the welcome coupon, an `add_to_cart` with no order of that
person within 30 minutes the cart coupon (the default rules, caps aside). A person who got one
orders afterwards with a higher probability (`RESPONSE`), sometimes redeeming the coupon first,
on the trigger's own identifiers (so the order is theirs, and links nobody new). Held-out people
do not respond: the holdout is `stream_app.effect.held_out` of the one_id the pipeline gives the
person, which the generator finds by running the pure ingest and identity cores over its own
events, with the development PII key (a phone-anchored one_id depends on the key: with another
`STREAM_APP_PII_KEY` some held-out people respond and the uplift shrinks), and `HOLDOUT` shares
equal to topology.yaml's (a test holds them together).

Deterministic for a given seed.
"""

from __future__ import annotations

import random
import string
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from stream_app.config.settings import DEV_PII_KEY
from stream_app.effect.holdout import held_out

SHANGHAI = timezone(timedelta(hours=8))
CATEGORIES = {
    "skincare": (89, 899),
    "makeup": (59, 459),
    "fragrance": (299, 1899),
    "apparel": (129, 1599),
    "shoes": (199, 1299),
    "bags": (399, 12800),
}
STORES = {
    "SH001": ["G1001", "G1002", "G1003"],
    "SH002": ["G2001", "G2002"],
    "BJ001": ["G3001", "G3002", "G3003"],
    "GZ001": ["G4001", "G4002"],
}
MOBILE_PREFIXES = [
    "130",
    "131",
    "132",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "157",
    "158",
    "159",
    "177",
    "180",
    "182",
    "186",
    "187",
    "188",
    "189",
    "199",
]
EMAIL_DOMAINS = ["qq.com", "163.com", "126.com", "gmail.com", "outlook.com", "sina.com"]
JUNK_PHONES = ["00000000000", "11111111111", "null", "", "unknown"]
JUNK_OTHER = ["null", "undefined", "0", "unknown", "none"]


@dataclass
class Person:
    pid: str
    member_id: str | None
    phone: str | None
    email: str | None
    unionid: str | None
    mp_openid: str | None
    oa_openid: str | None
    devices: list[str]
    wecom_id: str | None
    store_id: str
    guide_id: str | None
    affluence: float
    family_tablet: str | None = None


@dataclass
class GeneratedDay:
    lines: list[bytes] = field(default_factory=list)
    truth: dict[str, str] = field(default_factory=dict)
    """event_id -> person id, for every line that has an event_id."""
    malformed: int = 0
    duplicates: int = 0


def _rand_id(rng: random.Random, prefix: str, length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(rng.choice(alphabet) for _ in range(length))


def _phone(rng: random.Random) -> str:
    return rng.choice(MOBILE_PREFIXES) + "".join(rng.choice(string.digits) for _ in range(8))


def _spell_phone(rng: random.Random, phone: str) -> str:
    """The same phone as different producers write it."""
    return rng.choice(
        [
            phone,
            phone,
            f"+86 {phone[:3]}-{phone[3:7]}-{phone[7:]}",
            f"0086 {phone}",
            f"{phone[:3]} {phone[3:7]} {phone[7:]}",
            f"+86{phone}",
        ]
    )


def _make_people(rng: random.Random, count: int) -> list[Person]:
    people = []
    for n in range(count):
        store_id = rng.choice(list(STORES))
        bound = rng.random() < 0.35
        name = _rand_id(rng, "", 6).lower()
        people.append(
            Person(
                pid=f"person-{n:06d}",
                member_id=f"M{rng.randrange(10**7, 10**8)}" if rng.random() < 0.6 else None,
                phone=_phone(rng) if rng.random() < 0.85 else None,
                email=f"{name}@{rng.choice(EMAIL_DOMAINS)}" if rng.random() < 0.3 else None,
                unionid=_rand_id(rng, "o", 27) if rng.random() < 0.7 else None,
                mp_openid=_rand_id(rng, "oMP", 25) if rng.random() < 0.7 else None,
                oa_openid=_rand_id(rng, "oOA", 25) if rng.random() < 0.5 else None,
                devices=[str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(rng.randint(1, 2))],
                wecom_id=_rand_id(rng, "wm", 20) if bound else None,
                store_id=store_id,
                guide_id=rng.choice(STORES[store_id]) if bound else None,
                affluence=rng.lognormvariate(0, 0.8),
            )
        )
    # Family tablets: one device shared by a household of 2-6 people.
    for _ in range(max(1, count // 100)):
        household = rng.sample(people, min(len(people), rng.randint(2, 6)))
        tablet = str(uuid.UUID(int=rng.getrandbits(128)))
        for person in household:
            person.family_tablet = tablet
    return people


class _Writer:
    def __init__(self, rng: random.Random, start: datetime, days: int):
        self.rng = rng
        self.start = start
        self.days = days
        self.events: list[tuple[datetime, dict[str, Any], str]] = []
        self.counter = 0

    def when(self, day: int) -> datetime:
        # Shoppers are awake mostly 08:00-23:00, with evening peaks.
        hour = min(23.99, max(0.0, self.rng.gauss(15.5, 4.0)))
        return self.start + timedelta(days=day, hours=hour, seconds=self.rng.randrange(60))

    def add(
        self,
        person: Person,
        at: datetime,
        event_type: str,
        channel: str,
        ids: dict[str, str],
        **extra: Any,
    ) -> None:
        self.counter += 1
        event: dict[str, Any] = {
            "event_id": f"ev-{self.counter:08d}",
            "event_type": event_type,
            "occurred_at": at.isoformat(timespec="milliseconds"),
            "channel": channel,
            "identities": {k: v for k, v in ids.items() if v is not None},
        }
        event.update({k: v for k, v in extra.items() if v is not None})
        if not event["identities"]:
            return
        self.events.append((at, event, person.pid))


def _digital_ids(rng: random.Random, p: Person, channel: str) -> dict[str, str | None]:
    if channel == "miniprogram":
        return {"openid": p.mp_openid, "unionid": p.unionid, "device_id": None}
    if channel == "official_account":
        return {"openid": p.oa_openid, "unionid": p.unionid}
    device = p.family_tablet if p.family_tablet and rng.random() < 0.5 else rng.choice(p.devices)
    ids: dict[str, str | None] = {"device_id": device}
    if p.member_id and rng.random() < 0.5:
        ids["member_id"] = p.member_id
    return ids


def _person_day(w: _Writer, p: Person, day: int) -> None:
    rng = w.rng
    if rng.random() > 0.55:  # not every person shows up every day
        return
    channel = rng.choice(["miniprogram", "app", "web", "official_account", "miniprogram"])
    t = w.when(day)
    ids = _digital_ids(rng, p, channel)
    if rng.random() < 0.05:  # junk alongside real identifiers: must not link anyone
        ids["phone"] = rng.choice(JUNK_PHONES)
        ids.setdefault("openid", rng.choice(JUNK_OTHER))
    if day == 0 and p.member_id and rng.random() < 0.15:
        register_ids = dict(ids, member_id=p.member_id, phone=_spell_phone(rng, p.phone) if p.phone else None)
        w.add(p, t, "member_register", channel, register_ids)
        t += timedelta(minutes=1)
    if p.member_id and rng.random() < 0.3:
        login_ids = dict(ids, member_id=p.member_id)
        if p.phone and rng.random() < 0.5:
            login_ids["phone"] = _spell_phone(rng, p.phone)
        if p.email and rng.random() < 0.5:
            login_ids["email"] = p.email.upper() if rng.random() < 0.3 else f" {p.email} "
        w.add(p, t, "login", channel, login_ids)
    if p.wecom_id and rng.random() < 0.3:  # the guide shares a product on WeCom; they go and look
        w.add(
            p,
            t - timedelta(minutes=rng.randint(2, 90)),
            "wecom_message",
            "wecom",
            {"wecom_external_userid": p.wecom_id, "unionid": p.unionid},  # WeCom knows the unionid
            store_id=p.store_id,
            guide_id=p.guide_id,
        )
    w.add(
        p,
        t,
        "page_view",
        channel,
        ids,
        properties={"page": rng.choice(["home", "list", "campaign"])},
    )
    category = rng.choice(list(CATEGORIES))
    for _ in range(rng.randint(1, 5)):
        t += timedelta(seconds=rng.randint(5, 300))
        sku = f"SKU-{category[:3].upper()}-{rng.randrange(1000):03d}"
        w.add(p, t, "product_view", channel, ids, properties={"sku": sku, "category": category})
    if rng.random() < 0.35:
        low, high = CATEGORIES[category]
        amount = round(min(high, low + (high - low) * rng.random() * p.affluence / 3), 2)
        t += timedelta(seconds=rng.randint(10, 600))
        w.add(
            p,
            t,
            "add_to_cart",
            channel,
            ids,
            properties={"sku": sku, "category": category, "amount": amount},
        )
        if rng.random() < 0.6:
            t += timedelta(minutes=rng.choice([2, 5, 12, 25, 29, 31, 45, 90]))
            order_ids = dict(ids, order_no=f"WO{rng.randrange(10**11, 10**12)}")
            if p.phone:
                order_ids["phone"] = _spell_phone(rng, p.phone)
            elif p.email:
                order_ids["email"] = p.email  # a guest checkout
            w.add(
                p,
                t,
                "order_paid",
                channel,
                order_ids,
                properties={"sku": sku, "category": category, "amount": amount, "currency": "CNY"},
            )
    if rng.random() < 0.12:  # a marketplace order: order number and (usually) a phone
        market = rng.choice(["tmall", "jd", "douyin"])
        low, high = CATEGORIES[category]
        amount = round(low + (high - low) * rng.random(), 2)
        order_ids = {"order_no": f"{market[:2].upper()}{rng.randrange(10**13, 10**14)}"}
        if p.phone and rng.random() < 0.7:
            order_ids["phone"] = _spell_phone(rng, p.phone)
        w.add(
            p,
            w.when(day),
            "order_paid",
            market,
            order_ids,
            properties={"category": category, "amount": amount, "currency": "CNY"},
        )
        if p.member_id and rng.random() < 0.4:  # the guest order, claimed later by the member
            w.add(
                p,
                w.when(day) + timedelta(hours=1),
                "login",
                "app",
                {"member_id": p.member_id, "order_no": order_ids["order_no"]},
            )
    if rng.random() < 0.15:  # in store
        store_ids: dict[str, str | None] = {"member_id": p.member_id}
        if p.phone:
            store_ids["phone"] = _spell_phone(rng, p.phone)
        if not p.member_id and not p.phone:
            store_ids["device_id"] = p.devices[0]
        at = w.when(day)
        w.add(p, at, "store_visit", "pos", store_ids, store_id=p.store_id)
        if rng.random() < 0.5:
            low, high = CATEGORIES[category]
            amount = round(low + (high - low) * rng.random() * p.affluence, 2)
            w.add(
                p,
                at + timedelta(minutes=rng.randint(5, 40)),
                "order_paid",
                "pos",
                dict(store_ids, order_no=f"POS{rng.randrange(10**10, 10**11)}"),
                store_id=p.store_id,
                guide_id=rng.choice(STORES[p.store_id]),
                properties={"category": category, "amount": amount, "currency": "CNY"},
            )
            if rng.random() < 0.4:  # back later the same day (alterations, a pick-up, a friend)
                w.add(
                    p,
                    at + timedelta(hours=rng.randint(2, 8)),
                    "store_visit",
                    "pos",
                    store_ids,
                    store_id=p.store_id,
                )
    if p.wecom_id and rng.random() < 0.2:
        at = w.when(day)
        if day == 0 and rng.random() < 0.5:
            w.add(
                p,
                at,
                "guide_bind",
                "wecom",
                {"wecom_external_userid": p.wecom_id, "unionid": p.unionid},
                store_id=p.store_id,
                guide_id=p.guide_id,
            )
        w.add(
            p,
            at + timedelta(minutes=3),
            "wecom_message",
            "wecom",
            {"wecom_external_userid": p.wecom_id},
            store_id=p.store_id,
            guide_id=p.guide_id,
        )


def _malformed(rng: random.Random, start: datetime) -> bytes:
    n = rng.randrange(1_000_000)
    at = start.isoformat()
    return rng.choice(
        [
            b'{"event_id": "bad-%d", "event_type": "page_view", "occurred_at": "' % n,  # truncated
            b"not json at all",
            orjson.dumps(
                {
                    "event_type": "page_view",
                    "occurred_at": at,
                    "channel": "web",
                    "identities": {"device_id": f"d-{n}"},
                }
            ),  # no event_id
            orjson.dumps(
                {
                    "event_id": f"bad-{n}",
                    "event_type": "login",
                    "occurred_at": "yesterday",
                    "channel": "app",
                    "identities": {"member_id": f"M{n}"},
                }
            ),
            orjson.dumps(
                {
                    "event_id": f"bad-{n}",
                    "event_type": "order_paid",
                    "occurred_at": at,
                    "channel": "pos",
                    "identities": {"member_id": f"M{n}"},
                    "properties": {"amount": -5},
                }
            ),
            orjson.dumps(
                {
                    "event_id": f"bad-{n}",
                    "event_type": "login",
                    "occurred_at": at,
                    "channel": "app",
                    "identities": {"phone": "00000000000", "openid": "null"},
                }
            ),
            orjson.dumps(
                {
                    "event_id": f"bad-{n}",
                    "event_type": "login",
                    "occurred_at": at,
                    "channel": "app",
                    "identities": {},
                }
            ),
            orjson.dumps(
                {
                    "event_id": f"bad-{n}",
                    "event_type": "login",
                    "occurred_at": at,
                    "channel": "app",
                    "identities": {"qq": "12345"},
                }
            ),
            '{"event_id": "bad-é", "x": "\xff"}'.encode("latin-1"),  # not UTF-8
        ]
    )


HOLDOUT = {"welcome": 0.2, "cart_abandon": 0.2}
"""The holdout shares of topology.yaml's coupon rules (`rules.<name>.effect.holdout`)."""
RESPONSE = {"welcome": 0.4, "cart_abandon": 0.3}
"""Probability that a person who got the rule's coupon orders within its window because of it."""
TEMPLATES = {"welcome": "WELCOME_10", "cart_abandon": "CART_5"}
CART_WINDOW = timedelta(minutes=30)


def _one_ids(events: list[tuple[datetime, dict[str, Any], str]], pii_key: bytes) -> dict[str, str]:
    """event_id -> the one_id the pipeline's cores give its person (after every merge of the day)."""
    from stream_app.config.topology import Identifiers
    from stream_app.identity import IdentityResolver, IdentityRules, MappingIdentityStore
    from stream_app.identity import records as identity_records
    from stream_app.ingest import Accepted, IdentifierRules, Ingestor, PiiHasher

    defaults = Identifiers()
    ingestor = Ingestor(
        IdentifierRules.build(defaults.default_phone_region, defaults.junk_values, {}),
        PiiHasher(pii_key, defaults.default_phone_region),
    )
    store = MappingIdentityStore()
    resolver = IdentityResolver(store, IdentityRules())
    found = {}
    for _, event, _ in events:
        outcome = ingestor.process(orjson.dumps(event))
        if isinstance(outcome, Accepted):
            keys = identity_records.event_keys(outcome.event)
            found[event["event_id"]] = resolver.resolve(
                keys, event["event_id"], outcome.event["event_time_ms"]
            ).one_id
    return {event_id: store.current(one_id) for event_id, one_id in found.items()}


def _respond(w: _Writer, people: dict[str, Person], rng: random.Random, pii_key: bytes) -> None:
    """Orders caused by coupons (see the module's docstring), added to `w.events`."""
    events = sorted(w.events, key=lambda item: item[0])
    one_ids = _one_ids(events, pii_key)
    orders: dict[str, list[datetime]] = {}
    for at, event, pid in events:
        if event["event_type"] == "order_paid":
            orders.setdefault(pid, []).append(at)
    for at, event, pid in events:
        rule, sent_at = None, at
        if event["event_type"] == "member_register":
            rule = "welcome"
        elif event["event_type"] == "add_to_cart" and not any(
            at < o <= at + CART_WINDOW for o in orders.get(pid, [])
        ):
            rule, sent_at = "cart_abandon", at + CART_WINDOW
        one_id = one_ids.get(event["event_id"])
        if rule is None or one_id is None or held_out(one_id, rule, HOLDOUT[rule]):
            continue
        if rng.random() >= RESPONSE[rule]:
            continue
        person = people[pid]
        category = (event.get("properties") or {}).get("category") or rng.choice(list(CATEGORIES))
        low, high = CATEGORIES[category]
        amount = round(low + (high - low) * rng.random() * min(1.0, person.affluence / 2), 2)
        when = sent_at + timedelta(minutes=rng.randint(10, 600))
        if rng.random() < 0.5:
            w.add(
                person,
                when - timedelta(minutes=1),
                "coupon_redeemed",
                event["channel"],
                event["identities"],
                properties={"template": TEMPLATES[rule]},
            )
        order_ids = dict(event["identities"], order_no=f"CO{rng.randrange(10**11, 10**12)}")
        w.add(
            person,
            when,
            "order_paid",
            event["channel"],
            order_ids,
            properties={"category": category, "amount": amount, "currency": "CNY"},
        )


def generate(
    people: int,
    days: int = 1,
    seed: int = 7,
    start: datetime | None = None,
    malformed_rate: float = 0.01,
    duplicate_rate: float = 0.005,
    respond: bool = True,
    pii_key: bytes = DEV_PII_KEY.encode(),
) -> GeneratedDay:
    """Touchpoints of `people` shoppers over `days` days, sorted by event time.

    >>> day = generate(people=50, days=1, seed=1)
    >>> len(day.lines) > 50 and all(isinstance(line, bytes) for line in day.lines)
    True
    """
    rng = random.Random(seed)
    start = start or datetime(2026, 11, 22, tzinfo=SHANGHAI)
    population = _make_people(rng, people)
    writer = _Writer(rng, start, days)
    for day in range(days):
        for person in population:
            _person_day(writer, person, day)
    if respond:  # its own random stream: the population's own behaviour stays as it was
        _respond(writer, {p.pid: p for p in population}, random.Random(f"respond-{seed}"), pii_key)
    writer.events.sort(key=lambda item: item[0])
    out = GeneratedDay()
    for _, event, pid in writer.events:
        line = orjson.dumps(event)
        out.lines.append(line)
        out.truth[event["event_id"]] = pid
        if rng.random() < duplicate_rate:  # a producer retry: the very same event again
            out.lines.append(line)
            out.duplicates += 1
        if rng.random() < malformed_rate:
            out.lines.append(_malformed(rng, start))
            out.malformed += 1
    return out
