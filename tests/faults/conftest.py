"""Fault-injection fixtures: the integration suite's embedded broker and isolated environments.

Re-exported, not copied: a test here gets the same `broker` (one Tansu for the session),
`make_env` and `env` (topics, consumer group and state directory of its own) as the integration tests.
"""

from tests.integration.conftest import broker, env, make_env  # noqa: F401 - fixtures, used by name
