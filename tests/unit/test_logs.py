"""Worker log lines: JSON when asked, and phones and emails masked in messages and tracebacks."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from stream_app import logs
from stream_app.sample import generate

DAY = generate(people=300, days=1, seed=11)


def _identities(kind: str) -> set[str]:
    """Every `kind` value of the generated input as the producers spelled it (junk left out)."""
    found = set()
    for line in DAY.lines:
        try:
            event = orjson.loads(line)
            value = event["identities"].get(kind)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            continue
        digits = {c for c in str(value) if c.isdigit()}
        if isinstance(value, str) and (kind != "phone" or len(digits) > 1):  # 11111111111 is junk
            found.add(value.strip())
    return found


PHONES, EMAILS = _identities("phone"), _identities("email")


def test_every_phone_and_email_spelling_of_the_input_is_masked():
    assert len(PHONES) > 50 and len(EMAILS) >= 5
    assert {p for p in PHONES if " " in p or "-" in p or p.startswith(("+", "00"))}  # the spellings
    for value in PHONES | EMAILS:
        masked = logs.redact(f"refused link ({value}), see {value}.")
        assert value not in masked and masked.count("<") == 2, (value, masked)


@pytest.mark.parametrize(
    "kept",
    [
        "offset 13800138000123 of partition 3",
        "at 1796146067792 ms",
        "p_0123456789abcdef",
        "order O13800138000",
    ],
)
def test_offsets_timestamps_and_ids_stay_readable(kept):
    assert logs.redact(kept) == kept


def _logger(log_format: str) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logs.apply(handler, log_format)
    logger = logging.getLogger(f"test-logs-{log_format}")
    logger.handlers, logger.propagate = [handler], False
    return logger, out


def _fail_with(phone: str, email: str) -> None:
    raise ValueError(f"cannot link {phone} to {email}")


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_traceback_is_kept_and_masked(log_format):
    phone, email = sorted(PHONES)[0], sorted(EMAILS)[0]
    logger, out = _logger(log_format)
    try:
        _fail_with(phone, email)
    except ValueError:
        logger.exception("event %s failed for %s", "e-1", email)
    text = out.getvalue()
    assert phone not in text and email not in text
    if log_format == "json":
        [line] = text.splitlines()
        record = orjson.loads(line)
        assert record["level"] == "ERROR" and record["logger"] == "test-logs-json"
        assert record["message"] == "event e-1 failed for <email>"
        traceback = record["exc_info"]
    else:
        assert text.startswith("ERROR event e-1 failed for <email>\nTraceback (most recent call last):")
        traceback = text
    assert "in _fail_with" in traceback  # the frames are kept
    assert traceback.rstrip().endswith("ValueError: cannot link <phone> to <email>")
