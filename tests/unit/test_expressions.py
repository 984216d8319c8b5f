"""`expressions.evaluator` against rule-engine itself (the oracle): generated expressions over
generated values give the same value, of the same type, or the same error."""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest
import rule_engine
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.config import load_topology
from stream_app.expressions import compile_expression, evaluator
from tests.unit.test_topology import REPO

NAMES = ("a", "b", "m", "l", "missing")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.1, 0.5, 1.0, 2.5, 3.0, -0.0, 1e16, 0.30000000000000004, 5000.0, 4999.999999]),
    # Where native int/float comparisons and rule-engine's Decimals could part: past 2**53,
    # floats whose shortest repr is not their value, infinities, NaN.
    st.sampled_from([2**53, 2**53 + 1, -(2**53) - 1, 2**70, 10**22]),
    st.sampled_from([2.0**53, 2.0**70, 1e22, 1e23, float("inf"), -float("inf"), float("nan")]),
    st.sampled_from(["", "x", "bags", "a", "3"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["x", "bags", "a", "b", "3"]), inner, max_size=3),
    ),
    max_leaves=6,
)
things = st.dictionaries(st.sampled_from(NAMES[:-1]), values)

literals = st.sampled_from(
    ["null", "true", "false", "0", "1", "3", "0.1", "2.5", "5000", "-1", "'x'", "'bags'", "''"]
    + ["9007199254740993", "1180591620717411303424", "0.1000000000000000000001", "5000.0", "1e22"]
)
atoms = st.one_of(st.sampled_from(NAMES), literals)


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(
        inner, st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "and", "or", "+", "=~"]), inner
    )
    return st.one_of(
        binary.map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
        inner.map(lambda t: f"(not {t})"),
        inner.map(lambda t: f"{t}.length"),
    )


expressions = st.recursive(atoms, _extend, max_leaves=6)


def _outcome(fn: Any, thing: dict[str, Any]) -> tuple[str, Any]:
    try:
        value = fn(thing)
    except Exception as exc:  # noqa: BLE001 - rule-engine's own errors, and e.g. TypeError from `true[1]`
        return "error", type(exc)
    return type(value).__name__, repr(value)  # repr: a NaN is not equal to itself


def _same(text: str, thing: dict[str, Any]) -> None:
    """A dict takes the generated function, another mapping the closures: both as rule-engine."""
    rule = compile_expression(text)
    expected, got = _outcome(rule.evaluate, thing), _outcome(evaluator(rule), thing)
    assert got == expected, (text, thing)
    assert _outcome(evaluator(rule), MappingProxyType(thing)) == expected, (text, "closures")


@settings(max_examples=3000, deadline=None)
@given(expressions, things)
def test_the_closures_evaluate_as_rule_engine_does(text: str, thing: dict[str, Any]) -> None:
    try:
        compile_expression(text)
    except rule_engine.errors.EngineError:
        return  # refused at compile time: never evaluated
    _same(text, thing)


TOPOLOGY = load_topology(REPO / "topology.yaml")
TOPOLOGY_EXPRESSIONS = [spec.expr for spec in TOPOLOGY.tags.values() if spec.expr] + [
    spec.condition for spec in TOPOLOGY.rules.values() if spec.condition
]


@pytest.mark.parametrize("text", TOPOLOGY_EXPRESSIONS)
def test_the_topology_expressions_compile_to_closures(text: str) -> None:
    rule = compile_expression(text)
    assert evaluator(rule) != rule.evaluate  # the fast path, not the fallback


tag_values = st.fixed_dictionaries(
    {
        "lifetime_spend": st.sampled_from([0.0, 4999.99, 5000.0, 5000.01, 12345.6]),
        "order_count": st.integers(0, 3),
        "idle_days": st.sampled_from([0.0, 89.99999, 90.0, 120.5]),
        "vip": st.booleans(),
        "views_24h": st.dictionaries(st.sampled_from(["bags", "shoes"]), st.integers(0, 4)),
        "properties": st.dictionaries(
            st.sampled_from(["category", "sku"]), st.sampled_from(["bags", "shoes"])
        ),
        "gap_days": st.one_of(st.none(), st.sampled_from([0.0, 59.9, 60.0, 61.25])),
        "before": st.fixed_dictionaries({"order_count": st.integers(0, 2)}),
    }
)


@settings(max_examples=300, deadline=None)
@given(tag_values)
def test_the_topology_expressions_read_as_rule_engine_does(thing: dict[str, Any]) -> None:
    for text in TOPOLOGY_EXPRESSIONS:
        _same(text, thing)


def test_numbers_compare_as_rule_engine_decimals_not_python_floats() -> None:
    # 0.1 + 0.2 as a float is 0.30000000000000004; its shortest repr is what rule-engine compares.
    rule = compile_expression("x > 0.3")
    assert evaluator(rule)({"x": 0.1 + 0.2}) is rule.evaluate({"x": 0.1 + 0.2}) is True
    assert evaluator(compile_expression("x"))({"x": 2}) == Decimal(2)


BOUNDARY_VALUES = [
    *(2**53, 2**53 + 1, -(2**53) - 1, 2**70, 10**22, 10**23, 0, 1, 5000),
    *(2.0**53, 2.0**70, 1e22, 1e23, float("inf"), -float("inf"), float("nan"), 0.1, -0.0, 5000.0),
    *(0.30000000000000004, True, None, "x"),
]
BOUNDARY_LITERALS = [
    "9007199254740993",
    "1e23",
    "5000",
    "1180591620717411303424",
    "0.1000000000000000000001",
    "0.3",
    "-0.0",
]


@pytest.mark.parametrize("op", ["==", "!=", "<", "<=", ">", ">="])
def test_numbers_compare_natively_only_where_decimals_compare_the_same(op: str) -> None:
    # Every pair, exhaustively: the closures compare ints and floats natively only where that
    # orders them as rule-engine's Decimals do (2**70 == 2.0**70 as Python numbers, not here).
    for a in BOUNDARY_VALUES:
        for b in BOUNDARY_VALUES:
            _same(f"a {op} b", {"a": a, "b": b})
        for literal in BOUNDARY_LITERALS:
            _same(f"a {op} {literal}", {"a": a})
            _same(f"{literal} {op} a", {"a": a})


def test_a_null_container_fails_before_its_item_is_evaluated() -> None:
    rule = compile_expression("missing[a[a]]")
    assert _outcome(evaluator(rule), {"a": True}) == _outcome(rule.evaluate, {"a": True})
    assert _outcome(rule.evaluate, {"a": True})[1] is rule_engine.errors.EvaluationError
