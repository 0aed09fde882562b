"""The learning agent's logic without Kafka: state round trips, stale readings, alerts and drift."""

from __future__ import annotations

import math
import pickle

import pytest

from citygrid.reading import Reading, sign_reading
from citygrid.records import Alert, Forecast
from citygrid.sealed import StateTampered, seal
from citygrid.settings import StreamSettings
from citygrid.signing import DeviceKey
from citygrid.stream.anomaly import Watch
from citygrid.stream.errors import ModelStateError
from citygrid.stream.learning import (
    LiveStates,
    decode_state,
    domain_of,
    encode_state,
    learn_batch,
    new_state,
    pick_value,
    process,
)

T0 = 1_750_000_000_000
KEY = DeviceKey.generate()
STATE_KEY = "unit-test-state-key-of-32-chars!"
SECRET, DEVICE = STATE_KEY.encode(), KEY.device_id.encode()


def _settings() -> StreamSettings:
    return StreamSettings(state_key=STATE_KEY)


def _reading(seq: int, value: float, kind: str = "meter") -> Reading:
    return Reading(device=KEY.device_id, seq=seq, ts_ms=T0 + seq * 900_000, kind=kind, values={"p_kw": value})


def _daily(i: int) -> float:
    return 2.0 + math.sin(2 * math.pi * i / 96)


def test_state_survives_the_table_round_trip_and_keeps_forecasting_the_same() -> None:
    s = _settings()
    state = new_state(_reading(0, 1.0), s)
    for i in range(200):
        process(state, _reading(i, _daily(i)))
    restored = decode_state(encode_state(state, SECRET, DEVICE), SECRET, DEVICE)
    a, b = process(state, _reading(200, _daily(200))), process(restored, _reading(200, _daily(200)))
    assert a.forecast == b.forecast and restored.series.n == state.series.n


def test_redelivered_readings_are_not_learned_twice() -> None:
    state = new_state(_reading(0, 1.0), _settings())
    for i in range(10):
        process(state, _reading(i, float(i)))
    assert process(state, _reading(5, 5.0)) is None
    assert state.series.n == 9 and state.skipped == 1


def test_unreadable_state_fails_with_what_to_do() -> None:
    with pytest.raises(StateTampered, match="not sealed"):
        decode_state(b"not a pickle", SECRET, DEVICE)
    with pytest.raises(ModelStateError, match="changelog"):
        decode_state(seal(SECRET, b"device-models/" + DEVICE, b"not a pickle"), SECRET, DEVICE)
    with pytest.raises(ModelStateError, match="STREAM_APP_ID"):
        decode_state(seal(SECRET, b"device-models/" + DEVICE, pickle.dumps((0, object()))), SECRET, DEVICE)


def test_traffic_kinds_use_the_traffic_interval() -> None:
    s = StreamSettings(traffic_kinds="traffic, loop")
    assert domain_of("loop", s) == "traffic" and domain_of("pv", s) == "energy"
    state = new_state(_reading(0, 1.0, kind="loop"), s)
    assert state.series.step_s == s.traffic_step_s


@pytest.mark.parametrize(("detector", "threshold"), [("gaussian_residual", 0.99999),
                                                    ("half_space_trees", 0.93)])
def test_a_spike_raises_an_alert_and_a_regime_change_counts_as_drift(detector: str, threshold: float) -> None:
    s = StreamSettings(anomaly_warmup=96, anomaly_detector=detector, anomaly_threshold=threshold)
    state = new_state(_reading(0, 1.0), s)
    alerts = {}
    for i in range(96 * 6):
        v = _daily(i) + (100.0 if i == 96 * 4 else 0.0) + (5.0 * math.sin(i) if i > 96 * 5 else 0.0)
        out = process(state, _reading(i, v))
        if out.alert:
            alerts[i] = out.alert
    assert 96 * 4 in alerts and alerts[96 * 4].reason == "anomaly"
    assert Alert.decode(alerts[96 * 4].encode()) == alerts[96 * 4]
    assert len(alerts) < 30  # not an alert on every reading
    assert state.watch.drifts >= 1


