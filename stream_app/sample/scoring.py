"""Scoring identity resolution against the generator's truth.

Evaluated on identifiers that belong to exactly one true person and are not of a shareable type
(a family tablet belongs to several people, so no clustering of it is right or wrong).

- pairwise precision: of all pairs of identifiers put in one profile, the share that truly are one
  person. Merge protection promises 1.0: no wrong merge.
- recall over allowed links: of all pairs of one person's identifiers that are connected through
  events carrying two non-shareable identifiers of that person (links no rule refuses), the share
  put in one profile. Promised: 1.0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import networkx as nx

from stream_app.identity.model import split_key


@dataclass(frozen=True)
class Score:
    identifiers: int
    people: int
    predicted_pairs: int
    true_pairs_predicted: int
    allowed_pairs: int
    allowed_pairs_found: int

    @property
    def precision(self) -> float:
        return self.true_pairs_predicted / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.allowed_pairs_found / self.allowed_pairs if self.allowed_pairs else 1.0


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def score(
    events: Iterable[tuple[str, list[str]]],
    truth: Mapping[str, str],
    predicted: Mapping[str, str],
    shareable_types: frozenset[str] = frozenset({"device_id"}),
) -> Score:
    """`events`: (event_id, identifier keys); `truth`: event_id -> person; `predicted`: key -> one_id."""
    owners: dict[str, set[str]] = defaultdict(set)
    by_person: dict[str, list[list[str]]] = defaultdict(list)
    for event_id, keys in events:
        person = truth[event_id]
        for key in keys:
            owners[key].add(person)
        by_person[person].append(keys)
    evaluated = {
        k: next(iter(p))
        for k, p in owners.items()
        if len(p) == 1 and split_key(k)[0] not in shareable_types and k in predicted
    }

    clusters: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for key, person in evaluated.items():
        clusters[predicted[key]][person] += 1
    predicted_pairs = sum(_pairs(sum(c.values())) for c in clusters.values())
    true_predicted = sum(_pairs(n) for c in clusters.values() for n in c.values())

    allowed = found = 0
    for event_keys in by_person.values():
        graph = nx.Graph()
        for keys in event_keys:
            strong = [k for k in keys if k in evaluated]
            graph.add_nodes_from(strong)
            graph.add_edges_from(zip(strong, strong[1:], strict=False))
        for component in nx.connected_components(graph):
            allowed += _pairs(len(component))
            counts: dict[str, int] = defaultdict(int)
            for key in component:
                counts[predicted[key]] += 1
            found += sum(_pairs(n) for n in counts.values())
    return Score(len(evaluated), len(by_person), predicted_pairs, true_predicted, allowed, found)
