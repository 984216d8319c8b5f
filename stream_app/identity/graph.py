"""networkx on the analysis side: a person's identity graph, hub identifiers, component statistics.

Not on the per-event path (networkx is ~4 µs an edge); these read the identity state on demand.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import networkx as nx

from stream_app.identity.model import Profile, split_key
from stream_app.identity.store import people_count


def person_graph(profile: Profile) -> nx.Graph:
    """Identifiers and the events that linked them, as a bipartite graph.

    Identifier nodes are `type:value` keys (kind="identifier"); event nodes are `event:<id>`
    (kind="event", with event_time_ms); an edge means the event carried the identifier.
    """
    graph = nx.Graph(one_id=profile.one_id, created_ms=profile.created_ms)
    for key in profile.identifier_keys():
        id_type, _ = split_key(key)
        graph.add_node(key, kind="identifier", type=id_type)
    for event_id, event_time_ms, keys in profile.links:
        node = f"event:{event_id}"
        graph.add_node(node, kind="event", event_time_ms=event_time_ms)
        for key in keys:
            if key in graph:
                graph.add_edge(node, key)
    return graph


def graph_json(graph: nx.Graph) -> dict[str, Any]:
    return nx.node_link_data(graph, edges="edges")


def graph_from_json(data: dict[str, Any]) -> nx.Graph:
    return nx.node_link_graph(data, edges="edges")


def hubs(refusals: Iterable[tuple[str, dict[str, Any]]], limit: int = 50) -> dict[str, Any]:
    """Identifiers whose links were refused, most people first: shared devices, reused phones.

    `people` counts every distinct one_id a hub tried to link (an estimate, flagged
    `people_estimated`, past `store.SKETCH_SIZE`); `total` says how many hubs there are, so a
    listing cut at `limit` says so.

    >>> from stream_app.identity.store import add_refusal
    >>> table = hubs([("device_id:tablet", add_refusal(None, ["p_a", "p_b"]))], limit=10)
    >>> table["total"], table["hubs"][0]["people"], table["hubs"][0]["people_estimated"]
    (1, 2, False)
    """
    rows = []
    for key, entry in refusals:
        people, estimated = people_count(entry)
        rows.append(
            {
                "identifier": key,
                "people": people,
                "people_estimated": estimated,
                "refused_links": entry["count"],
            }
        )
    rows.sort(key=lambda r: (-r["people"], -r["refused_links"], r["identifier"]))
    return {"hubs": rows[:limit], "total": len(rows), "limit": limit}


def component_stats(profiles: Iterable[Profile]) -> dict[str, Any]:
    """How many people, and how many identifiers each (the size of each connected component)."""
    sizes = [p.size() for p in profiles]
    if not sizes:
        return {"profiles": 0, "identifiers": 0, "sizes": {}}
    ordered = sorted(sizes)
    return {
        "profiles": len(sizes),
        "identifiers": sum(sizes),
        "max": ordered[-1],
        "mean": round(sum(sizes) / len(sizes), 3),
        "p50": ordered[len(ordered) // 2],
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "sizes": {str(size): count for size, count in sorted(Counter(sizes).items())},
    }
