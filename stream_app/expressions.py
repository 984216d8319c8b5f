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

    Numbers stay Python `int`/`float` inside the closures where comparing them natively gives what
    rule-engine's Decimals give (`_number_pair`); the value returned is rule-engine's own (a
    Decimal for a number).

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
    # A dict (what the engines pass) takes one generated function; another mapping the closures.
    return _generate(rule.statement.expression, _CONTEXT.default_value, compiled)


class _Unsupported(Exception):
    """A node outside the subset `evaluator` compiles."""


class _Raw:
    """A mapping or array as the caller holds it, not yet coerced (rule-engine coerces it whole
    where a name resolves to it; only items taken from it need coercing)."""

    __slots__ = ("raw",)

    def __init__(self, raw: Any):
        self.raw = raw


_Loader = Callable[..., Any]
_SAFE_INT = 2**53
"""Integers up to this size are floats exactly, and their shortest repr is themselves."""
_NATIVE = frozenset({str, bool, type(None), int, float})
_NUMBERS = frozenset({int, float})


# Values inside the closures ("native"): str, bool, None, int, float as the caller holds them;
# `_Raw` for a dict or list; anything else already as rule-engine holds it (Decimal, datetime).
# rule-engine holds every number as a Decimal (a float as `Decimal(repr(x))`, its shortest repr).
# Comparing those Decimals orders them as the floats and ints themselves order, because a float's
# shortest repr rounds back to it (so repr order is float order), and an int of at most 2**53 is
# a float exactly, whose repr is itself. Beyond that (a huge int against a float, a NaN ordered,
# a Decimal literal no float equals) the closures compare rule-engine's values instead.


def _native(value: Any, load: _Loader) -> Any:
    """A value read from the caller's mapping, as the closures hold it.

    `load` is the node's own `_new_value` (it knows the context's time zone for naive datetimes)."""
    kind = type(value)
    if kind in _NATIVE:
        return value
    if kind is dict or kind is list:
        return _Raw(value)
    return load(value, verify_type=False)


def _engine_value(value: Any) -> Any:
    """What rule-engine holds for a native value (`_new_value(value, verify_type=False)`)."""
    kind = type(value)
    if kind is int:
        return Decimal(value)
    if kind is float:
        return Decimal(repr(value))  # as rule-engine: the shortest repr, not the binary value
    if kind is _Raw:
        return coerce_value(value.raw, verify_type=False)
    return value


def _native_literal(value: Any) -> Any:
    """A literal's Decimal as an int or float that compares as it does (else the Decimal)."""
    if type(value) is not Decimal or not value.is_finite():
        return value
    if value == value.to_integral_value() and abs(value) <= _SAFE_INT:
        return int(value)
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else value


def _number_pair(left: Any, right: Any) -> bool:
    """Both numbers that compare natively as rule-engine's Decimals of them compare."""
    kind_left, kind_right = type(left), type(right)
    if kind_left not in _NUMBERS or kind_right not in _NUMBERS:
        return False
    if kind_left is float and left != left or kind_right is float and right != right:
        return False  # NaN: Decimal('NaN') refuses to be ordered
    if kind_left is kind_right:
        return True
    whole = left if kind_left is int else right
    return -_SAFE_INT <= whole <= _SAFE_INT


def _truth(value: Any) -> bool:
    # A coerced mapping or array is as long as the raw one, so as true; a Decimal is as true as
    # the number it was made from.
    return bool(value.raw) if type(value) is _Raw else bool(value)


def _compile(node: ExpressionBase, default: Any) -> Callable[[Any], Any]:
    kind = type(node)
    if kind is SymbolExpression:
        if node.scope is not None or node.result_type != DataType.UNDEFINED:
            raise _Unsupported(node)
        name, load = node.name, node._new_value
        missing = _native(default, load)

        def symbol(thing: Any) -> Any:
            if type(thing) is dict:
                if name in thing:
                    return _native(thing[name], load)
                return missing
            if isinstance(thing, Mapping) and name in thing:
                return _native(thing[name], load)
            return missing

        return symbol
    if isinstance(node, re_ast.LiteralExpressionBase):
        if not node.result_type.is_scalar:
            raise _Unsupported(node)
        literal = node.value  # a result keeps rule-engine's own Decimal (`5000.0`, not `5000`)
        return lambda thing: literal
    if kind is re_ast.LogicExpression:
        left, right = _compile(node.left, default), _compile(node.right, default)
        if node.type == "and":
            return lambda thing: _truth(left(thing)) and _truth(right(thing))
        if node.type == "or":
            return lambda thing: _truth(left(thing)) or _truth(right(thing))
        raise _Unsupported(node)
    if kind is re_ast.ComparisonExpression:
        left, right = _operand(node.left, default), _operand(node.right, default)
        if node.type == "eq":
            return lambda thing: _equal_native(left(thing), right(thing))
        if node.type == "ne":
            return lambda thing: not _equal_native(left(thing), right(thing))
        raise _Unsupported(node)
    if kind is re_ast.ArithmeticComparisonExpression:
        op = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}.get(node.type)
        if op is None:
            raise _Unsupported(node)
        left, right = _operand(node.left, default), _operand(node.right, default)
        return lambda thing: _ordered_native(op, left(thing), right(thing))
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

        def get_item(thing: Any) -> Any:
            held = container(thing)
            if held is None:  # before the item is evaluated, as rule-engine does
                raise errors.EvaluationError("data type mismatch (container is null)")
            return _item_native(held, item(thing), load)

        return get_item
    raise _Unsupported(node)


