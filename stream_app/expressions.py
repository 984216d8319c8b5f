"""Expressions in `topology.yaml` (derived tags, rule conditions): rule-engine, one way everywhere.

Names resolve as mapping items (tag values, `event['store_id']`), and a missing name reads as null
instead of failing, so one compiler serves evaluation at run time. Validation at load compiles the
same text with the names that will exist (and their types): rule-engine then refuses an unknown
name or a type mismatch at compile time, which at run time would only make a condition never hold.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import rule_engine
from rule_engine import DataType, errors
from rule_engine import ast as re_ast
from rule_engine.ast import ExpressionBase, GetAttributeExpression, GetItemExpression, SymbolExpression
from rule_engine.types import coerce_value, is_integer_number

_CONTEXT = rule_engine.Context(resolver=rule_engine.resolve_item, default_value=None)


def compile_expression(text: str, names: Mapping[str, object] | None = None) -> rule_engine.Rule:
    """A compiled expression; raises `rule_engine.errors.EngineError` on a bad one.

    With `names` (symbol -> `rule_engine.DataType`) only those symbols exist: another one raises
    `SymbolResolutionError`, a type mismatch `EvaluationError`, both at compile time.

    >>> compile_expression("lifetime_spend >= 5000").evaluate({"lifetime_spend": 6000})
    True
    >>> compile_expression("lifetime_spnd >= 5000", {"lifetime_spend": DataType.FLOAT})
    Traceback (most recent call last):
    rule_engine.errors.SymbolResolutionError: lifetime_spnd
    """
    if names is None:
        return rule_engine.Rule(text, context=_CONTEXT)
    typed = rule_engine.Context(
        type_resolver=dict(names), resolver=rule_engine.resolve_item, default_value=None
    )
    return rule_engine.Rule(text, context=typed)


@dataclass(frozen=True)
class Checked:
    """What validating one expression found: every unknown symbol, and syntax, type or other errors.

    `rule` (compiled with the unknown symbols untyped) is None when the text does not compile.
    """

    rule: rule_engine.Rule | None
    unknown: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


def check_expression(text: str, names: Mapping[str, object]) -> Checked:
    """Compile `text` against `names`, collecting every unknown symbol (not only the first).

    rule-engine stops at the first unknown symbol; each one found is retried as untyped, so the
    names come out in the order they appear.

    >>> names = {"vip": DataType.BOOLEAN, "order_count": DataType.FLOAT}
    >>> check_expression("vipp and order_cont > 1", names).unknown
    ('vipp', 'order_cont')
    """
    assumed: dict[str, object] = {}
    errors: list[str] = []
    while True:
        try:
            rule = compile_expression(text, {**names, **assumed})
        except rule_engine.errors.SymbolResolutionError as exc:
            if exc.symbol_name in assumed:  # cannot happen: a symbol once assumed resolves
                return Checked(None, tuple(assumed), (*errors, f"{type(exc).__name__}: {exc.message}"))
            assumed[exc.symbol_name] = DataType.UNDEFINED
        except rule_engine.errors.EngineError as exc:
            errors.append(f"{type(exc).__name__}: {exc.message}")
            if isinstance(exc, rule_engine.errors.RuleSyntaxError) or len(errors) > 1:
                return Checked(None, tuple(assumed), tuple(errors))
            # A type error: go on untyped, to still find every unknown name and key.
            names = dict.fromkeys(names, DataType.UNDEFINED)
        else:
            return Checked(rule, tuple(assumed), (*errors, *_builtin_problems(rule)))


def _builtin_problems(rule: rule_engine.Rule) -> Iterator[str]:
    """`$nosuch` compiles (rule-engine types unknown built-ins as undefined) and reads null."""
    builtins = rule.context.builtins
    for node in _walk(rule.statement.expression):
        if isinstance(node, SymbolExpression) and node.scope is not None and node.name not in builtins:
            known = ", ".join(f"${name}" for name in sorted(builtins))
            yield f"unknown built-in symbol ${node.name} (known: {known})"


def symbols(rule: rule_engine.Rule) -> set[str]:
    """Names (not built-ins) an expression reads, wherever they stand (keys of items included).

    >>> sorted(symbols(compile_expression("views_24h[catx] > 1 and vip")))
    ['catx', 'views_24h', 'vip']
    """
    return {
        node.name
        for node in _walk(rule.statement.expression)
        if isinstance(node, SymbolExpression) and node.scope is None
    }


def _walk(node: ExpressionBase) -> Iterator[ExpressionBase]:
    yield node
    for child in _children(node):
        yield from _walk(child)


def literal_paths(rule: rule_engine.Rule) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Each `root['a']['b']` (or `root.a`) an expression reads with literal string keys.

    rule-engine cannot type the keys of a mapping, so a misspelt `before['order_countt']` reads as
    null at run time; these paths let the caller check the keys against the ones that exist.
    Only the longest chain is given (`event['properties']['sku']`, not also `event['properties']`).

    >>> rule = compile_expression("before['order_count'] >= 1 and views[properties['category']] > 2")
    >>> sorted(literal_paths(rule))
    [('before', ('order_count',)), ('properties', ('category',))]
    """

    def chain(node: ExpressionBase) -> tuple[str, tuple[str, ...]] | None:
        keys: list[str] = []
        while True:
            if isinstance(node, SymbolExpression):
                return (node.name, tuple(reversed(keys))) if node.scope is None else None
            if isinstance(node, GetItemExpression) and _literal_string(node.item):
                keys.append(node.item.value)
                node = node.container
            elif isinstance(node, GetAttributeExpression) and not _mapping_attribute(node.name):
                keys.append(node.name)
                node = node.object
            else:
                return None

    def walk(node: ExpressionBase) -> Iterator[tuple[str, tuple[str, ...]]]:
        if isinstance(node, GetItemExpression | GetAttributeExpression):
            found = chain(node)
            if found is not None and found[1]:
                yield found
                return
        for child in _children(node):
            yield from walk(child)

    yield from walk(rule.statement.expression)


