"""Two Faust learning workers on real Kafka, one killed mid-stream: the forecasts are those of one
worker that never stopped, for every reading of every device."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest
from kafka.partitioner.default import murmur2
from market_support import metric, start_worker

from citygrid.devtools.processes import stop
from citygrid.records import Forecast
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey, DeviceRegistry
from citygrid.stream.kafka_topics import read_topic
from citygrid.stream.learning import learn_batch

pytestmark = [pytest.mark.servers, pytest.mark.timeout(300)]

PER_PARTITION = 2  # devices on each readings partition, so each worker learns some
READINGS = 480  # five days of quarter-hours per device


def _devices(partitions: int) -> list[DeviceKey]:
    """Fresh device keys, PER_PARTITION of them on each partition of the readings topic (keyed by id)."""
    by_partition: dict[int, list[DeviceKey]] = {p: [] for p in range(partitions)}
    while any(len(keys) < PER_PARTITION for keys in by_partition.values()):
        key = DeviceKey.generate()
        p = (murmur2(key.device_id.encode()) & 0x7FFFFFFF) % partitions
        if len(by_partition[p]) < PER_PARTITION:
            by_partition[p].append(key)
    return [k for keys in by_partition.values() for k in keys]


def test_two_workers_one_killed_forecast_as_one_worker(live: CitygridSettings, produce, profiles,
                                                       tmp_path: Path, helpers) -> None:
    devices = _devices(live.kafka.partitions)
    registry = DeviceRegistry.load(live.paths.device_registry)
    for k in devices:
        registry.add(k.public_key)
    registry.save(live.paths.device_registry)
    s = live.model_copy(update={"stream": live.stream.model_copy(update={
        "anomaly_warmup": 48, "batch_within_s": 0.1, "state_key": secrets.token_hex(32)})})
    kinds = ["meter", "pv"]
    envelopes = {}
    for i, k in enumerate(devices):  # each device its own series: the real profile, scaled
        kind = kinds[i % 2]
        values = [v * (0.8 + 0.05 * i) for v in profiles[kind][:READINGS]]
        envelopes[k] = (kind, helpers.signed(k, kind, values, start_ms=1_750_000_000_000))

    workers = [start_worker(s, tmp_path / f"worker{i}.log", tmp_path / f"w{i}") for i in range(2)]
    try:
        helpers.wait(lambda: all(metric(p, "python_info") > 0 for _, p in workers), 60, "both workers")
        time.sleep(8)  # both in the group, the partitions shared out
        produce([(k.device_id.encode(), env) for k in devices for env in envelopes[k][1][:READINGS // 2]])
        helpers.wait(lambda: all(metric(p, "citygrid_stream_learned_total") > 0 for _, p in workers), 60,
                     "both workers to learn")
        workers[0][0].kill()  # no graceful shutdown: its changelog is all the survivor gets
        workers[0][0].wait()
        produce([(k.device_id.encode(), env) for k in devices for env in envelopes[k][1][READINGS // 2:]])
        last = {k.device_id: READINGS - 1 for k in devices}

        def all_forecast() -> bool:
            seen = {f.device: f.based_on_seq for f in _forecasts(s) if f.based_on_seq == READINGS - 1}
            return seen == last

        helpers.wait(all_forecast, 180, "the survivor's forecasts of every device's last reading", every_s=2)
        survivor = workers[1][0]
        assert survivor.poll() is None, (tmp_path / "worker1.log").read_text()[-3000:]
    finally:
        for proc, _ in workers:
            if proc.poll() is None:
                stop(proc)

    got: dict[tuple[str, int], set[float]] = {}
    for f in _forecasts(s):
        got.setdefault((f.device, f.based_on_seq), set()).add(f.forecast)
    for k in devices:
        reference = learn_batch([(None, e) for e in envelopes[k][1]], lambda _k: None, s.stream)
        offline = [Forecast.decode(v) for _, v in reference.forecasts]
        expected = {f.based_on_seq: f.forecast for f in offline}
        assert sorted(q for d, q in got if d == k.device_id) == list(range(READINGS)), "a reading was lost"
        # A forecast re-sent by the survivor (its reading re-read past the last commit) is the same one.
        wrong = {q: (got[k.device_id, q], expected[q]) for q in range(READINGS)
                 if any(abs(v - expected[q]) > 1e-9 for v in got[k.device_id, q])}
        assert not wrong, (k.device_id, envelopes[k][0], dict(list(wrong.items())[:5]))


def _forecasts(s: CitygridSettings) -> list[Forecast]:
    forecasts = [Forecast.decode(r.value) for r in read_topic(s.kafka, s.kafka.forecasts_topic)]
    return [f for f in forecasts if f.scope == "device"]
