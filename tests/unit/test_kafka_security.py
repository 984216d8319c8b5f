"""Kafka security settings: validated at load, and the same settings in every client's config.

No broker: each client family's config is built as the code builds it (the client classes replaced
by recorders where building one would connect) and read back. The expected values are the
settings given, spelled as each library names them.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiokafka
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from typer.testing import CliRunner

import stream_app.io.kafka as kafka_io
from stream_app.config import load_topology
from stream_app.config.settings import KafkaSecurity, Settings, SettingsError, load_settings
from stream_app.config.topology import TopicSpec
from stream_app.io.security import aiokafka_config, confluent_config, faust_config
from tests.unit.test_topology import REPO

PASSWORD = "pw-7c1e9f-never-log-me"
KEY_PASSWORD = "keypw-44a0d2-never-log-me"
TOPOLOGY = load_topology(REPO / "topology.yaml")


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed certificate (it serves as the CA too) and its key, encrypted with KEY_PASSWORD."""
    home = tmp_path_factory.mktemp("pem")
    cert, key = home / "client.pem", home / "client.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", "1", "-subj", "/CN=stream-app-test",
         "-keyout", str(key), "-out", str(cert), "-passout", f"pass:{KEY_PASSWORD}"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return {"ca": cert, "cert": cert, "key": key}


def _env(monkeypatch: pytest.MonkeyPatch, **values: str | Path) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"STREAM_APP_KAFKA_{name.upper()}", str(value))


def _sasl_ssl(monkeypatch: pytest.MonkeyPatch, pem: dict[str, Path], mechanism: str) -> Settings:
    _env(
        monkeypatch,
        security_protocol="SASL_SSL",
        sasl_mechanism=mechanism,
        sasl_username="stream-app",
        sasl_password=PASSWORD,
        ssl_ca_file=pem["ca"],
        ssl_cert_file=pem["cert"],
        ssl_key_file=pem["key"],
        ssl_key_password=KEY_PASSWORD,
    )
    return load_settings(broker="kafka://kafka-1:9093")


# -- validation at load ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_password": "x"},
            ["STREAM_APP_KAFKA_SASL_USERNAME: required with "
             "STREAM_APP_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT"],
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": "x"},
            ["STREAM_APP_KAFKA_SASL_MECHANISM: required with STREAM_APP_KAFKA_SECURITY_PROTOCOL=SASL_SSL"],
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "sasl_username": "u"},
            ["STREAM_APP_KAFKA_SASL_MECHANISM: Input should be 'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'"],
        ),
        (
            {"sasl_username": "u"},
            ["STREAM_APP_KAFKA_SASL_USERNAME: set, but STREAM_APP_KAFKA_SECURITY_PROTOCOL=PLAINTEXT "
             "does not use SASL"],
        ),
        (
            {"security_protocol": "SSL", "ssl_ca_file": "/nonexistent/ca.pem"},
            ["STREAM_APP_KAFKA_SSL_CA_FILE: no such file: /nonexistent/ca.pem"],
        ),
        (
            {"security_protocol": "tls"},
            ["STREAM_APP_KAFKA_SECURITY_PROTOCOL: Input should be 'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' "
             "or 'SASL_SSL'"],
        ),
    ],
)  # fmt: skip
def test_an_invalid_combination_fails_at_load_naming_the_setting(monkeypatch, env, expected):
    _env(monkeypatch, **env)
    with pytest.raises(SettingsError) as refused:
        load_settings(broker="kafka://k:9092")
    assert refused.value.problems == expected


def test_a_certificate_without_its_key_and_tls_settings_without_tls_are_refused(monkeypatch, pem):
    _env(monkeypatch, security_protocol="SSL", ssl_cert_file=pem["cert"])
    with pytest.raises(SettingsError) as refused:
        load_settings(broker="kafka://k:9092")
    assert refused.value.problems == [
        "STREAM_APP_KAFKA_SSL_KEY_FILE: required with STREAM_APP_KAFKA_SSL_CERT_FILE (mutual TLS needs both)"
    ]
    monkeypatch.setenv("STREAM_APP_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    _env(monkeypatch, sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p", ssl_key_file=pem["key"])
    with pytest.raises(SettingsError) as refused:
        load_settings(broker="kafka://k:9092")
    assert refused.value.problems == [
        f"STREAM_APP_KAFKA_{name}: set, but STREAM_APP_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT "
        "does not use TLS"
        for name in ("SSL_CERT_FILE", "SSL_KEY_FILE")
    ]


def test_security_with_the_embedded_broker_is_refused(monkeypatch):
    _env(monkeypatch, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u",
         sasl_password="p")  # fmt: skip
    for broker in (None, "tansu://127.0.0.1:9092"):
        with pytest.raises(SettingsError, match="^STREAM_APP_KAFKA_SECURITY_PROTOCOL: SASL_PLAINTEXT needs"):
            load_settings(broker=broker)
    assert load_settings(broker="kafka://k:9092").kafka.sasl_username == "u"


