"""Expressions in `topology.yaml` (derived tags, rule conditions): rule-engine, one way everywhere.

Names resolve as mapping items (tag values, `event['store_id']`), and a missing name reads as null
instead of failing, so one compiler serves validation at load and evaluation at run time.
"""

from __future__ import annotations

import rule_engine

_CONTEXT = rule_engine.Context(resolver=rule_engine.resolve_item, default_value=None)


def compile_expression(text: str) -> rule_engine.Rule:
    """A compiled expression; raises `rule_engine.errors.EngineError` on a bad one.

    >>> compile_expression("lifetime_spend >= 5000").evaluate({"lifetime_spend": 6000})
    True
    """
    return rule_engine.Rule(text, context=_CONTEXT)
