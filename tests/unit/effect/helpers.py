"""Topologies for tests: the default one with the holdouts switched off."""

from __future__ import annotations

from stream_app.config import Topology


def without_holdouts(topology: Topology) -> Topology:
    """`topology` with every rule's `effect.holdout` 0: every eligible person gets the action."""
    rules = {
        name: spec.model_copy(update={"effect": spec.effect.model_copy(update={"holdout": 0.0})})
        for name, spec in topology.rules.items()
    }
    return topology.model_copy(update={"rules": rules})
