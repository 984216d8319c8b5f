"""Broker URLs: `kafka://host:port[;host:port]` for a real Kafka, `tansu://...` for the embedded broker.

The scheme tells Faust which transport to load; the `tansu` scheme adds the end-offset workaround
(`stream_app.io.tansu_transport`) and nothing else, so a real Kafka never gets it.
"""

from __future__ import annotations

import re

EMBEDDED_SCHEME = "tansu"
_SCHEMES = ("kafka", "aiokafka", EMBEDDED_SCHEME)


def normalize_broker_url(url: str) -> str:
    """Give a bare `host:port` list the `kafka://` scheme.

    >>> normalize_broker_url("localhost:9092")
    'kafka://localhost:9092'
    """
    if "://" not in url:
        return f"kafka://{url}"
    scheme = url.split("://", 1)[0]
    if scheme not in _SCHEMES:
        raise ValueError(f"unsupported broker URL scheme {scheme!r}; use one of {_SCHEMES}")
    return url


def bootstrap_servers(url: str) -> str:
    """The `host:port,host:port` list that confluent-kafka wants.

    >>> bootstrap_servers("kafka://a:9092;b:9093")
    'a:9092,b:9093'
    """
    hosts = normalize_broker_url(url).split("://", 1)[1]
    return ",".join(h if ":" in h else f"{h}:9092" for h in re.split(r"[;,]", hosts) if h)


def is_embedded(url: str) -> bool:
    return normalize_broker_url(url).startswith(f"{EMBEDDED_SCHEME}://")
