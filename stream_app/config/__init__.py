"""Configuration: `topology.yaml` as frozen, validated models, and process settings from the environment."""

from stream_app.config.settings import Settings
from stream_app.config.topology import Topology, TopologyError, load_topology

__all__ = ["Settings", "Topology", "TopologyError", "load_topology"]
