"""`stream-app run` as a user runs it: its own embedded broker, a worker process, and a clean exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from stream_app.config import load_topology
from stream_app.config.topology import TopicSpec
from stream_app.ingest import Accepted, Ingestor, PiiHasher
from stream_app.io.kafka import ensure_topics
from stream_app.io.urls import bootstrap_servers
from stream_app.sample import generate
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc (children first seen, then theirs)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pids: set[int], timeout: float = 20.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    return {p for p in pids if _alive(p)}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "stream_app", *args]


def test_run_once_writes_every_output_topic(tmp_path):
    day = generate(people=60, days=1, seed=5)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in day.lines))
    dump_dir = tmp_path / "out"
    env = dict(os.environ, STREAM_APP_DATA_DIR=str(tmp_path / "data"), STREAM_APP_PII_KEY="k")
    result = subprocess.run(
        _cli("run", "--events", str(events), "--once", "--dump-dir", str(dump_dir)),
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]

    topo = load_topology(REPO / "topology.yaml")
    expected_files = {f"{s.name}.jsonl" for s in topo.output_topics()}
    assert {p.name for p in dump_dir.iterdir()} == expected_files

    ingestor = Ingestor.from_topology(topo, PiiHasher(b"k"))
    outcomes = [ingestor.process(line) for line in day.lines]
    accepted_ids = {o.event_id for o in outcomes if isinstance(o, Accepted)}
    rejected = [o for o in outcomes if not isinstance(o, Accepted)]

    def lines_of(topic: str) -> list[dict]:
        text = (dump_dir / f"{topic}.jsonl").read_bytes()
        return [orjson.loads(line) for line in text.splitlines()]

    resolved = lines_of(topo.topics.resolved.name)
    assert sorted(e["event_id"] for e in resolved) == sorted(accepted_ids)
    assert all(e["one_id"].startswith("p_") for e in resolved)
    dlq = lines_of(topo.topics.dlq.name)
    assert sorted(d["reason"] for d in dlq) == sorted(r.reason for r in rejected)
    assert rejected, "the generated day should contain malformed lines"
    # stdout is a pipe here: the summary comes as JSON there, not as a table
    summary = orjson.loads(result.stdout)
    assert summary["messages_in"] == len(day.lines)
    assert summary["records_out"][topo.topics.dlq.name] == len(dlq)
    reasons = [r.reason for r in rejected]
    assert summary["dlq_reasons"] == {reason: reasons.count(reason) for reason in sorted(set(reasons))}


@pytest.mark.parametrize("how", ["ctrl-c", "ctrl-c-while-processing", "parent-killed"])
def test_no_process_is_left_behind(tmp_path, how):
    env = dict(os.environ, STREAM_APP_DATA_DIR=str(tmp_path / "data"))
    args = ["run"]
    wait_for = b"Ctrl-C stops"
    if how == "ctrl-c-while-processing":
        events = tmp_path / "events.jsonl"
        events.write_bytes(b"".join(line + b"\n" for line in generate(people=300, seed=2).lines))
        args += ["--events", str(events)]
        wait_for = b"streaming"
    cli = subprocess.Popen(
        _cli(*args),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # As a script's background job: started with SIGINT ignored; the CLI must still obey it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    output = b""
    deadline = time.monotonic() + 60
    assert cli.stdout is not None
    while wait_for not in output and time.monotonic() < deadline:
        output += cli.stdout.read1(4096)
    assert wait_for in output, output.decode()
    children = _descendants(cli.pid)
    assert len(children) >= 2, "expected the broker and a worker"
    if how.startswith("ctrl-c"):
        cli.send_signal(signal.SIGINT)
        assert cli.wait(30) == 0
    else:
        cli.kill()
        cli.wait(10)
    assert _wait_gone(children) == set()


def test_broker_produce_consume_commands(tmp_path):
    env = dict(os.environ, STREAM_APP_DATA_DIR=str(tmp_path / "data"))
    broker = subprocess.Popen(
        _cli("broker"), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert broker.stdout is not None
        url = broker.stdout.readline().decode().strip()
        assert url.startswith("tansu://127.0.0.1:"), url
        lines = [orjson.dumps({"n": n}) for n in range(25)]
        source = tmp_path / "in.jsonl"
        source.write_bytes(b"\n".join(lines) + b"\n")
        produced = subprocess.run(
            _cli("produce", str(source), "--broker", url, "--topic", "scratch"),
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=60,
        )
        # The topic does not exist: the producer says so at once instead of waiting for it.
        assert produced.returncode == 1
        assert b"topic 'scratch' does not exist" in produced.stderr
        ensure_topics(bootstrap_servers(url), [TopicSpec(name="touchpoints", partitions=3)])
        subprocess.run(
            _cli("produce", str(source), "--broker", url),
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        consumed = subprocess.run(
            _cli(
                "consume",
                "touchpoints",
                "--broker",
                url,
                "--from-beginning",
                "--max",
                "20",
                "--timeout",
                "10",
            ),
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=60,
            check=True,
        )
        got = [orjson.loads(line) for line in consumed.stdout.splitlines()]
        assert len(got) == 20 and {g["n"] for g in got} <= set(range(25))
    finally:
        broker.send_signal(signal.SIGTERM)
        assert broker.wait(20) == 0