def test_watch_is_silent_while_warming_up() -> None:
    w = Watch(warmup=10)
    assert w.score(1.0, None) is None
    assert all(w.score(1.0, 0.1 * i) is None for i in range(10))
    assert w.score(1.0, 0.0) is not None


def test_a_batch_writes_each_device_once_and_skips_what_does_not_parse() -> None:
    other = DeviceKey.generate()
    envs = [sign_reading(_reading(i, float(i)), KEY).encode() for i in range(5)]
    envs.append(sign_reading(Reading(device=other.device_id, seq=0, ts_ms=T0, kind="pv",
                                     values={"p_kw": 0.0}), other).encode())
    out = learn_batch([(None, e) for e in [*envs, b"junk"]], lambda _k: None, _settings())
    assert set(out.states) == {KEY.device_id.encode(), other.device_id.encode()}
    assert len(out.forecasts) == 6 and out.skipped == 1
    last = Forecast.decode(out.forecasts[4][1])
    assert (last.scope, last.device, last.based_on_seq, last.n) == ("device", KEY.device_id, 4, 4)
    # A second batch continues from the stored state.
    more = [sign_reading(_reading(5, 5.0), KEY).encode()]
    out2 = learn_batch([(None, e) for e in more], out.states.get, _settings())
    assert Forecast.decode(out2.forecasts[0][1]).n == 5


def test_live_states_are_reused_only_while_the_table_holds_their_bytes() -> None:
    s = _settings()
    cache = LiveStates()
    envs = [sign_reading(_reading(i, float(i)), KEY).encode() for i in range(3)]
    table: dict[bytes, bytes] = {}
    table.update(learn_batch([(None, e) for e in envs[:2]], table.get, s, cache).states)
    key = KEY.device_id.encode()
    live = cache.get(key, table[key], SECRET)
    assert cache.get(key, table[key], SECRET) is live  # no unpickling on the hot path
    copy = bytes(bytearray(table[key]))  # as after a changelog restore
    assert cache.get(key, copy, SECRET) is not live
    assert cache.get(key, copy, SECRET).series.n == live.series.n


def test_traffic_loops_forecast_vehicles_not_the_derived_flow() -> None:
    r = Reading(device=KEY.device_id, seq=0, ts_ms=T0, kind="traffic",
                values={"flow_veh_h": 600.0, "vehicles": 10.0})
    assert pick_value(r) == "vehicles"
    assert new_state(r, _settings()).series.step_s == StreamSettings().traffic_step_s


@pytest.mark.parametrize("stored", [
    b"not a pickle",  # unreadable
    "broken-detector",  # readable, but its detector no longer works with this code
])
def test_an_unusable_saved_state_is_reset_and_learning_goes_on(stored: bytes | str) -> None:
    from prometheus_client import REGISTRY

    s = _settings()
    if stored == "broken-detector":
        state = new_state(_reading(0, 1.0), s)
        for i in range(4):
            process(state, _reading(i, float(i)))
        state.watch.detector = object()  # as if pickled by an incompatible version
        stored = encode_state(state, SECRET, DEVICE)
    before = REGISTRY.get_sample_value("citygrid_stream_state_resets_total") or 0
    env = sign_reading(_reading(7, 2.0), KEY).encode()
    out = learn_batch([(None, env)], lambda _k: stored, s)
    assert REGISTRY.get_sample_value("citygrid_stream_state_resets_total") == before + 1
    # A fresh state: this is the first reading it has learned from.
    assert len(out.forecasts) == 1 and Forecast.decode(out.forecasts[0][1]).n == 0
    assert decode_state(out.states[KEY.device_id.encode()], SECRET, DEVICE).last_seq == 7