def _literal_string(node: ExpressionBase) -> bool:
    return isinstance(node, rule_engine.ast.StringExpression) and isinstance(node.value, str)


def _mapping_attribute(name: str) -> bool:
    """`before.length`, `event.keys`: rule-engine's own attributes of a mapping, not keys of it."""
    try:
        _CONTEXT.resolve_attribute_type(DataType.MAPPING, name)
    except rule_engine.errors.AttributeResolutionError:
        return False
    return True


def _children(node: ExpressionBase) -> Iterator[ExpressionBase]:
    """Every sub-expression, whatever the node kind calls them (`left`, `container`, `item`, ...)."""
    slots = [slot for cls in type(node).__mro__ for slot in getattr(cls, "__slots__", ())]
    fields = {**{slot: getattr(node, slot, None) for slot in slots}, **getattr(node, "__dict__", {})}
    for name, value in fields.items():
        if name != "context":
            yield from _expressions(value, node)


def _expressions(value: object, parent: ExpressionBase) -> Iterator[ExpressionBase]:
    if isinstance(value, ExpressionBase):
        if value is not parent:
            yield value
    elif isinstance(value, list | tuple):  # array items; mapping items are (key, value) pairs
        for item in value:
            yield from _expressions(item, parent)


# -- the hot path: expressions as Python closures ----------------------------------------------------

Evaluator = Callable[[Mapping[str, Any]], Any]


def evaluator(rule: rule_engine.Rule) -> Evaluator:
    """`rule.evaluate` as Python closures, for the per-event path: the same values and errors.

    rule-engine walks its tree through a generic resolver (thread-local scopes, type checks, a
    recursive copy of every mapping a name reads, e.g. the whole `event`): ~20 µs a rule, several
    rules and derived tags an event. The closures do what its nodes do for the plain subset the
    topology uses (names, scalar literals, `== != < <= > >=`, `and or not`, `?:`, `a[b]`), and read
    a mapping only where an item is taken from it. Anything else (arithmetic, regexes, built-ins,
    attributes, comprehensions, typed names) keeps `rule.evaluate`. `tests/unit/test_expressions.py`
    checks both agree on generated expressions and values.

    >>> evaluator(compile_expression("views[category] == 3"))({"views": {"bags": 3}, "category": "bags"})
    True
    >>> arithmetic = compile_expression("views + 1")  # outside the subset: rule-engine's own
    >>> evaluator(arithmetic) == arithmetic.evaluate
    True
    """
    if rule.context is not _CONTEXT:  # typed (validation): rule-engine checks types as it reads
        return rule.evaluate
    try:
        compiled = _compile(rule.statement.expression, _CONTEXT.default_value)
    except _Unsupported:
        return rule.evaluate
    return lambda thing: _value(compiled(thing))


class _Unsupported(Exception):
    """A node outside the subset `evaluator` compiles."""


class _Raw:
    """A mapping or array as the caller holds it, not yet coerced (rule-engine coerces it whole
    where a name resolves to it; only items taken from it need coercing)."""

    __slots__ = ("raw",)

    def __init__(self, raw: Any):
        self.raw = raw


_SCALARS = (str, bool, type(None))
_Loader = Callable[..., Any]


