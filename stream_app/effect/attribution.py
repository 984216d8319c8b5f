"""Campaign effect per person: attribution windows, last-touch attribution, conversion records.

Pure (no Faust, Kafka or RocksDB). A person's attribution state is plain JSON kept inside the
person's state in the person stage, so it is partitioned, changelogged and merged with it:

    windows      [{key, rule, kind, group, opened_ms, until_ms, template | guide_id}]
                 one per action decided: sent (`group` treated) or held out (`group` holdout)
    orders       [{event_id, t, amount, occurred_at}]          recent `order_paid` events
    redemptions  [[t, coupon_key, template]]                   recent `coupon_redeemed` events
    credited     {order event_id: [touch_ms, action_key]}      the attribution already emitted

**Attribution is a function of the state** (`attribute`): an order converts the window with the
latest *touch* before it among the windows open at its time (opened before the order, closing
after it): last touch, one order to one action. A touch is the action itself or a redemption of
it (a `coupon_redeemed` event whose `properties.coupon_key` is the coupon's key, or, without a key,
whose `properties.template` is its template: every open coupon of that template), so a coupon the
customer redeemed beats an alert that came between the redemption and the order. A held-out
action opens its window like a sent one (a "ghost" touch), so a rule's two groups face the same
competition from other rules. The guide of a guide alert, or of a coupon's trigger, is credited
(导购业绩): the conversion names them.

**Merges.** The state of two fragments merges by union (max for `credited`): commutative,
associative, idempotent. After a merge, and after every order, redemption or new window,
`attribute` runs over what the person now has, and an order whose best touch is later than the one
already emitted for it gets a new record (same `conversion_key`, the new action): so an order
first seen by one fragment converts an action of another once they merge, and the record with the
latest `touched_at` per `conversion_key` is what recomputing from all the person's events gives
(a hypothesis test). Records are never retracted otherwise.

**Bounds** (per person, by configuration): at most `WINDOWS_PER_RULE` windows per rule (the newest);
a window is kept until one more window length after it closes, orders and redemptions until twice
the longest window after they happened (a merge later than that no longer re-attributes), at most
`ORDERS_KEPT` and `REDEMPTIONS_KEPT` of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stream_app.config.topology import RuleSpec, duration_ms

WINDOWS_PER_RULE = 16
ORDERS_KEPT = 32
REDEMPTIONS_KEPT = 16
TREATED, HOLDOUT = "treated", "holdout"


def conversion_key(order_event_id: str) -> str:
    """The key of one order's conversion: one order, one action (a re-attribution keeps it).

    >>> conversion_key("ev-1")
    'c_b8b879240e4f8630746e'
    """
    return "c_" + hashlib.sha256(f"conversion|{order_event_id}".encode()).hexdigest()[:20]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def empty_state() -> dict[str, Any]:
    return {"windows": [], "orders": [], "redemptions": [], "credited": {}}


@dataclass(frozen=True)
class Conversion:
    """One order attributed to one action (`touch_ms`: the action or its latest redemption)."""

    order: dict[str, Any]
    window: dict[str, Any]
    touch_ms: int

    @property
    def rank(self) -> list[Any]:
        return [self.touch_ms, self.window["key"]]


class AttributionEngine:
    """Attribution windows of the rules in `topology.yaml` (`rules.<name>.effect`)."""

    def __init__(self, window_ms: Mapping[str, int]):
        self.window_ms = dict(window_ms)
        self.keep_ms = 2 * max(self.window_ms.values(), default=0)

    @classmethod
    def from_specs(cls, rules: Mapping[str, RuleSpec]) -> AttributionEngine:
        return cls({name: duration_ms(spec.effect.window) for name, spec in rules.items()})

    # -- what happens to a person ----------------------------------------------------------------

    def on_action(
        self,
        state: dict[str, Any] | None,
        *,
        rule: str,
        key: str,
        kind: str,
        at_ms: int,
        held_out: bool,
        template: str | None = None,
        guide_id: str | None = None,
    ) -> dict[str, Any]:
        """An action was decided at `at_ms` (emitted, or held out): its window opens."""
        state = _copy(state)
        if rule not in self.window_ms or any(w["key"] == key for w in state["windows"]):
            return state
        window: dict[str, Any] = {
            "key": key,
            "rule": rule,
            "kind": kind,
            "group": HOLDOUT if held_out else TREATED,
            "opened_ms": at_ms,
            "until_ms": at_ms + self.window_ms[rule],
        }
        if template is not None:
            window["template"] = template
        if guide_id is not None:
            window["guide_id"] = guide_id
        state["windows"].append(window)
        return state

    def on_event(self, state: dict[str, Any] | None, event: Mapping[str, Any]) -> dict[str, Any] | None:
        """An `order_paid` or `coupon_redeemed` of the person; None for any other event (no change)."""
        event_type = event.get("event_type")
        if event_type not in ("order_paid", "coupon_redeemed"):
            return None
        state = _copy(state)
        t = int(event["event_time_ms"])
        properties = event.get("properties") or {}
        if event_type == "order_paid":
            if all(o["event_id"] != event["event_id"] for o in state["orders"]):
                amount = properties.get("amount")
                state["orders"].append(
                    {
                        "event_id": event["event_id"],
                        "t": t,
                        "amount": float(amount) if isinstance(amount, int | float) else 0.0,
                        "occurred_at": event.get("occurred_at") or _iso(t),
                    }
                )
        else:
            coupon = properties.get("coupon_key")
            template = properties.get("template")
            redemption = [
                t,
                coupon if isinstance(coupon, str) else None,
                template if isinstance(template, str) else None,
            ]
            if (redemption[1] or redemption[2]) and redemption not in state["redemptions"]:
                state["redemptions"].append(redemption)
        return state

    def merge(self, a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
        """One person's attribution state from two fragments' (commutative, associative)."""
        a, b = _copy(a), _copy(b)
        windows = {w["key"]: w for w in sorted(a["windows"] + b["windows"], key=_window_order)}
        orders = {o["event_id"]: o for o in a["orders"] + b["orders"]}
        redemptions = {tuple(r) for r in a["redemptions"] + b["redemptions"]}
        credited = dict(a["credited"])
        for order_id, rank in b["credited"].items():
            if order_id not in credited or rank > credited[order_id]:
                credited[order_id] = rank
        return {
            "windows": sorted(windows.values(), key=_window_order),
            "orders": sorted(orders.values(), key=lambda o: (o["t"], o["event_id"])),
            "redemptions": sorted([list(r) for r in redemptions], key=_redemption_order),
            "credited": credited,
        }

    # -- attributing -----------------------------------------------------------------------------

    def attribute(self, state: dict[str, Any] | None) -> dict[str, Conversion]:
        """Each remembered order's attribution (order event_id -> conversion); unattributed left out."""
        state = state or empty_state()
        links = _redemption_links(state)
        result: dict[str, Conversion] = {}
        for order in state["orders"]:
            t = order["t"]
            best: Conversion | None = None
            for window in state["windows"]:
                if not window["opened_ms"] < t < window["until_ms"]:
                    continue
                touches = [window["opened_ms"], *(r for r in links.get(window["key"], ()) if r < t)]
                candidate = Conversion(order, window, max(touches))
                if best is None or candidate.rank > best.rank:
                    best = candidate
            if best is not None:
                result[order["event_id"]] = best
        return result

    def settle(self, state: dict[str, Any], now_ms: int) -> tuple[dict[str, Any], list[Conversion]]:
        """Attribute, return what is new (or later-touched) since last time, and prune to bounds.

        `now_ms`: the person's event time, for pruning only (attribution never reads it)."""
        new: list[Conversion] = []
        credited = dict(state["credited"])
        for order_id, conversion in sorted(self.attribute(state).items(), key=lambda kv: kv[1].order["t"]):
            if order_id not in credited or conversion.rank > credited[order_id]:
                credited[order_id] = conversion.rank
                new.append(conversion)
        return self._pruned({**state, "credited": credited}, now_ms), new

    def _pruned(self, state: dict[str, Any], now_ms: int) -> dict[str, Any]:
        windows = [w for w in state["windows"] if now_ms < w["until_ms"] + self.window_ms.get(w["rule"], 0)]
        by_rule: dict[str, list[dict[str, Any]]] = {}
        for w in sorted(windows, key=_window_order):
            by_rule.setdefault(w["rule"], []).append(w)
        windows = sorted((w for ws in by_rule.values() for w in ws[-WINDOWS_PER_RULE:]), key=_window_order)
        orders = [o for o in state["orders"] if now_ms < o["t"] + self.keep_ms][-ORDERS_KEPT:]
        kept = {o["event_id"] for o in orders}
        redemptions = [r for r in state["redemptions"] if now_ms < r[0] + self.keep_ms]
        return {
            "windows": windows,
            "orders": orders,
            "redemptions": sorted(redemptions, key=_redemption_order)[-REDEMPTIONS_KEPT:],
            "credited": {k: v for k, v in state["credited"].items() if k in kept},
        }


