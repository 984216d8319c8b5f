"""Process settings: one frozen object from `STREAM_APP_*` environment variables, passed explicitly.

Faust reads some environment variables of its own (`WEB_PORT`, `BROKER_URL`, ...). stream_app always
passes every Faust setting it cares about explicitly from this object, so `STREAM_APP_*` wins and
Faust's own variables are ignored for those settings.

Kafka security (`STREAM_APP_KAFKA_*`, `KafkaSecurity`) is one object for every client the process
makes; `stream_app.io.security` turns it into each client family's config. `load_settings` is how
the CLI loads: a bad value or combination fails there, one `SETTING: reason` line each.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_WILDCARD_HOSTS = ("0.0.0.0", "::", "")
DEV_PII_KEY = "stream-app-development-key-do-not-use-in-production"
ENV_PREFIX = "STREAM_APP_"
KAFKA_ENV_PREFIX = "STREAM_APP_KAFKA_"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class SettingsError(ValueError):
    """Settings that do not load; `problems` are `STREAM_APP_NAME: reason` lines."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _kafka_env(field: str) -> str:
    return KAFKA_ENV_PREFIX + field.upper()


class KafkaSecurity(BaseSettings):
    """How every Kafka client of this process authenticates and encrypts, from `STREAM_APP_KAFKA_*`.

    Secrets are `SecretStr`: never in a repr, a log line or a dump.

    >>> KafkaSecurity(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
    ...               sasl_username="app", sasl_password="s3cret")
    KafkaSecurity(security_protocol='SASL_PLAINTEXT', sasl_mechanism='SCRAM-SHA-512', \
sasl_username='app', sasl_password=SecretStr('**********'), ssl_ca_file=None, ssl_cert_file=None, \
ssl_key_file=None, ssl_key_password=None, ssl_check_hostname=True)
    """

    model_config = SettingsConfigDict(env_prefix=KAFKA_ENV_PREFIX, frozen=True, extra="ignore")

    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_mechanism: SaslMechanism | None = Field(
        None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL_* protocol)."
    )
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_file: Path | None = Field(None, description="PEM CA bundle; default: the system's CAs.")
    ssl_cert_file: Path | None = Field(None, description="PEM client certificate (mutual TLS).")
    ssl_key_file: Path | None = Field(None, description="PEM private key of the client certificate.")
    ssl_key_password: SecretStr | None = None
    ssl_check_hostname: bool = Field(True, description="Check the broker's name against its certificate.")

    @field_validator("ssl_ca_file", "ssl_cert_file", "ssl_key_file")
    @classmethod
    def _file_exists(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"no such file: {path}")
        return path

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        problems = self.problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def problems(self) -> list[str]:
        """Combinations no client can use; a setting that would be silently ignored is one."""
        protocol = f"{_kafka_env('security_protocol')}={self.security_protocol}"
        found = []
        if self.sasl:
            for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
                value = getattr(self, name)
                if value is None or (isinstance(value, SecretStr) and not value.get_secret_value()):
                    found.append(f"{_kafka_env(name)}: required with {protocol}")
        else:
            for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
                if getattr(self, name) is not None:
                    found.append(f"{_kafka_env(name)}: set, but {protocol} does not use SASL")
        if not self.tls:
            for name in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file", "ssl_key_password"):
                if getattr(self, name) is not None:
                    found.append(f"{_kafka_env(name)}: set, but {protocol} does not use TLS")
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            given, missing = (
                ("ssl_cert_file", "ssl_key_file")
                if self.ssl_key_file is None
                else ("ssl_key_file", "ssl_cert_file")
            )
            found.append(f"{_kafka_env(missing)}: required with {_kafka_env(given)} (mutual TLS needs both)")
        if self.ssl_key_password is not None and self.ssl_key_file is None:
            found.append(f"{_kafka_env('ssl_key_password')}: set without {_kafka_env('ssl_key_file')}")
        return found

    def as_env(self) -> dict[str, str]:
        """The `STREAM_APP_KAFKA_*` variables that give a child process these settings."""
        env = {}
        for name, value in self:
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, bool):
                value = "1" if value else "0"
            env[_kafka_env(name)] = str(value)
        return env


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    broker: str | None = Field(
        None,
        description="Kafka bootstrap URL, e.g. kafka://host:9092. Unset: start the embedded broker.",
    )

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, url: str | None) -> str | None:
        """A URL no client could use fails here, not after seconds of resolver errors.

        >>> Settings(broker="kafka://k1:9092;k2:9093").broker
        'kafka://k1:9092;k2:9093'
        """
        if url is not None:
            for problem in broker_url_problems(url):
                raise ValueError(f"{ENV_PREFIX}BROKER: {problem} (want kafka://host:port[;host:port])")
        return url

    topology: Path = Path("topology.yaml")
    data_dir: Path = Field(Path(".stream_app"), description="Local state (RocksDB) and logs.")
    app_id: str = Field("stream-app", description="Faust app id = Kafka consumer group.")
    pii_key: SecretStr | None = Field(None, description="HMAC key for phone and email hashing.")
    web_host: str = Field(
        "127.0.0.1",
        description="The address the web server binds (loopback unless told otherwise; 0.0.0.0: all).",
    )
    web_port: int = 6066
    web_advertised_url: str | None = Field(
        None,
        description="The URL peers use to reach this worker (profile look-ups forwarded between "
        "workers). Default: http://WEB_HOST:WEB_PORT, or this machine's host name if WEB_HOST binds "
        "every interface.",
    )
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field(
        "text", description="Worker log lines: text (Faust's) or json (one object per line)."
    )
    producer_linger: float = Field(
        0.005, ge=0, le=1, description="Seconds a producer batch may wait to fill (Kafka's linger)."
    )
    identity_replica_memory_bytes: int = Field(
        64 * 2**20,
        ge=8 * 2**20,
        description="Memory of each worker's identifier-map replica (RocksDB block cache, with its "
        "index, filter and write buffers charged to it); the map itself is on disk.",
    )
    table_memory_bytes: int = Field(
        128 * 2**20,
        ge=16 * 2**20,
        description="RocksDB memory of a worker's tables (write buffers and block caches), shared "
        "out equally among every partition of every table; the state itself is on disk.",
    )
    identity_replica_hot_keys: int = Field(
        50_000,
        ge=0,
        description="Identifiers the replica keeps decoded in memory as well, per generation (at "
        "most twice this many, ~200 bytes each): recently looked-up people skip RocksDB.",
    )
    fast_rebalance: bool = Field(
        False,
        description="Short session/heartbeat/rebalance timeouts: embedded broker and tests only.",
    )
    gc_freeze: bool = Field(
        True,
        description="Move what the worker holds after start-up and after each rebalance out of the "
        "garbage collector's reach (gc.freeze), so its full collections stop walking it "
        "(stream_app.worker.gc_pauses).",
    )

    kafka: KafkaSecurity = Field(
        default_factory=KafkaSecurity,  # type: ignore[arg-type]  # reads STREAM_APP_KAFKA_*
        description="Security of every Kafka client (STREAM_APP_KAFKA_*).",
    )

    @model_validator(mode="after")
    def _security_needs_a_broker(self) -> Settings:
        embedded = self.broker is None or self.broker.startswith("tansu://")
        if embedded and self.kafka.security_protocol != "PLAINTEXT":
            raise ValueError(
                f"{_kafka_env('security_protocol')}: {self.kafka.security_protocol} needs a broker "
                f"({ENV_PREFIX}BROKER or --broker); the embedded broker takes PLAINTEXT only"
            )
        return self

    def advertised_web_url(self) -> str:
        """Where peers reach this worker: never a wildcard address, which names no machine.

        >>> Settings(web_host="0.0.0.0", web_port=6066).advertised_web_url().startswith("http://0.0")
        False
        """
        if self.web_advertised_url:
            return self.web_advertised_url.rstrip("/")
        host = socket.gethostname() if self.web_host in _WILDCARD_HOSTS else self.web_host
        return f"http://{host}:{self.web_port}"

    def pii_key_bytes(self) -> tuple[bytes, bool]:
        """The PII hashing key and whether it is the development default."""
        if self.pii_key is None or not self.pii_key.get_secret_value():
            return DEV_PII_KEY.encode(), True
        return self.pii_key.get_secret_value().encode(), False


