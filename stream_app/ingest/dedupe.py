"""De-duplication by `event_id`: a repeated event is processed once.

The de-duplicator remembers, per event_id, the position (partition:offset) of the record that first
carried it. A record at another position with a known event_id is a duplicate (a producer retry, a
resend). The *same* record seen again is a redelivery after a crash (at-least-once): it passes
again, because its first pass may not have reached the output before the crash.
"""

from __future__ import annotations


def position(partition: int, offset: int) -> str:
    return f"{partition}:{offset}"


def is_first_delivery(recorded: str | None, current: str) -> bool:
    """Whether the record at `current` should be processed, given the position recorded before.

    >>> is_first_delivery(None, "3:10"), is_first_delivery("3:10", "3:10"), is_first_delivery("3:10", "3:11")
    (True, True, False)
    """
    return recorded is None or recorded == current