def _coerce(value: Any, load: _Loader) -> Any:
    """What rule-engine's `_new_value(value, verify_type=False)` gives, mappings and arrays left raw.

    `load` is the node's own `_new_value` (it knows the context's time zone for naive datetimes)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return Decimal(value)
    if kind is float:
        return Decimal(repr(value))  # as rule-engine: the shortest repr, not the binary value
    if kind is dict or kind is list:
        return _Raw(value)
    return load(value, verify_type=False)


def _value(value: Any) -> Any:
    return coerce_value(value.raw, verify_type=False) if isinstance(value, _Raw) else value


def _truth(value: Any) -> bool:
    # A coerced mapping or array is as long as the raw one, so as true.
    return bool(value.raw) if isinstance(value, _Raw) else bool(value)


def _compile(node: ExpressionBase, default: Any) -> Callable[[Any], Any]:
    kind = type(node)
    if kind is SymbolExpression:
        if node.scope is not None or node.result_type != DataType.UNDEFINED:
            raise _Unsupported(node)
        name, load = node.name, node._new_value

        def symbol(thing: Any) -> Any:
            if isinstance(thing, Mapping) and name in thing:
                return _coerce(thing[name], load)
            return _coerce(default, load)

        return symbol
    if isinstance(node, re_ast.LiteralExpressionBase):
        if not node.result_type.is_scalar:
            raise _Unsupported(node)
        literal = node.value
        return lambda thing: literal
    if kind is re_ast.LogicExpression:
        left, right = _compile(node.left, default), _compile(node.right, default)
        if node.type == "and":
            return lambda thing: _truth(left(thing)) and _truth(right(thing))
        if node.type == "or":
            return lambda thing: _truth(left(thing)) or _truth(right(thing))
        raise _Unsupported(node)
    if kind is re_ast.ComparisonExpression:
        left, right = _compile(node.left, default), _compile(node.right, default)
        if node.type == "eq":
            return lambda thing: _equal(_value(left(thing)), _value(right(thing)))
        if node.type == "ne":
            return lambda thing: not _equal(_value(left(thing)), _value(right(thing)))
        raise _Unsupported(node)
    if kind is re_ast.ArithmeticComparisonExpression:
        op = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}.get(node.type)
        if op is None:
            raise _Unsupported(node)
        left, right = _compile(node.left, default), _compile(node.right, default)
        return lambda thing: _ordered(op, _value(left(thing)), _value(right(thing)))
    if kind is re_ast.TernaryExpression:
        condition = _compile(node.condition, default)
        case_true, case_false = _compile(node.case_true, default), _compile(node.case_false, default)
        return lambda thing: case_true(thing) if _truth(condition(thing)) else case_false(thing)
    if kind is re_ast.UnaryExpression and node.type == "not":
        right = _compile(node.right, default)
        return lambda thing: not _truth(right(thing))
    if kind is GetItemExpression and not node.safe:
        container, item = _compile(node.container, default), _compile(node.item, default)
        load = node._new_value
        return lambda thing: _item(container(thing), _value(item(thing)), load)
    raise _Unsupported(node)


def _equal(left: Any, right: Any) -> bool:
    """ComparisonExpression `==`: values of different types are never equal."""
    return type(left) is type(right) and left == right


def _ordered(op: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    """ArithmeticComparisonExpression: null against null, arrays item by item, else same types."""
    if left is None and right is None:
        return op in (operator.ge, operator.le)
    if isinstance(left, tuple) and isinstance(right, tuple):
        for sub_left, sub_right in zip(left, right, strict=False):
            if _ordered(operator.ne, sub_left, sub_right):
                return _ordered(op, sub_left, sub_right)
        if len(left) != len(right):
            return _ordered(op, len(left), len(right))
        return op in (operator.ge, operator.le)
    if type(left) is not type(right):
        raise errors.EvaluationError("data type mismatch")
    return op(left, right)


def _item(container: Any, item: Any, load: _Loader) -> Any:
    """GetItemExpression (not the safe `&[`)."""
    if isinstance(container, _Raw):
        raw = container.raw
        if isinstance(raw, dict) and isinstance(item, str):
            # A str key is itself once coerced, and no other key equals it: look it up raw.
            try:
                return _coerce(raw[item], load)
            except KeyError:
                raise errors.LookupError(coerce_value(raw, verify_type=False), item) from None
        if isinstance(raw, list | tuple):
            if not is_integer_number(item):
                raise errors.EvaluationError("data type mismatch (not an integer number)")
            try:
                return _coerce(raw[int(item)], load)
            except IndexError:
                raise errors.LookupError(coerce_value(raw, verify_type=False), item) from None
        container = coerce_value(raw, verify_type=False)
    if container is None:
        raise errors.EvaluationError("data type mismatch (container is null)")
    if isinstance(container, bytes | str | tuple):
        if not is_integer_number(item):
            raise errors.EvaluationError("data type mismatch (not an integer number)")
        item = int(item)
    try:
        value = operator.getitem(container, item)
    except (IndexError, KeyError):
        raise errors.LookupError(container, item) from None
    return _coerce(value, load)
