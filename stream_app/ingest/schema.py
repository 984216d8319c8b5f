"""The input contract, `schemas/touchpoint.v1.json`, compiled once (JSON Schema draft 2020-12)."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator, FormatChecker

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "touchpoint.v1.json"
_MAX_ERRORS = 5
_MAX_MESSAGE = 200
_MAX_SORTED = 100


def parse_event_time(value: str) -> datetime:
    """RFC 3339 timestamp with an offset as an aware datetime; ValueError otherwise."""
    parsed = datetime.fromisoformat(value.upper())
    if parsed.tzinfo is None:
        raise ValueError("no UTC offset")
    return parsed


_formats = FormatChecker(formats=())


@_formats.checks("date-time", raises=ValueError)
def _is_datetime(value: object) -> bool:
    return not isinstance(value, str) or bool(parse_event_time(value))


def _schema_file() -> Path:
    # From a checkout the repo's schemas/ is beside the package; an installed package (the Docker
    # image) finds it in the working directory.
    return SCHEMA_PATH if SCHEMA_PATH.exists() else Path.cwd() / "schemas" / SCHEMA_PATH.name


@cache
def touchpoint_validator() -> Draft202012Validator:
    schema = orjson.loads(_schema_file().read_bytes())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=_formats)


def schema_problems(document: Any) -> list[str]:
    """Human-readable schema violations, `path: message`, first few by place in the document.

    A message that would quote a long value (`'xxx…' is too long`) names the failed keyword
    instead, so a 1 MB value does not make a 1 MB DLQ detail.
    """
    # Lazily, a bounded number: 10,000 unknown identifier types made 10,000 errors (30 MB).
    found = islice(touchpoint_validator().iter_errors(document), _MAX_SORTED)
    errors = sorted(found, key=lambda e: [str(p) for p in e.path])
    problems = []
    for error in errors[:_MAX_ERRORS]:
        where = "/".join(str(p) for p in error.absolute_path)[:_MAX_MESSAGE] or "(event)"
        message = error.message
        if len(message) > _MAX_MESSAGE:
            message = f"fails {error.validator} {str(error.validator_value)[:_MAX_MESSAGE]}"
        problems.append(f"{where}: {message}")
    return problems
