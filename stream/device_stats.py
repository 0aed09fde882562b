"""Running per-device statistics: the state the stream worker keeps for each device.

Plain functions on `DeviceStats` records, so they are unit-tested without Kafka
and the Faust table stores exactly what the stats topic carries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from citygrid.reading import Reading, reading_or_none
from citygrid.records import DeviceStats, RecordRejected

log = structlog.get_logger(__name__)


def update_stats(stats: DeviceStats | None, reading: Reading) -> DeviceStats:
    """Fold one reading into a device's statistics (count, last value, running mean per value)."""
    if stats is None:
        return DeviceStats(device=reading.device, kind=reading.kind, count=1, mean=dict(reading.values),
                           last=dict(reading.values), last_ts_ms=reading.ts_ms, last_seq=reading.seq)
    n = stats.count + 1
    mean = dict(stats.mean)
    for name, v in reading.values.items():
        m = mean.get(name, 0.0)
        mean[name] = m + (v - m) / n
    return DeviceStats(device=reading.device, kind=reading.kind, count=n, mean=mean,
                       last=dict(reading.values), last_ts_ms=max(stats.last_ts_ms, reading.ts_ms),
                       last_seq=max(stats.last_seq, reading.seq))


@dataclass
class StatsBatch:
    """A batch's results: one stats record per reading, in order, and each device's latest once."""

    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    latest: dict[bytes, bytes] = field(default_factory=dict)
    skipped: int = 0


def stats_batch(records: list[tuple[bytes | None, bytes]], stored: Callable[[bytes], bytes | None],
                observe: Callable[[Reading], None] = lambda _r: None,
                verified: Callable[[bytes], Reading | None] = reading_or_none) -> StatsBatch:
    """Fold a batch of readings topic records (key, envelope) into their devices' statistics.

    `stored` gives a device's statistics as the table holds them; `observe` sees every reading
    (the fleet view); `verified` parses an envelope (the worker's also checks its signature; the
    learner dead-letters what fails, this only skips and counts it). The table needs each device's
    latest record only, once per batch.
    """
    out = StatsBatch()
    current: dict[bytes, DeviceStats | None] = {}
    for _key, envelope in records:
        reading = verified(envelope)
        if reading is None:
            out.skipped += 1
            continue
        observe(reading)
        key = reading.device.encode()
        if key not in current:
            current[key] = _restore(key, stored(key))
        try:
            stats = update_stats(current[key], reading)
        except ValueError as exc:  # a stored record the reading cannot fold into (pydantic's error)
            log.error("device_stats_reset", device=reading.device, error=str(exc)[:300])
            stats = update_stats(None, reading)
        current[key] = stats
        out.latest[key] = encoded = stats.encode()
        out.records.append((key, encoded))
    return out


def _restore(key: bytes, raw: bytes | None) -> DeviceStats | None:
    """The statistics the table holds, or None (start afresh) if there are none or they do not parse."""
    if raw is None:
        return None
    try:
        return DeviceStats.decode(raw)
    except RecordRejected as exc:
        log.error("device_stats_reset", device=key.decode(errors="replace"), error=str(exc))
        return None