def _operand(node: ExpressionBase, default: Any) -> Callable[[Any], Any]:
    """A side of a comparison: a number literal as the int or float it compares as."""
    if isinstance(node, re_ast.LiteralExpressionBase) and node.result_type.is_scalar:
        literal = _native_literal(node.value)
        return lambda thing: literal
    return _compile(node, default)


def _equal_native(left: Any, right: Any) -> bool:
    kind_left, kind_right = type(left), type(right)
    if kind_left in _NATIVE and kind_right in _NATIVE:
        if kind_left not in _NUMBERS or kind_right not in _NUMBERS:
            return kind_left is kind_right and left == right  # a number is never a str, bool, null
        if _number_pair(left, right):
            return bool(left == right)
    return _equal(_engine_value(left), _engine_value(right))


def _ordered_native(op: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    if _number_pair(left, right):
        return op(left, right)
    kind = type(left)
    if kind is type(right) and (kind is str or kind is bool):
        return op(left, right)
    return _ordered(op, _engine_value(left), _engine_value(right))


def _item_native(container: Any, item: Any, load: _Loader) -> Any:
    """GetItemExpression (not the safe `&[`): a str key of a raw dict read without coercing."""
    if type(container) is _Raw and type(item) is str:
        raw = container.raw
        if isinstance(raw, dict):
            try:
                return _native(raw[item], load)
            except KeyError:
                raise errors.LookupError(coerce_value(raw, verify_type=False), item) from None
    if type(container) is not _Raw:
        container = _engine_value(container)
    return _item(container, _engine_value(item), load)


# rule-engine's own semantics, on its own values (the slow path of the closures above).


def _coerce(value: Any, load: _Loader) -> Any:
    """What rule-engine's `_new_value(value, verify_type=False)` gives, mappings and arrays left raw."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return Decimal(value)
    if kind is float:
        return Decimal(repr(value))
    if kind is dict or kind is list:
        return _Raw(value)
    return load(value, verify_type=False)


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
    """GetItemExpression (not the safe `&[`) on rule-engine's values (a raw container kept raw)."""
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


# -- the hottest path: one generated Python function per expression -------------------------------
#
# The closures above cost a Python call per node and per helper. For a `dict` (what the tag and
# rule engines pass) `_generate` writes the same tree as one Python expression: a name is one
# `thing.get`, a comparison with a number or string literal is checked inline (the same
# `_number_pair` reasoning, decided at compile time for the literal's side), and every other case
# calls the very helpers the closures call, so both agree by construction where it is not inline.
# Temporaries are assignment expressions, so each sub-expression is evaluated once, in the order
# rule-engine evaluates it (a ternary's condition first, a container before its item).


class _Source:
    def __init__(self, default: Any):
        self.default = default
        self.names: dict[str, Any] = {
            "_NATIVE": _NATIVE,
            "_Raw": _Raw,
            "_native": _native,
            "_equal_native": _equal_native,
            "_ordered_native": _ordered_native,
            "_item_native": _item_native,
            "_null_container": _null_container,
        }
        self.count = 0

    def temp(self) -> str:
        self.count += 1
        return f"_t{self.count}"

    def constant(self, value: Any) -> str:
        name = f"_c{len(self.names)}"
        self.names[name] = value
        return name

    def truth(self, node: ExpressionBase) -> str:
        """`_truth` of the node's value, inline (a comparison or logic node is a bool already)."""
        code = self.value(node)
        if type(node) in _BOOLEAN_NODES:
            return code
        t = self.temp()
        return f"bool({t}.raw if type({t} := {code}) is _Raw else {t})"

    def value(self, node: ExpressionBase) -> str:
        kind = type(node)
        if kind is SymbolExpression:
            if node.scope is not None or node.result_type != DataType.UNDEFINED:
                raise _Unsupported(node)
            t = self.temp()
            load = self.constant(node._new_value)
            get = f"thing[{node.name!r}] if {node.name!r} in thing else {self.constant(self.default)}"
            return f"({t} if type({t} := ({get})) in _NATIVE else _native({t}, {load}))"
        if isinstance(node, re_ast.LiteralExpressionBase):
            if not node.result_type.is_scalar:
                raise _Unsupported(node)
            return self.constant(node.value)
        if kind is re_ast.LogicExpression and node.type in ("and", "or"):
            return f"({self.truth(node.left)} {node.type} {self.truth(node.right)})"
        if kind is re_ast.UnaryExpression and node.type == "not":
            return f"(not {self.truth(node.right)})"
        if kind is re_ast.TernaryExpression:
            condition = self.truth(node.condition)
            return f"({self.value(node.case_true)} if {condition} else {self.value(node.case_false)})"
        if kind is re_ast.ComparisonExpression and node.type in ("eq", "ne"):
            return self.equal(node.left, node.right, negate=node.type == "ne")
        if kind is re_ast.ArithmeticComparisonExpression and node.type in _ORDERS:
            return self.ordered(node.type, node.left, node.right)
        if kind is GetItemExpression and not node.safe:
            t = self.temp()
            item, load = self.value(node.item), self.constant(node._new_value)
            container = self.value(node.container)
            found = f"_item_native({t}, {item}, {load})"
            return f"({found} if ({t} := {container}) is not None else _null_container())"
        raise _Unsupported(node)

    def operand(self, node: ExpressionBase) -> tuple[str, Any]:
        """(code, the literal's native value or `_NOT_LITERAL`) of a comparison's side."""
        if isinstance(node, re_ast.LiteralExpressionBase) and node.result_type.is_scalar:
            literal = _native_literal(node.value)
            return self.constant(literal), literal
        return self.value(node), _NOT_LITERAL

    def equal(self, left_node: ExpressionBase, right_node: ExpressionBase, negate: bool) -> str:
        (left, literal_left), (right, literal) = self.operand(left_node), self.operand(right_node)
        if literal is _NOT_LITERAL and literal_left is not _NOT_LITERAL:
            left, right, literal = right, left, literal_left  # equality is symmetric here
        not_ = "not " if negate else ""
        if literal is None or type(literal) is bool:  # null, true, false: only itself equals it
            return f"({left} is {'not ' if negate else ''}{right})"
        t = self.temp()
        if type(literal) is str:
            fast = f"type({t} := {left}) is str"
        elif type(literal) is int and abs(literal) <= _SAFE_INT or type(literal) is float:
            fast = self.number_check(t, left, literal, nan_ok=True)
        else:
            return f"({not_}_equal_native({left}, {right}))"
        op = "!=" if negate else "=="
        return f"(({t} {op} {right}) if {fast} else ({not_}_equal_native({t}, {right})))"

    def ordered(self, op: str, left_node: ExpressionBase, right_node: ExpressionBase) -> str:
        (left, literal_left), (right, literal) = self.operand(left_node), self.operand(right_node)
        function = self.constant(_ORDERS[op])
        if literal is _NOT_LITERAL or literal_left is not _NOT_LITERAL:
            return f"_ordered_native({function}, {left}, {right})"
        t = self.temp()
        if type(literal) is str:
            fast = f"type({t} := {left}) is str"
        elif type(literal) is int and abs(literal) <= _SAFE_INT or type(literal) is float:
            fast = self.number_check(t, left, literal, nan_ok=False)
        else:
            return f"_ordered_native({function}, {left}, {right})"
        symbol = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[op]
        return f"(({t} {symbol} {right}) if {fast} else _ordered_native({function}, {t}, {right}))"

    def number_check(self, t: str, code: str, literal: int | float, nan_ok: bool) -> str:
        """Whether `t` (assigned `code`) compares natively with the literal (`_number_pair`)."""
        kind = self.temp()
        finite = "" if nan_ok else f" and {t} == {t}"
        if type(literal) is int:  # an int of at most 2**53 against any int, or a float
            return f"((({kind} := type({t} := {code})) is int) or ({kind} is float{finite}))"
        return (
            f"((({kind} := type({t} := {code})) is float{finite}) or "
            f"({kind} is int and {-_SAFE_INT} <= {t} <= {_SAFE_INT}))"
        )


_NOT_LITERAL = object()
_ORDERS = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}
_BOOLEAN_NODES = frozenset(
    {re_ast.ComparisonExpression, re_ast.ArithmeticComparisonExpression, re_ast.LogicExpression}
)


def _null_container() -> Any:
    raise errors.EvaluationError("data type mismatch (container is null)")


def _generate(node: ExpressionBase, default: Any, closures: Callable[[Any], Any]) -> Evaluator:
    source = _Source(default)
    try:
        body = source.value(node)
    except _Unsupported:  # (cannot happen: the closures compiled the same nodes)
        body = None
    names = {**source.names, "_closures": closures, "_engine_value": _engine_value}
    code = (
        "def evaluate(thing):\n"
        "    value = _closures(thing) if type(thing) is not dict else "
        f"{body if body is not None else '_closures(thing)'}\n"
        "    kind = type(value)\n"
        "    if kind is bool or kind is str or value is None:  # most results: nothing to convert\n"
        "        return value\n"
        "    return _engine_value(value)\n"
    )
    exec(compile(code, "<expression>", "exec"), names)  # noqa: S102 - our own code, from the tree
    evaluate: Evaluator = names["evaluate"]
    return evaluate
