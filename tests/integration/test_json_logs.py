"""A worker's log with STREAM_APP_LOG_FORMAT=json: every line one JSON object, no raw phone or email
of its input in any of them."""

from __future__ import annotations

import orjson
import pytest

from stream_app.runner import LocalRun
from stream_app.sample import generate

pytestmark = pytest.mark.integration

DAY = generate(people=60, days=1, seed=5)


def _raw_pii(lines: list[bytes]) -> set[str]:
    """Phones (as spelled and as bare digits) and emails of the input, junk values left out."""
    found = set()
    for line in lines:
        try:
            ids = orjson.loads(line)["identities"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
        if not isinstance(ids, dict):
            continue
        for kind in ("phone", "email"):
            value = ids.get(kind)
            if isinstance(value, str) and len({c for c in value if c.isalnum()}) > 1:
                found.add(value.strip())
                if kind == "phone":
                    found.add("".join(c for c in value if c.isdigit())[-11:])
                else:
                    found.add(value.strip().lower())
    return found


def _parses(line: str) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def test_a_worker_run_logs_json_lines_without_raw_pii(make_env):
    env = make_env()
    settings = env.settings.model_copy(update={"log_format": "json", "log_level": "debug"})
    pii = _raw_pii(DAY.lines)
    assert len(pii) > 20
    with LocalRun(settings, env.topology) as run:
        run.stream_events(DAY.lines)
        run.finish_input(close_event_time=True, timeout=300)
        log = run.worker_log
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert not [line for line in lines if not _parses(line)][:3]  # every line parses
    records = [orjson.loads(line) for line in lines]
    assert len(records) > 20 and all({"asctime", "level", "logger", "message"} <= r.keys() for r in records)
    assert any(r["logger"].startswith("faust") for r in records)  # Faust's own lines too
    assert any(r["level"] == "DEBUG" for r in records)
    leaks = [line for line in lines if any(value in line for value in pii)]
    assert not leaks[:3]
