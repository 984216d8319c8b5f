"""stream_app: a real-time customer data platform core on Kafka and Faust.

Touchpoint events are validated and normalised (`ingest`), resolved to one person (`identity`),
folded into that person's tags (`tags`) and matched against trigger rules (`rules`). Each of those
is a pure core; `worker` holds the thin Faust adapter and `io` the edges to Kafka and the broker.
"""

__version__ = "0.1.0"