_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)$")


def broker_url_problems(url: str) -> list[str]:
    """What is wrong with a broker URL: scheme, host names, ports.

    >>> broker_url_problems("kafka://localhost:9O92")
    ["'localhost:9O92': port '9O92' is not a number from 1 to 65535"]
    """
    from stream_app.io.urls import normalize_broker_url

    try:
        hosts = normalize_broker_url(url.strip()).split("://", 1)[1]
    except ValueError as exc:
        return [f"{url!r}: {exc}"]
    entries = [h for h in re.split(r"[;,]", hosts) if h.strip()]
    if not entries:
        return [f"{url!r}: no host"]
    found = []
    for entry in entries:
        if entry.startswith("["):  # [IPv6]:port
            host, _, rest = entry.partition("]")
            host, port = host + "]", rest.removeprefix(":") if rest else None
        elif ":" in entry:
            host, _, port = entry.rpartition(":")
        else:
            host, port = entry, None
        if not _HOST.match(host):
            found.append(f"{entry!r}: {host!r} is not a host name or address")
        elif port is not None and not (port.isdigit() and 0 < int(port) < 65536):
            found.append(f"{entry!r}: port {port!r} is not a number from 1 to 65535")
    return found


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and `overrides` (None: not given); SettingsError naming each
    bad setting and why.

    >>> load_settings(web_port="x")
    Traceback (most recent call last):
    ...
    stream_app.config.settings.SettingsError: STREAM_APP_WEB_PORT: Input should be a valid integer, \
unable to parse string as an integer
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise SettingsError(_problems(exc, ENV_PREFIX)) from None


def _problems(exc: ValidationError, prefix: str) -> list[str]:
    found = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        message = error["msg"].removeprefix("Value error, ")
        if error.get("type") == "value_error" and message.startswith(ENV_PREFIX):
            found += message.splitlines()  # our own cross-field checks name their settings
            continue
        if loc and loc[0] == "kafka":
            name = KAFKA_ENV_PREFIX + "_".join(loc[1:]).upper()
        elif isinstance(exc.title, str) and exc.title == "KafkaSecurity":
            name = KAFKA_ENV_PREFIX + "_".join(loc).upper()
        else:
            name = prefix + "_".join(loc).upper()
        found.append(f"{name}: {message}")
    return found
