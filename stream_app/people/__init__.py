"""Per-person processing (tags and trigger rules in event-time order); pure, see `processor`."""
