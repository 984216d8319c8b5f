"""Process settings: one frozen object from `STREAM_APP_*` environment variables, passed explicitly.

Faust reads some environment variables of its own (`WEB_PORT`, `BROKER_URL`, ...). stream_app always
passes every Faust setting it cares about explicitly from this object, so `STREAM_APP_*` wins and
Faust's own variables are ignored for those settings.
"""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

_WILDCARD_HOSTS = ("0.0.0.0", "::", "")
DEV_PII_KEY = "stream-app-development-key-do-not-use-in-production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STREAM_APP_", frozen=True, extra="ignore")

    broker: str | None = Field(
        None,
        description="Kafka bootstrap URL, e.g. kafka://host:9092. Unset: start the embedded broker.",
    )
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
