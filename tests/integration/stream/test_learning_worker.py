"""Faust workers on real Kafka: readings in, forecasts and alerts out; a killed worker resumes its models."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from citygrid.devtools.processes import spawn, stop
from citygrid.records import Alert, Forecast
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey, DeviceRegistry
from citygrid.stream.kafka_topics import read_topic, topic_end
from citygrid.stream.learning import learn_batch

pytestmark = [pytest.mark.servers, pytest.mark.timeout(240)]


def _settings(live: CitygridSettings, *keys: DeviceKey) -> CitygridSettings:
    """The worker's settings (a short warm-up so a few days of data reach the anomaly detector's
    scoring phase; its own state key), with `keys` enrolled: the learner learns only their readings."""
    registry = DeviceRegistry.load(live.paths.device_registry)
    for k in keys:
        registry.add(k.public_key)
    registry.save(live.paths.device_registry)
    return live.model_copy(update={"stream": live.stream.model_copy(update={
        "anomaly_warmup": 48, "batch_within_s": 0.1, "state_key": secrets.token_hex(32)})})


def _forecasts(s: CitygridSettings) -> list[Forecast]:
    return [Forecast.decode(r.value) for r in read_topic(s.kafka, s.kafka.forecasts_topic)]


def test_readings_in_forecasts_and_alerts_out_and_a_killed_worker_resumes(
        live: CitygridSettings, produce, profiles: dict[str, list[float]], tmp_path: Path, helpers) -> None:
    meter, pv = DeviceKey.generate(), DeviceKey.generate()
    s = _settings(live, meter, pv)
    first, second = 480, 192  # five days, then two more after the restart
    load = list(profiles["meter"])
    spike_seq = 400
    load[spike_seq] += 200.0  # a household never draws 200 kW: the detector must flag it
    series = {meter: ("meter", load), pv: ("pv", profiles["pv"])}
    envelopes = {k: helpers.signed(k, kind, vals[:first + second], start_ms=1_750_000_000_000)
                 for k, (kind, vals) in series.items()}

    def batch(lo: int, hi: int) -> list[tuple[bytes, bytes]]:
        return [(k.device_id.encode(), env) for k in series for env in envelopes[k][lo:hi]]

    produce(batch(0, first))
    worker = spawn(["stream", "worker"], s.as_env(), tmp_path / "worker1.log")
    try:
        helpers.wait(lambda: topic_end(s.kafka, s.kafka.forecasts_topic) >= 2 * first, 120,
                   "forecasts of the first readings")
    finally:
        worker.kill()  # no graceful shutdown: the changelog is all a successor gets
        worker.wait()

    forecasts = _forecasts(s)
    assert {f.device for f in forecasts} == {meter.device_id, pv.device_id}
    assert {f.scope for f in forecasts} == {"device"}  # no district header: no feeder forecasts
    alerts = [Alert.decode(r.value) for r in read_topic(s.kafka, s.kafka.alerts_topic)]
    assert any(a.device == meter.device_id and a.seq == spike_seq for a in alerts), alerts[:5]
    pv_trained = max((f for f in forecasts if f.device == pv.device_id), key=lambda f: f.n)
    assert pv_trained.n >= first - 1
    assert pv_trained.mae < pv_trained.mae_persistence

    produce(batch(first, first + second))
    worker = spawn(["stream", "worker"], s.as_env(), tmp_path / "worker2.log")
    try:
        helpers.wait(lambda: any(f.based_on_seq == first + second - 1 and f.device == pv.device_id
                                 for f in _forecasts(s)), 120, "forecasts after the restart")
    finally:
        stop(worker)

    after = {f.based_on_seq: f for f in _forecasts(s) if f.device == pv.device_id
             and f.based_on_seq >= first}
    # The restarted worker's counts continue where the killed one stopped...
    assert after[first].n >= first
    # ...and its forecasts are those of the model that never stopped, not of a fresh one.
    continuous = _offline(s, pv, envelopes[pv], 0)
    fresh = _offline(s, pv, envelopes[pv], first)
    gap_resumed = _gap(after, continuous, first, first + second)
    gap_fresh = _gap(after, fresh, first, first + second)
    # Exactly: redelivered readings are skipped by seq, so nothing is learned twice.
    assert gap_resumed < 1e-9 < 0.01 < gap_fresh, (gap_resumed, gap_fresh)


def _offline(s: CitygridSettings, key: DeviceKey, envelopes: list[bytes], start: int) -> dict[int, float]:
    """Forecasts by seq of the same models run without Kafka from reading `start` on."""
    out = learn_batch([(None, e) for e in envelopes[start:]], lambda _k: None, s.stream)
    forecasts = [Forecast.decode(v) for _k, v in out.forecasts]
    return {f.based_on_seq: f.forecast for f in forecasts}


def _gap(after: dict[int, Forecast], reference: dict[int, float], lo: int, hi: int) -> float:
    return sum(abs(after[q].forecast - reference[q]) for q in range(lo, hi)) / (hi - lo)
