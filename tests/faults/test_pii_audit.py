"""PII audit: after a pipeline run, no raw phone or email from the input is anywhere we keep data.

Needles: every phone and email the input carried, as written (each spelling), trimmed, in E.164
and as the 11 national digits; emails as written and lower-cased. Haystacks: every record (key,
value, headers) of every topic of the run except the input itself (outputs, DLQ, internal and
Faust changelog topics), the raw bytes of every file under the workers' data directories (RocksDB
SST, WAL and MANIFEST files among them) and every RocksDB value read back through rocksdict
(SST blocks may be compressed), the worker and broker logs, and `/metrics`.

Positive control: the same scan finds every needle on the input topic, where they legitimately are.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import orjson
import pytest
import rocksdict
from confluent_kafka.admin import AdminClient

from stream_app.io.kafka import iter_topics
from stream_app.sample import generate
from tests.faults.verifier import InputRules

pytestmark = pytest.mark.integration

DAY = generate(people=300, days=2, seed=41, malformed_rate=0.02)


def _extra_lines() -> list[bytes]:
    """PII where producers should not put it: free text, and lines the DLQ must keep redacted."""
    base = {"event_type": "login", "occurred_at": "2026-11-22T09:00:00+08:00", "channel": "app"}
    return [
        orjson.dumps({**base, "event_id": "pii-1", "identities": {"member_id": "MP1"},
                      "properties": {"note": "call 13987654321 or mail Zoe.Li@Example.com"}}),
        orjson.dumps({**base, "event_id": "pii-2", "identities": {"phone": "+86 137-1111-2222"},
                      "properties": {"amount": -1}}),  # schema violation: to the DLQ
        b'{"event_id": "pii-3", "identities": {"phone": "0086 13655556666", "email": "Al@qq.com"',  # cut
        orjson.dumps({**base, "event_id": "pii-4", "occurred_at": "yesterday",
                      "identities": {"email": " Bo.Wang@163.com ", "phone": "13522223333"}}),
    ]  # fmt: skip


LINES = DAY.lines + _extra_lines()
_PHONE_IN_TEXT = re.compile(r"(?<![\d+])(?:\+86|0086)?[\s-]?1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}(?!\d)")
_EMAIL_IN_TEXT = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def needles(lines: Iterable[bytes], rules: InputRules) -> dict[bytes, str]:
    """Every spelling of every valid phone and email the input carried, as it could leak, with
    how it was found (`written`) or derived (`e164`, `national`, `lower`).

    Identifiers are taken as declared; free text (properties, lines that are not JSON) is searched
    (not order numbers or device ids, whose digits are no one's phone).
    """
    phones: set[str] = set()
    emails: set[str] = set()
    for line in lines:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            doc, texts = {}, [line.decode("utf-8", "replace")]
        else:
            texts = list(_strings(doc.get("properties", {}))) if isinstance(doc, dict) else []
        ids = doc.get("identities") if isinstance(doc, dict) else None
        if isinstance(ids, dict):
            phones.add(str(ids.get("phone", "")))
            emails.add(str(ids.get("email", "")))
        for text in texts:
            phones.update(_PHONE_IN_TEXT.findall(text))
            emails.update(_EMAIL_IN_TEXT.findall(text))
    found: dict[str, str] = {}
    for raw in phones:
        e164 = rules.normalise("phone", raw)
        if e164 is not None:
            found |= {e164: "e164", e164[3:]: "national"}
    for raw in emails:
        if rules.normalise("email", raw) is not None:
            found[raw.strip().lower()] = "lower"
    for raw in phones | emails:
        if rules.normalise("phone", raw) or rules.normalise("email", raw):
            found[raw.strip()] = "written"
    return {n.encode(): kind for n, kind in found.items()}


def leaks(haystack: bytes, wanted: Iterable[bytes]) -> set[bytes]:
    return {n for n in wanted if n in haystack}


def _topics_of(bootstrap: str, prefixes: tuple[str, ...], skip: str) -> list[str]:
    names = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    return sorted(n for n in names if n.startswith(prefixes) and n != skip)


def _record_bytes(bootstrap: str, topics: list[str]) -> dict[str, bytes]:
    out: dict[str, list[bytes]] = {t: [] for t in topics}
    for r in iter_topics(bootstrap, topics):
        out[r.topic] += [r.key or b"", r.value or b"", *(k.encode() + (v or b"") for k, v in r.headers)]
    return {t: b"\n".join(parts) for t, parts in out.items()}


def _rocksdb_values(root: Path) -> dict[str, bytes]:
    """Every key and value of every RocksDB under `root`, decompressed by RocksDB itself."""
    found: dict[str, bytes] = {}
    for current in sorted(root.rglob("CURRENT")):
        db = rocksdict.Rdict(
            str(current.parent),
            options=rocksdict.Options(raw_mode=True),
            access_type=rocksdict.AccessType.read_only(),
        )
        try:
            found[str(current.parent)] = b"\n".join(k + b"=" + v for k, v in db.items())
        finally:
            db.close()
    return found


def test_no_raw_phone_or_email_anywhere_after_a_run(env, broker):
    topo = env.topology
    rules = InputRules.from_topology(topo, env.settings.pii_key.get_secret_value())
    wanted = needles(LINES, rules)
    assert len(wanted) > 200 and any(b"@" in n for n in wanted) and any(b"-" in n for n in wanted), (
        "the population should carry phones and emails in many spellings"
    )
    with env.local_run() as run:
        run.start_worker(1)
        run.wait_ready(1)
        run.stream_events(LINES)
        run.finish_input(close_event_time=True, timeout=180)
        metrics = b"".join(
            urllib.request.urlopen(f"http://127.0.0.1:{run.web_ports[i]}/metrics", timeout=10).read()
            for i in (0, 1)
        )
        prefix = topo.topics.touchpoints.name.removesuffix("touchpoints")
        topics = _topics_of(run.bootstrap, (prefix, env.settings.app_id), topo.topics.touchpoints.name)
        by_topic = _record_bytes(run.bootstrap, topics)
        control = _record_bytes(run.bootstrap, [topo.topics.touchpoints.name])
    # The workers have stopped: their RocksDB files are closed and complete.
    files = {str(p): p.read_bytes() for p in sorted(run.run_dir.rglob("*")) if p.is_file()}
    rocks = _rocksdb_values(run.run_dir)
    logs = {str(run.worker_log_of(i)): run.worker_log_of(i).read_bytes() for i in (0, 1)}
    logs[str(broker.log_path)] = Path(broker.log_path).read_bytes()

    written = {n for n, kind in wanted.items() if kind == "written"}
    assert leaks(control[topo.topics.touchpoints.name], written) == written, "the scan must see raw input"
    assert {t.name for t in topo.output_topics()} <= set(by_topic), sorted(by_topic)
    assert any("changelog" in t for t in by_topic), sorted(by_topic)
    assert any(n.endswith((".sst", ".log")) for n in files) and len(rocks) >= 4, (
        sorted(files),
        sorted(rocks),
    )
    assert all(by_topic[t.name] for t in (topo.topics.resolved, topo.topics.dlq, topo.topics.profile_updates))
    # The state was read, not just found: the identity tables hold the phones' keyed hashes.
    hashed = {
        rules.key("phone", n.decode()).split(":", 1)[1].encode() for n, k in wanted.items() if k == "e164"
    }
    state = b"".join(rocks.values())
    assert sum(h in state for h in hashed) > 0.5 * len(hashed)
    print(
        f"\nPII audit: {len(wanted)} needles; {len(by_topic)} topics, {len(files)} files "
        f"({sum(map(len, files.values()))} bytes), {len(rocks)} RocksDB, {len(logs)} logs, "
        f"{len(metrics)} bytes of /metrics"
    )
    found = {
        where: sorted(hits)[:3]
        for where, data in [
            *by_topic.items(),
            *files.items(),
            *rocks.items(),
            *logs.items(),
            ("/metrics", metrics),
        ]
        if (hits := leaks(data, wanted))
    }
    assert not found, f"raw PII found in {len(found)} places: {found}"
