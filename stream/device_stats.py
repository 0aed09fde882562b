"""Running per-device statistics: the state the stream worker keeps for each device.

Plain functions on plain dicts, so they are unit-tested without Kafka and the
Faust table can store the result as JSON.
"""

from __future__ import annotations

from citygrid.reading import Reading


def update_stats(stats: dict | None, reading: Reading) -> dict:
    """Fold one reading into a device's statistics (count, last value, running mean per value)."""
    stats = dict(stats or {"count": 0, "mean": {}, "last": {}, "last_ts_ms": 0, "last_seq": -1})
    n = stats["count"] + 1
    mean = dict(stats["mean"])
    for name, v in reading.values.items():
        m = mean.get(name, 0.0)
        mean[name] = m + (v - m) / n
    stats.update(
        count=n, mean=mean, last=dict(reading.values), kind=reading.kind,
        last_ts_ms=max(stats["last_ts_ms"], reading.ts_ms), last_seq=max(stats["last_seq"], reading.seq),
    )
    return stats
