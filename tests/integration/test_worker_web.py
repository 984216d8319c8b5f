"""The worker's web server: loopback unless told otherwise, and none of Faust's table views."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on `port`, from the kernel's own table."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, local_port = local.split(":")
            if state == "0A" and int(local_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                if width == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_web_server_listens_on_loopback_only_and_serves_no_table_views(env):
    with env.local_run() as run:
        port = run.web_port
        assert listening_addresses(port) == {"127.0.0.1"}
        base = f"http://127.0.0.1:{port}"
        assert _status(f"{base}/metrics") == 200
        assert _status(f"{base}/ready") == 200
        table = env.topology.internal_topics.identity_map.name
        for path in ("/table/", "/table/identity-owners/", f"/table/{table}/", "/router/"):
            assert _status(base + path) == 404, path
