"""The shape of a decoded message, checked before anything recursive reads it.

orjson parses up to 1024 levels of nesting; the schema validator (its error messages call `repr`)
and the property redaction recurse, and would die on such a document with a RecursionError. So
the depth and size are bounded first, without recursion: on a typical event by counting brackets
and commas in the raw bytes (a nesting level needs a `{` or `[`, a value a `,` or a bracket), and
only when those counts allow a problem by an exact, iterative walk.

Duplicate keys in one object (`{"member_id": "A", "member_id": "B"}`) are refused: orjson keeps
the last, another reader of the same bytes may keep the first (RFC 8259 leaves it open, I-JSON,
RFC 7493, forbids them), and last-wins would silently drop an identifier. orjson cannot report
them, so the check counts instead of re-parsing: every `:` in the raw bytes is a name separator
(one per key occurrence) or inside a string. orjson writes the decoded document back with one `:`
per key it kept and every colon of every string it kept, so without duplicates the two counts are
equal, and a duplicate makes the raw count higher (its key at least is gone). Only `\\u003a`, a
colon written as an escape, breaks the count; such a message takes the exact, slower path.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_ESCAPED_COLONS = (b"\\u003a", b"\\u003A")
_ENCODE_BELOW = 8192


def shape_problem(
    raw: bytes, document: Any, max_properties_depth: int, max_properties_values: int
) -> str | None:
    """Why the document is too deep or too big (`field: problem`), or None.

    Depth counts containers: `properties` itself is level 1; every other top-level field is held
    to the same bound (none of them may nest at all: the schema says why, afterwards).

    >>> raw = b'{"properties": {"a": {"b": 1}}}'
    >>> shape_problem(raw, orjson.loads(raw), 2, 10) is None
    True
    >>> shape_problem(raw, orjson.loads(raw), 1, 10)
    'properties: nested deeper than 1 levels'
    """
    opens = raw.count(b"{") + raw.count(b"[")
    if opens <= max_properties_depth + 1 and opens + raw.count(b",") + 1 <= max_properties_values:
        return None  # (brackets and commas inside strings only make these counts larger)
    if not isinstance(document, dict):
        return _walk(document, "(event)", max_properties_depth, None)
    for name, value in document.items():
        if isinstance(value, dict | list):
            limit = max_properties_values if name == "properties" else None
            problem = _walk(value, name, max_properties_depth, limit)
            if problem:
                return problem
    return None


def _walk(value: dict[str, Any] | list[Any], name: str, max_depth: int, max_values: int | None) -> str | None:
    values = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return f"{name}: nested deeper than {max_depth} levels"
        children = item.values() if isinstance(item, dict) else item
        values += len(children)
        if max_values is not None and values > max_values:
            return f"{name}: more than {max_values} values"
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return None


def duplicate_key(raw: bytes, document: Any, encode_below: int = _ENCODE_BELOW) -> str | None:
    """The first key repeated within one object, or None. Call after `shape_problem`.

    Messages under `encode_below` bytes are counted on orjson's encoding (fast); larger ones by a
    walk, because orjson's encoder holds ~30 bytes of memory per byte it writes.

    >>> duplicate_key(b'{"a": {"k": 1, "k": 2}}', {"a": {"k": 2}})
    'k'
    >>> duplicate_key(b'{"a": "x:y"}', {"a": "x:y"}) is None
    True
    """
    if _ESCAPED_COLONS[0] not in raw and _ESCAPED_COLONS[1] not in raw:
        kept = orjson.dumps(document).count(b":") if len(raw) < encode_below else _colons(document)
        if raw.count(b":") == kept:
            return None
    return _first_duplicate(raw)


def _colons(document: Any) -> int:
    """The `:` an encoding of the document holds: one per key, plus those inside its strings."""
    count = 0
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            count += item.count(":")
        elif isinstance(item, dict):
            count += len(item) + sum(key.count(":") for key in item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


class _Duplicate(Exception):
    def __init__(self, key: str):
        self.key = key


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen[key] = value
    return seen


def _first_duplicate(raw: bytes) -> str | None:
    """Exact and slow (stdlib json, a hook per object); only for messages the count cannot clear.

    The one use of the stdlib json in ingest: orjson has no hook that sees an object's key pairs
    before it keeps the last. None of the sample generator's 5,853 lines (2,000 people) comes here.

    Safe to recurse: `shape_problem` has bounded the depth before.
    """
    try:
        json.loads(raw, object_pairs_hook=_reject_duplicates)
    except _Duplicate as found:
        return found.key
    except ValueError:  # orjson read it and the stdlib does not: refuse rather than guess
        return "(the check could not read the message)"
    return None
