"""The stats agent's logic without Kafka: running statistics per device, batched table writes."""

from __future__ import annotations

import pytest

from citygrid.reading import Reading, sign_reading
from citygrid.records import DeviceStats
from citygrid.signing import DeviceKey
from citygrid.stream.device_stats import stats_batch, update_stats

T0 = 1_750_000_000_000
A, B = DeviceKey.generate(), DeviceKey.generate()


def _reading(key: DeviceKey, seq: int, **values: float) -> Reading:
    return Reading(device=key.device_id, seq=seq, ts_ms=T0 + seq * 1000, kind="meter", values=values)


def _envelope(key: DeviceKey, seq: int, **values: float) -> bytes:
    return sign_reading(_reading(key, seq, **values), key).encode()


def test_statistics_keep_the_count_the_running_mean_and_the_newest_position() -> None:
    stats = None
    for seq, kw in [(0, 1.0), (2, 3.0), (1, 5.0)]:  # seq 1 arrives late
        stats = update_stats(stats, _reading(A, seq, p_kw=kw))
    assert stats.count == 3 and stats.mean == {"p_kw": pytest.approx(3.0)} and stats.last == {"p_kw": 5.0}
    assert (stats.last_seq, stats.last_ts_ms) == (2, T0 + 2000)
    assert (stats.device, stats.kind) == (A.device_id, "meter")


def test_a_batch_sends_a_record_per_reading_and_writes_each_device_once() -> None:
    seen = []
    table = {B.device_id.encode(): update_stats(None, _reading(B, 0, p_kw=10.0)).encode()}
    records = [(None, _envelope(A, 0, p_kw=1.0)), (None, b"junk"), (None, _envelope(B, 1, p_kw=20.0)),
               (None, _envelope(A, 1, p_kw=3.0))]
    out = stats_batch(records, table.get, seen.append)
    assert out.skipped == 1 and len(out.records) == 3 and [r.seq for r in seen] == [0, 1, 1]
    assert [DeviceStats.decode(v).count for _k, v in out.records] == [1, 2, 2]
    assert set(out.latest) == {A.device_id.encode(), B.device_id.encode()}
    b = DeviceStats.decode(out.latest[B.device_id.encode()])
    assert b.count == 2 and b.mean == {"p_kw": 15.0}  # continued from the table's record
    assert out.latest[A.device_id.encode()] == out.records[-1][1]


def test_a_stored_record_that_does_not_parse_starts_the_device_afresh() -> None:
    out = stats_batch([(None, _envelope(A, 4, p_kw=2.0))], lambda _k: b"not json")
    assert DeviceStats.decode(out.latest[A.device_id.encode()]).count == 1
