"""Expressions in `topology.yaml` (derived tags, rule conditions): rule-engine, one way everywhere.

Names resolve as mapping items (tag values, `event['store_id']`), and a missing name reads as null
instead of failing, so one compiler serves evaluation at run time. Validation at load compiles the
same text with the names that will exist (and their types): rule-engine then refuses an unknown
name or a type mismatch at compile time, which at run time would only make a condition never hold.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import rule_engine
from rule_engine import DataType
from rule_engine.ast import ExpressionBase, GetAttributeExpression, GetItemExpression, SymbolExpression

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
