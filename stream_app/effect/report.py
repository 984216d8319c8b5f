"""The per-rule effect table from the output topics: actions, conversion rate, revenue, uplift.

Pure (records in, numbers out); `stream-app effect` and the run summary read the topics. Counted
per action: an action *converted* when at least one order is attributed to it. Records are
de-duplicated on their keys (delivery is at-least-once), and an order's attribution is its record
with the latest `touched_at` (docs/contracts.md, `conversions`).

**Uplift** = conversion rate of the sent actions (`treated`) − that of the held-out ones
(`holdout`), with a 95% interval by the normal approximation for a difference of two independent
proportions (Wald: ±1.96·√(p₁(1−p₁)/n₁ + p₀(1−p₀)/n₀)); it is None when either group is empty.
Wald's interval is too narrow for small groups or rates near 0 or 1: read the sample sizes with it.

>>> e = RuleEffect("welcome", treated=100, treated_converted=30, holdout=100, holdout_converted=10)
>>> round(e.uplift, 2), [round(x, 3) for x in e.interval]
(0.2, [0.093, 0.307])
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

Z95 = 1.959963984540054


@dataclass
class RuleEffect:
    rule: str
    treated: int = 0
    """Actions sent (coupons, guide alerts)."""
    treated_converted: int = 0
    revenue: float = 0.0
    """Amounts of the orders attributed to sent actions."""
    holdout: int = 0
    """Actions held out (`actions-suppressed`, reason `holdout`)."""
    holdout_converted: int = 0
    holdout_revenue: float = 0.0

    @property
    def rate(self) -> float | None:
        return self.treated_converted / self.treated if self.treated else None

    @property
    def holdout_rate(self) -> float | None:
        return self.holdout_converted / self.holdout if self.holdout else None

    @property
    def uplift(self) -> float | None:
        if self.rate is None or self.holdout_rate is None:
            return None
        return self.rate - self.holdout_rate

    @property
    def interval(self) -> tuple[float, float] | None:
        """95% interval of the uplift (normal approximation, see the module's docstring)."""
        p1, p0, uplift = self.rate, self.holdout_rate, self.uplift
        if p1 is None or p0 is None or uplift is None:
            return None
        se = math.sqrt(p1 * (1 - p1) / self.treated + p0 * (1 - p0) / self.holdout)
        return uplift - Z95 * se, uplift + Z95 * se

    def to_json(self) -> dict[str, Any]:
        return {
            "actions": self.treated,
            "conversions": self.treated_converted,
            "conversion_rate": self.rate,
            "revenue": round(self.revenue, 2),
            "holdout_actions": self.holdout,
            "holdout_conversions": self.holdout_converted,
            "holdout_conversion_rate": self.holdout_rate,
            "uplift": self.uplift,
            "uplift_95": list(self.interval) if self.interval else None,
        }


def effect_by_rule(
    rules: Iterable[str],
    actions: Iterable[bytes | None],
    suppressed: Iterable[bytes | None],
    conversions: Iterable[bytes | None],
) -> dict[str, RuleEffect]:
    """`actions`: records of `coupons` and `guide-alerts`; `suppressed`: of `actions-suppressed`
    (only reason `holdout` counts); `conversions`: of `conversions`.

    >>> table = effect_by_rule(
    ...     ["welcome"],
    ...     [b'{"rule": "welcome", "coupon_key": "a_1"}', b'{"rule": "welcome", "coupon_key": "a_2"}'],
    ...     [b'{"rule": "welcome", "key": "a_3", "reason": "holdout"}'],
    ...     [b'{"conversion_key": "c_1", "rule": "welcome", "action_key": "a_1", "group": "treated",'
    ...      b' "amount": 10, "touched_at": "2026-01-01T00:00:00.000+00:00"}'],
    ... )
    >>> table["welcome"].to_json()["conversion_rate"], table["welcome"].to_json()["uplift"]
    (0.5, 0.5)
    """
    table = {rule: RuleEffect(rule) for rule in rules}
    treated: dict[str, str] = {}
    held: dict[str, str] = {}
    for value in actions:
        record = orjson.loads(value or b"{}")
        key = record.get("coupon_key") or record.get("alert_key")
        if key:
            treated[key] = str(record.get("rule", "?"))
    for value in suppressed:
        record = orjson.loads(value or b"{}")
        if record.get("reason") == "holdout" and record.get("key"):
            held[record["key"]] = str(record.get("rule", "?"))
    for rule in treated.values():
        table.setdefault(rule, RuleEffect(rule)).treated += 1
    for rule in held.values():
        table.setdefault(rule, RuleEffect(rule)).holdout += 1
    final: dict[str, dict[str, Any]] = {}
    for value in conversions:
        record = orjson.loads(value or b"{}")
        order = record.get("conversion_key")
        if not order:
            continue
        rank = (record.get("touched_at") or "", record.get("action_key") or "")
        if order not in final or rank > (final[order].get("touched_at") or "", final[order]["action_key"]):
            final[order] = record
    converted: set[str] = set()
    for record in final.values():
        effect = table.setdefault(str(record.get("rule", "?")), RuleEffect(str(record.get("rule", "?"))))
        amount = float(record.get("amount") or 0)
        first = record["action_key"] not in converted
        converted.add(record["action_key"])
        if record.get("group") == "holdout":
            effect.holdout_converted += first
            effect.holdout_revenue += amount
        else:
            effect.treated_converted += first
            effect.revenue += amount
    return table


__all__ = ["Z95", "RuleEffect", "effect_by_rule"]
