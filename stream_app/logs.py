"""Worker log lines: text (Faust's format) or JSON (one object per line, `STREAM_APP_LOG_FORMAT=json`),
and in both, phone numbers and emails masked, in messages and in tracebacks alike.

The code never logs an event's identifiers on purpose; the mask is for what it does not control: an
exception message that quotes a value, a library that logs a record. Tracebacks are kept (they are
how a crash gets fixed), masked the same way.

    >>> redact("no owner for phone +86 138-0013-8000 or Li.Wei@Example.com")
    'no owner for phone <phone> or <email>'
"""

from __future__ import annotations

import logging
import re
import traceback

from pythonjsonlogger.json import JsonFormatter

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PHONE = re.compile(
    r"(?<![\w+])"
    r"(?:"
    r"(?:\+|00)\s?\d{1,3}[\s-]?\d(?:[\s-]?\d){6,13}"  # international: +86 138..., 0086 138..., +1 415...
    r"|1[3-9]\d(?:[\s-]?\d){8}"  # a Chinese mobile number, also spelled 138 0013 8000 / 138-0013-8000
    r")"
    r"(?![\w])"
)
"""Deliberately not any long run of digits: offsets and epoch milliseconds stay readable."""

JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"


def redact(text: str) -> str:
    return PHONE.sub("<phone>", EMAIL.sub("<email>", text))


class RedactPii(logging.Filter):
    """On a handler: renders the message and the traceback once, masked, before any formatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):  # a record passes every handler's filter
            return True
        record.msg, record.args = redact(record.getMessage()), ()
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
            record.exc_info = None  # formatters use exc_text; never the raw exception again
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._redacted = True
        return True


class _Json(JsonFormatter):
    def formatException(self, ei: object) -> str:  # noqa: N802 - logging's name
        return redact(super().formatException(ei))  # type: ignore[arg-type]


def json_formatter() -> logging.Formatter:
    """`{"asctime", "level", "logger", "process", "message"[, "exc_info"]}` per line."""
    formatter = _Json(JSON_FIELDS, rename_fields={"levelname": "level", "name": "logger"})
    return formatter


def apply(handler: logging.Handler, log_format: str) -> None:
    """Mask PII on `handler`, and give it the JSON formatter if asked."""
    if not any(isinstance(f, RedactPii) for f in handler.filters):
        handler.addFilter(RedactPii())
    if log_format == "json":
        handler.setFormatter(json_formatter())
