"""Feeder and intersection aggregation: routing by district, interval sums, closing and learning."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from citygrid.errors import ReadingRejected
from citygrid.reading import Reading, sign_reading
from citygrid.reading_check import check_envelope
from citygrid.records import Forecast
from citygrid.sealed import StateTampered, seal
from citygrid.settings import StreamSettings
from citygrid.signing import DeviceKey, DeviceRegistry
from citygrid.stream.aggregates import (
    MEMBERS_PER_RECORD,
    Member,
    MemberBatch,
    add,
    aggregate_batch,
    decode_group,
    group_key,
    new_group,
    parse_members,
    route_batch,
)
from citygrid.stream.aggregates import route as route_with
from citygrid.stream.errors import ModelStateError
from citygrid.stream.forecasting import SeriesState, observe
from citygrid.topics import DISTRICT_HEADER

S = StreamSettings(state_key="unit-test-state-key-of-32-chars!")
SECRET = S.state_key.encode()
T0 = 1_750_000_000_000 // 900_000 * 900_000  # an interval boundary
Q = 900_000  # a quarter-hour in ms


def _envelope(key: DeviceKey, seq: int, ts_ms: int, kind: str, values: dict[str, float]) -> bytes:
    reading = Reading(device=key.device_id, seq=seq, ts_ms=ts_ms, kind=kind, values=values)
    return sign_reading(reading, key).encode()


def _member(device: str, seq: int, ts_ms: int, x: float, scope: str = "feeder", kind: str = "meter",
            group: str = "d1") -> Member:
    return Member(scope=scope, group=group, kind=kind, value="p_kw", device=device, seq=seq, ts_ms=ts_ms, x=x)


def _verifier(*keys: DeviceKey):
    registry = DeviceRegistry()
    for k in keys:
        registry.add(k.public_key)

    def verified(envelope: bytes) -> Reading | None:
        try:
            return check_envelope(envelope, registry)
        except ReadingRejected:
            return None

    return verified


def test_route_keys_by_district_and_kind_and_skips_what_no_group_sums() -> None:
    meter, loop, other = DeviceKey.generate(), DeviceKey.generate(), DeviceKey.generate()
    hdr = {DISTRICT_HEADER: b"d7"}
    verified = _verifier(meter, loop, other)

    def route(envelope: bytes, headers: dict | None, s: StreamSettings) -> tuple[bytes, Member] | None:
        return route_with(envelope, headers, s, verified)

    key, member = route(_envelope(meter, 3, T0, "meter", {"p_kw": 1.5, "q_kvar": 0.2}), hdr, S)
    assert key == group_key("feeder", "d7", "meter") == b"feeder/d7/meter"
    assert json.loads(member.encode()) == {"scope": "feeder", "group": "d7", "kind": "meter", "value": "p_kw",
                                           "device": meter.device_id, "seq": 3, "ts_ms": T0, "x": 1.5}
    key, member = route(_envelope(loop, 0, T0, "traffic", {"vehicles": 7, "flow_veh_h": 420}), hdr, S)
    assert key == b"intersection/d7/traffic" and member.x == 7
    assert route(_envelope(meter, 4, T0, "meter", {"p_kw": 1.0}), {}, S) is None  # no header
    assert route(_envelope(meter, 4, T0, "meter", {"p_kw": 1.0}), None, S) is None
    assert route(_envelope(other, 0, T0, "air", {"pm25": 4.0}), hdr, S) is None  # not a feeder kind
    assert route(b"not an envelope", hdr, S) is None
    forger = DeviceKey.generate()  # signs well, but is not enrolled: never in a group's sum
    assert route(_envelope(forger, 0, T0, "meter", {"p_kw": 1.0}), hdr, S) is None


def test_a_batch_is_rekeyed_as_one_record_per_group_in_reading_order() -> None:
    keys = [DeviceKey.generate() for _ in range(4)]
    verified = _verifier(*keys)
    batch = []
    for seq in range(3):
        for d, key in enumerate(keys):
            kind, values = ("traffic", {"vehicles": seq + d}) if d == 3 else ("meter", {"p_kw": seq + d / 10})
            district = {DISTRICT_HEADER: f"d{d % 2}".encode()}
            batch.append((_envelope(key, seq, T0 + seq * Q, kind, values), district))
    batch.append((b"not an envelope", {DISTRICT_HEADER: b"d0"}))
    out = route_batch(batch, S, verified)
    assert [k for k, _ in out] == [b"feeder/d0/meter", b"feeder/d1/meter", b"intersection/d1/traffic"]
    members = {k: [(m.device, m.seq, m.x) for m in parse_members(v)] for k, v in out}
    assert members[b"feeder/d0/meter"] == [(keys[d].device_id, seq, seq + d / 10)
                                           for seq in range(3) for d in (0, 2)]
    assert members[b"intersection/d1/traffic"] == [(keys[3].device_id, seq, seq + 3) for seq in range(3)]


def test_a_big_group_is_split_into_bounded_records_that_add_up_like_one_member_each() -> None:
    keys = [DeviceKey.generate() for _ in range(7)]
    verified, district = _verifier(*keys), {DISTRICT_HEADER: b"d1"}
    batch = [(_envelope(keys[d], seq, T0 + seq * Q, "meter", {"p_kw": 1.0 + d}), district)
             for seq in range(300) for d in range(7)]
    chunks = route_batch(batch, S, verified)
    assert [len(parse_members(v)) for _k, v in chunks] == [MEMBERS_PER_RECORD, MEMBERS_PER_RECORD, 100]
    with pytest.raises(ValidationError):
        MemberBatch(members=parse_members(chunks[0][1]) + parse_members(chunks[2][1])[:1])
    batched = aggregate_batch(chunks, lambda _k: None, S)
    # One member per record, as workers before batching wrote them, gives the very same forecasts.
    one_each = [(k, m.encode()) for k, v in chunks for m in parse_members(v)]
    single = aggregate_batch(one_each, lambda _k: None, S)
    assert batched.forecasts == single.forecasts and len(batched.forecasts) == 299
    totals = [Forecast.decode(v).total for _k, v in batched.forecasts[:2]]
    assert totals == [sum(1.0 + d for d in range(7))] * 2


def test_an_interval_closes_once_every_member_reported_a_later_one_with_the_exact_sum() -> None:
    g = new_group(_member("a", 0, T0, 0), S)
    assert add(g, _member("a", 0, T0, 1.0), 8) == []
    assert add(g, _member("b", 0, T0 + 10, 2.0), 8) == []
    assert add(g, _member("a", 1, T0 + Q, 4.0), 8) == []  # b may still report interval 0
    closed = add(g, _member("b", 1, T0 + Q + 5, 8.0), 8)
    assert [(c.interval_ms, c.total, c.members) for c in closed] == [(T0, 3.0, 2)]
    assert closed[0].scope == "feeder" and closed[0].group == "d1" and closed[0].ts_ms == T0 + Q
    assert closed[0].device is None
    # Redelivered (same seq) and late readings never change a total.
    assert add(g, _member("a", 1, T0 + Q, 4.0), 8) == []
    assert add(g, _member("c", 0, T0, 100.0), 8) == [] and g.late == 1
    closed = add(g, _member("a", 2, T0 + 2 * Q, 1.0), 8) + add(g, _member("b", 2, T0 + 2 * Q, 1.0), 8)
    assert [(c.interval_ms, c.total) for c in closed] == [(T0 + Q, 12.0)]


def test_power_is_averaged_per_device_and_counts_add_up_within_an_interval() -> None:
    feeder = new_group(_member("a", 0, T0, 0), S)
    for i, kw in enumerate([1.0, 3.0]):
        add(feeder, _member("a", i, T0 + i * 1000, kw), 8)
    assert add(feeder, _member("a", 2, T0 + Q, 0.0), 8)[0].total == 2.0
    crossing = new_group(_member("a", 0, T0, 0, "intersection", "traffic"), S)
    step = S.traffic_step_s * 1000
    for i, n in enumerate([5.0, 6.0]):
        add(crossing, _member("a", i, T0 + i * 1000, n, "intersection", "traffic"), 8)
    closed = add(crossing, _member("a", 2, T0 + step, 0.0, "intersection", "traffic"), 8)
    assert closed[0].total == 11.0 and closed[0].ts_ms == T0 + step


def test_a_silent_member_stops_holding_intervals_open_after_the_lag() -> None:
    g = new_group(_member("a", 0, T0, 0), S)
    add(g, _member("a", 0, T0, 1.0), 2)
    add(g, _member("b", 0, T0, 1.0), 2)  # b then goes silent
    assert add(g, _member("a", 1, T0 + Q, 1.0), 2) == []  # b still holds interval 0 open
    closed = add(g, _member("a", 2, T0 + 2 * Q, 1.0), 2)  # two intervals on: b no longer counts
    assert [(c.interval_ms, c.total) for c in closed] == [(T0, 2.0), (T0 + Q, 1.0)]
    assert "b" not in g.latest
    assert [c.interval_ms for c in add(g, _member("a", 3, T0 + 3 * Q, 1.0), 2)] == [T0 + 2 * Q]
    # b comes back: it rejoins from its next open interval on.
    assert add(g, _member("b", 1, T0 + 3 * Q, 5.0), 2) == [] and "b" in g.latest
    assert add(g, _member("b", 2, T0 + 4 * Q, 0.0), 2) == []  # a still may report interval 3
    assert [c.total for c in add(g, _member("a", 4, T0 + 4 * Q, 0.0), 2)] == [6.0]


def test_batches_across_a_checkpoint_forecast_exactly_like_the_offline_series() -> None:
    sums = [0.0] * 40
    records = []
    for t in range(40):
        for d in range(3):
            x = round(1 + 0.5 * d + (t % 7) * 0.3 + d * t * 0.01, 4)
            sums[t] += x
            member = _member(f"dev{d}", t, T0 + t * Q + d, x, group="d2")
            records.append((b"feeder/d2/meter", member.encode()))
    table: dict[bytes, bytes] = {}
    forecasts = []
    for lo in range(0, len(records), 25):  # uneven batches, state through the "table" in between
        out = aggregate_batch(records[lo:lo + 25], table.get, S)
        table.update(out.states)
        forecasts += [Forecast.decode(v) for _k, v in out.forecasts]
    assert [f.interval_ms for f in forecasts] == [T0 + t * Q for t in range(39)]
    assert [f.total for f in forecasts] == pytest.approx(sums[:39], abs=1e-9)
    offline = SeriesState(S.energy_step_s, S.energy_season_steps, model_name=S.model)
    expected = [observe(offline, v, T0 + t * Q).forecast for t, v in enumerate(sums[:39])]
    assert [f.forecast for f in forecasts] == expected
    assert forecasts[-1].n == 38
    assert decode_group(table[b"feeder/d2/meter"], SECRET, b"feeder/d2/meter").closed_through >= 0


def test_unreadable_state_raises_a_clear_error_and_the_batch_starts_the_group_afresh() -> None:
    with pytest.raises(StateTampered):
        decode_group(b"garbage", SECRET, b"feeder/d1/meter")
    with pytest.raises(ModelStateError, match="changelog"):
        decode_group(seal(SECRET, b"group-aggregates/feeder/d1/meter", b"garbage"), SECRET,
                     b"feeder/d1/meter")
    rec = _member("a", 0, T0, 1.0).encode()
    out = aggregate_batch([(b"feeder/d1/meter", rec)], lambda _k: b"garbage", S)
    assert decode_group(out.states[b"feeder/d1/meter"], SECRET, b"feeder/d1/meter").last_seq == {"a": 0}


def test_a_member_record_that_does_not_parse_is_skipped_and_counted() -> None:
    from prometheus_client import REGISTRY

    before = REGISTRY.get_sample_value("citygrid_stream_aggregate_ungrouped_total") or 0
    good = _member("a", 0, T0, 1.0).encode()
    out = aggregate_batch([(b"feeder/d1/meter", b"{junk"), (b"feeder/d1/meter", good)], lambda _k: None, S)
    assert decode_group(out.states[b"feeder/d1/meter"], SECRET, b"feeder/d1/meter").last_seq == {"a": 0}
    assert REGISTRY.get_sample_value("citygrid_stream_aggregate_ungrouped_total") == before + 1


def test_the_ingest_takes_the_district_from_the_mqtt_topic() -> None:
    from citygrid.topics import parse_readings_topic

    assert parse_readings_topic("citygrid/readings", "citygrid/readings/north/d4pdmx") == ("north", "d4pdmx")
    assert parse_readings_topic("a/b/c/readings", "a/b/c/readings/A1/dev") == ("A1", "dev")
    assert parse_readings_topic("citygrid/readings", "dev") is None
    assert parse_readings_topic("citygrid/readings", "citygrid/readings/x/y/z") is None
