"""Synthetic retail touchpoints for demos, tests and benchmarks (`stream-app generate`)."""

from stream_app.sample.generator import GeneratedDay, generate

__all__ = ["GeneratedDay", "generate"]
