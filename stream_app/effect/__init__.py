"""Campaign effect (效果分析): attribution windows, last-touch conversions, holdouts and uplift.

Pure: no Faust, Kafka or RocksDB. The person stage keeps each person's attribution state inside
their state (`people/processor.py`); `report` turns the output topics into the per-rule table.
"""

from stream_app.effect.attribution import AttributionEngine, conversion_key, conversion_record
from stream_app.effect.holdout import held_out, holdout_point

__all__ = ["AttributionEngine", "conversion_key", "conversion_record", "held_out", "holdout_point"]