def test_plaintext_by_default_adds_nothing_to_any_client():
    settings = Settings(broker="kafka://k:9092")
    assert settings.kafka.security_protocol == "PLAINTEXT"
    assert confluent_config(settings.kafka) == {}
    assert faust_config(settings.kafka) == {}
    assert aiokafka_config(settings.kafka) == {"security_protocol": "PLAINTEXT"}


# -- every client gets them -----------------------------------------------------------------------


class Recorded(Exception):
    """Raised by a recorder once a client is built: whatever would connect stops there."""


class Recorder:
    """Stands in for a client class: keeps the config it was built with, refuses to be used."""

    built: list[dict[str, Any]]

    def __init__(self, conf: dict[str, Any] | None = None, **kwargs: Any):
        type(self).built.append(dict(conf or {}, **kwargs))

    def __getattr__(self, name: str) -> Any:
        raise Recorded(name)

    def assign(self, *args: Any) -> None:
        """aiokafka's assign and seek are not I/O; start() is."""

    def seek(self, *args: Any) -> None:
        pass


def _recorder() -> type[Recorder]:
    return type("Client", (Recorder,), {"built": []})


def _confluent_expected(mechanism: str, pem: dict[str, Path]) -> dict[str, str]:
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": mechanism,
        "sasl.username": "stream-app",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(pem["ca"]),
        "ssl.certificate.location": str(pem["cert"]),
        "ssl.key.location": str(pem["key"]),
        "ssl.key.password": KEY_PASSWORD,
        "ssl.endpoint.identification.algorithm": "https",
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_every_confluent_client_gets_the_security_settings(monkeypatch, pem, mechanism, tmp_path):
    from stream_app.runner import LocalRun
    from stream_app.worker.app import Pipeline

    monkeypatch.setenv("STREAM_APP_DATA_DIR", str(tmp_path))
    settings = _sasl_ssl(monkeypatch, pem, mechanism)
    expected = _confluent_expected(mechanism, pem)
    admin, producer, consumer = _recorder(), _recorder(), _recorder()
    monkeypatch.setattr(kafka_io, "AdminClient", admin)
    monkeypatch.setattr(kafka_io, "Producer", producer)
    monkeypatch.setattr(kafka_io, "Consumer", consumer)
    local = LocalRun(settings, TOPOLOGY)
    spec = TopicSpec(name="t", partitions=1)
    calls = [
        lambda: kafka_io.ensure_topics("k:9093", [spec], security=settings.kafka),
        lambda: kafka_io.require_topic("k:9093", "t", settings.kafka),
        lambda: kafka_io.make_producer("k:9093", settings.kafka).produce("t", b"x"),
        lambda: list(kafka_io.iter_topics("k:9093", ["t"], security=settings.kafka)),
        local.start,  # ensure_topics
        lambda: local.stream_events([b"{}"]),
        lambda: local.finish_input(close_event_time=True, timeout=1),
        lambda: local._wait_done("run", 1, 0.0),
        local.read_outputs,
    ]
    for call in calls:
        with pytest.raises(Recorded):
            call()
    built = admin.built + producer.built + consumer.built
    assert len(built) == len(calls)
    for conf in built:
        assert {k: conf[k] for k in expected} == expected
        assert conf["bootstrap.servers"] in ("k:9093", "kafka-1:9093")

    pipeline = Pipeline(settings, TOPOLOGY)
    monitor = pipeline.broker  # the worker's probe admin client
    assert {k: v for k, v in monitor.admin_config().items() if k in expected} == expected
    # The stages' librdkafka producer (their outboxes and the tables' changelogs).
    assert {k: v for k, v in pipeline.producer.conf.items() if k in expected} == expected
    # librdkafka checks a config when the client is built (no connection yet): it takes these.
    from confluent_kafka.admin import AdminClient

    AdminClient(monitor.admin_config())


def test_the_faust_app_and_the_workers_aiokafka_consumers_get_the_security_settings(monkeypatch, pem):
    from stream_app.worker import app as app_module

    settings = _sasl_ssl(monkeypatch, pem, "SCRAM-SHA-256")
    made: dict[str, Any] = {}
    for name in ("IdentityMapReplica", "DlqLedger"):
        real = getattr(app_module, name)
        monkeypatch.setattr(app_module, name, type(name, (real,), {"__init__": _keeping(real, made, name)}))
    pipeline = app_module.Pipeline(settings, TOPOLOGY)

    # Faust: its consumer, producer and topic admin all take broker_credentials through this.
    auth = credentials_to_aiokafka_auth(pipeline.app.conf.broker_credentials, pipeline.app.conf.ssl_context)
    _assert_aiokafka(auth, "SCRAM-SHA-256")

    consumers = _recorder()
    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", consumers)
    made["IdentityMapReplica"]._consumer()
    with pytest.raises(Recorded):
        asyncio.run(made["DlqLedger"]._highest_on_dlq(0, 0))
    assert len(consumers.built) == 2
    for conf in consumers.built:
        _assert_aiokafka(conf, "SCRAM-SHA-256")


def _keeping(real: type, made: dict[str, Any], name: str) -> Any:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        real.__init__(self, *args, **kwargs)
        made[name] = self

    return __init__