def conversion_record(
    conversion: Conversion, one_id: str, wall_ms: int, schema_version: int
) -> dict[str, Any]:
    """The `conversions` record of one attribution (docs/contracts.md)."""
    order, window = conversion.order, conversion.window
    record: dict[str, Any] = {
        "schema_version": schema_version,
        "conversion_key": conversion_key(order["event_id"]),
        "one_id": one_id,
        "rule": window["rule"],
        "action": window["kind"],
        "action_key": window["key"],
        "group": window["group"],
        "template": window.get("template"),
        "guide_id": window.get("guide_id"),
        "order_event_id": order["event_id"],
        "amount": order["amount"],
        "via": "redemption" if conversion.touch_ms > window["opened_ms"] else "last_touch",
        "action_at": _iso(window["opened_ms"]),
        "touched_at": _iso(conversion.touch_ms),
        "converted_after_s": round((order["t"] - window["opened_ms"]) / 1000, 3),
        "event_time": order["occurred_at"],
        "emitted_at": _iso(wall_ms),
    }
    return record


def _redemption_links(state: Mapping[str, Any]) -> dict[str, list[int]]:
    """Window key -> times its coupon was redeemed: by key, or by template (every coupon of that
    template open then: the same offer). Links only grow when states merge, so attribution does."""
    links: dict[str, list[int]] = {}
    coupons = [w for w in state["windows"] if w["kind"] == "coupon"]
    for t, coupon, template in state["redemptions"]:
        for w in coupons:
            if not w["opened_ms"] <= t < w["until_ms"]:
                continue
            if (coupon is not None and w["key"] == coupon) or (
                coupon is None and template is not None and w.get("template") == template
            ):
                links.setdefault(w["key"], []).append(t)
    return links


def _window_order(w: Mapping[str, Any]) -> tuple[int, str]:
    return w["opened_ms"], w["key"]


def _redemption_order(r: list[Any]) -> tuple[int, str, str]:
    return r[0], r[1] or "", r[2] or ""


def _copy(state: dict[str, Any] | None) -> dict[str, Any]:
    if state is None:
        return empty_state()
    return {
        "windows": [dict(w) for w in state["windows"]],
        "orders": [dict(o) for o in state["orders"]],
        "redemptions": [list(r) for r in state["redemptions"]],
        "credited": dict(state["credited"]),
    }


__all__ = [
    "HOLDOUT",
    "TREATED",
    "AttributionEngine",
    "Conversion",
    "conversion_key",
    "conversion_record",
    "empty_state",
]
