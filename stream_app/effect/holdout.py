"""Who is held out of a rule: a pure function of (one_id, rule), the same on every worker, after any
restart and in the sample generator, which imports it to model the holdout's (lack of) response.

**Across merges.** The group is decided by the one_id the person has when the action is decided.
A survivor keeps its one_id for good (the older profile survives and a one_id is never reused), so
a person who was never split keeps the group of every rule forever. A person whose fragments merge
takes the survivor's group from the merge on: one person, one group per rule, from then on. What a
fragment was decided before the merge stays as decided, and its attribution window keeps the group
it opened with, so an order is counted in the group whose action (or its absence) preceded it.

>>> held_out("p_0123456789abcdef", "welcome", 0.0)
False
>>> held_out("p_0123456789abcdef", "welcome", 1.0)
True
>>> held_out("p_0123456789abcdef", "welcome", 0.2) == held_out("p_0123456789abcdef", "welcome", 0.2)
True
"""

from __future__ import annotations

import hashlib


def holdout_point(one_id: str, rule: str) -> float:
    """A uniform number in [0, 1) for the pair: the person is held out when it is below the share.

    Hashed per rule, so the holdouts of two rules are independent of each other; a larger share
    holds out a superset of the people a smaller one did."""
    digest = hashlib.sha256(f"holdout|{rule}|{one_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def held_out(one_id: str, rule: str, share: float) -> bool:
    """Whether `one_id` is in `rule`'s holdout when `share` of eligible people are held out."""
    return share > 0 and holdout_point(one_id, rule) < share


__all__ = ["held_out", "holdout_point"]