def _assert_aiokafka(conf: Any, mechanism: str) -> None:
    assert conf["security_protocol"] == "SASL_SSL"
    assert conf["sasl_mechanism"] == mechanism
    assert (conf["sasl_plain_username"], conf["sasl_plain_password"]) == ("stream-app", PASSWORD)
    context = conf["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "stream-app-test"),),)]


def test_tls_without_sasl_and_without_hostname_checks(monkeypatch, pem):
    _env(monkeypatch, security_protocol="SSL", ssl_ca_file=pem["ca"], ssl_check_hostname="false")
    security = load_settings(broker="kafka://k:9093").kafka
    assert confluent_config(security) == {
        "security.protocol": "SSL",
        "ssl.ca.location": str(pem["ca"]),
        "ssl.endpoint.identification.algorithm": "none",
    }
    conf = aiokafka_config(security)
    assert conf["security_protocol"] == "SSL" and not conf["ssl_context"].check_hostname
    credentials = faust_config(security)["broker_credentials"]
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"


def test_the_cli_tools_use_the_settings_from_the_environment(monkeypatch, pem):
    from stream_app.cli import app

    _sasl_ssl(monkeypatch, pem, "PLAIN")
    consumer, admin = _recorder(), _recorder()
    monkeypatch.setattr(kafka_io, "Consumer", consumer)
    monkeypatch.setattr(kafka_io, "AdminClient", admin)
    runner = CliRunner()
    runner.invoke(app, ["consume", "coupons", "--broker", "kafka://kafka-1:9093"])
    runner.invoke(app, ["produce", str(REPO / "data" / "sample-day.jsonl"), "--broker", "kafka-1:9093"])
    expected = _confluent_expected("PLAIN", pem)
    assert [{k: c[k] for k in expected} for c in consumer.built + admin.built] == [expected, expected]


def test_a_worker_started_by_run_gets_the_settings_and_no_stray_ones(monkeypatch, pem):
    from stream_app.runner import LocalRun

    security = KafkaSecurity(security_protocol="SSL", ssl_ca_file=pem["ca"], ssl_check_hostname=False)
    monkeypatch.setenv("STREAM_APP_KAFKA_SASL_USERNAME", "from-the-parent-environment")
    local = LocalRun(Settings(broker="kafka://k:9093", kafka=security), TOPOLOGY)
    env = {k: v for k, v in local.worker_env().items() if k.startswith("STREAM_APP_KAFKA_")}
    assert env == {
        "STREAM_APP_KAFKA_SECURITY_PROTOCOL": "SSL",
        "STREAM_APP_KAFKA_SSL_CA_FILE": str(pem["ca"]),
        "STREAM_APP_KAFKA_SSL_CHECK_HOSTNAME": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("STREAM_APP_KAFKA_SASL_USERNAME")
    assert load_settings(broker="kafka://k:9093").kafka == security


# -- secrets stay secret --------------------------------------------------------------------------


def test_secrets_never_appear_in_the_settings_repr_or_in_logs(monkeypatch, pem, caplog):
    from stream_app.worker.app import Pipeline

    caplog.set_level(logging.DEBUG)
    settings = _sasl_ssl(monkeypatch, pem, "SCRAM-SHA-512")
    shown = [repr(settings), str(settings), settings.model_dump_json(), repr(settings.kafka)]
    pipeline = Pipeline(settings, TOPOLOGY)
    shown += [repr(pipeline.app.conf.broker_credentials), repr(faust_config(settings.kafka))]
    logging.getLogger("stream_app").info("settings %s, kafka %r", settings, settings.kafka)
    shown.append(caplog.text)
    assert len(caplog.records) >= 2  # the PII-key warning and the line above: the capture works
    for text in shown:
        assert PASSWORD not in text and KEY_PASSWORD not in text
    assert "stream-app" in repr(settings.kafka)  # the user name is not a secret


def test_the_compose_sasl_override_gives_the_workers_settings_that_load(monkeypatch):
    import yaml

    override = yaml.safe_load((REPO / "deploy" / "compose.sasl.yml").read_text())
    kafka_env = override["services"]["kafka"]["environment"]
    assert kafka_env["KAFKA_SASL_ENABLED_MECHANISMS"] == "PLAIN"
    assert (
        'user_stream-app="${STREAM_APP_KAFKA_SASL_PASSWORD'
        in kafka_env["KAFKA_LISTENER_NAME_SASL__PLAINTEXT_PLAIN_SASL_JAAS_CONFIG"]
    )
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    workers = {name for name in compose["services"] if name.startswith("worker")}
    assert workers and workers <= set(override["services"]), "a worker service without the SASL settings"
    worker_env = override["services"]["worker-1"]["environment"]
    assert all(override["services"][name]["environment"] == worker_env for name in workers)
    for name, value in worker_env.items():
        monkeypatch.setenv(name, "a-password" if "${" in str(value) else str(value))
    security = load_settings(broker="kafka://kafka:9092").kafka
    assert (security.security_protocol, security.sasl_mechanism) == ("SASL_PLAINTEXT", "PLAIN")
    assert security.sasl_username == "stream-app"
