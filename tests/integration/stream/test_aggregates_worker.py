"""Feeder forecasts end to end: MQTT districts → ingest header → Faust worker → exact per-interval sums."""

from __future__ import annotations

import secrets
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from support import enrol, wait_until

from citygrid.devtools.processes import spawn, stop
from citygrid.mqtt import Publisher
from citygrid.reading import Reading, sign_reading
from citygrid.records import Forecast
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey
from citygrid.sim.profiles import load_profiles
from citygrid.stream.forecasting import SeriesState, observe
from citygrid.stream.ingest import Ingest
from citygrid.stream.kafka_topics import read_topic
from citygrid.stream.learning import site_for
from citygrid.topics import DISTRICT_HEADER, readings_topic

pytestmark = [pytest.mark.servers, pytest.mark.timeout(150)]

Q_MS = 900_000
STEPS = 48  # half a summer day of quarter-hours per device


def _fleet(cache: Path) -> dict[str, list[tuple[DeviceKey, str, list[float]]]]:
    """Two districts of real SimBench prosumers: north three meters, south two meters and a PV."""
    profiles = load_profiles(cache)
    meters = [p for p in profiles if p.kind == "meter"][:5]
    pv = next(p for p in profiles if p.kind == "pv")
    assert len(meters) == 5, "SimBench profiles missing under .cache; run `citygrid demo` once"

    def series(p) -> list[float]:
        return [round(float(v), 4) for v in p.kw[96 * 150 + 28:96 * 150 + 28 + STEPS]]

    return {"north": [(DeviceKey.generate(), "meter", series(p)) for p in meters[:3]],
            "south": [(DeviceKey.generate(), "meter", series(p)) for p in meters[3:]]
            + [(DeviceKey.generate(), "pv", series(pv))]}


def _publish(s: CitygridSettings, fleet: dict, identities: dict[str, CitygridSettings], start_ms: int,
             intervals: range) -> int:
    """Each device publishes on its own connection, as itself (the broker lets no one else)."""
    pubs = {d: Publisher(ident.mqtt, client_id=f"edge-{d}") for d, ident in identities.items()}
    sent = []
    try:
        for pub in pubs.values():
            pub.connect()
        for i in intervals:  # interval by interval, as live devices would
            for district, devices in fleet.items():
                for key, kind, values in devices:
                    reading = Reading(device=key.device_id, seq=i, ts_ms=start_ms + i * Q_MS, kind=kind,
                                      values={"p_kw": values[i]})
                    topic = readings_topic(s.mqtt.readings_topic, district, key.device_id)
                    sent.append(pubs[key.device_id].publish_async(topic, sign_reading(reading, key).encode()))
        for info in sent:
            info.wait_for_publish(10)
    finally:
        for pub in pubs.values():
            pub.close()
    return len(sent)


def test_feeder_forecasts_learn_the_exact_interval_sums_of_each_district(
        live: CitygridSettings, tmp_path: Path) -> None:
    # The whole backlog may be read from one partition before another's: the lag must span it.
    s = live.model_copy(update={"stream": live.stream.model_copy(update={
        "batch_within_s": 0.1, "aggregate_max_lag_steps": STEPS, "state_key": secrets.token_hex(32)})})
    fleet = _fleet(s.paths.cache_dir)
    identities = {key.device_id: enrol(s, key, district, kind)
                  for district, devices in fleet.items() for key, kind, _values in devices}
    start_ms = (int(time.time() * 1000) // Q_MS - STEPS) * Q_MS

    expected: dict[str, list[float]] = defaultdict(lambda: [0.0] * STEPS)
    for district, devices in fleet.items():
        for _key, kind, values in devices:
            for i, v in enumerate(values):
                expected[f"feeder/{district}/{kind}"][i] += v
    closed = STEPS - 1  # the newest interval stays open until a later one arrives

    def records() -> list[Forecast]:
        return [Forecast.decode(r.value) for r in read_topic(s.kafka, s.kafka.forecasts_topic)]

    ingest = Ingest(s)
    halt = threading.Event()
    thread = threading.Thread(target=ingest.run, args=(halt,), daemon=True)
    thread.start()
    worker = spawn(["stream", "worker"], s.as_env(), tmp_path / "worker.log")
    try:
        # The first interval while the worker runs, so each group knows its members; then the rest.
        n = _publish(s, fleet, identities, start_ms, range(1))
        wait_until(lambda: len(records()) >= n, 60, "the worker to learn the first interval")
        n += _publish(s, fleet, identities, start_ms, range(1, STEPS))
        wait_until(lambda: sum(r.scope == "feeder" for r in records()) >= 3 * closed, 60,
                   "feeder forecasts of every closed interval")
    finally:
        stop(worker)
        halt.set()
        thread.join(30)
    stored = read_topic(s.kafka, s.kafka.readings_topic)
    assert len(stored) == n
    assert {dict(r.headers)[DISTRICT_HEADER] for r in stored} == {b"north", b"south"}

    out = records()
    assert sum(r.scope == "device" for r in out) == n  # the per-device learner still forecasts every reading
    assert all(r.device is None for r in out if r.scope == "feeder")
    feeders: dict[str, list[Forecast]] = defaultdict(list)
    for r in out:
        if r.scope == "feeder":
            feeders[f"feeder/{r.group}/{r.kind}"].append(r)
    assert set(feeders) == set(expected) == {"feeder/north/meter", "feeder/south/meter", "feeder/south/pv"}
    for group, got in feeders.items():
        members = {"feeder/north/meter": 3, "feeder/south/meter": 2, "feeder/south/pv": 1}[group]
        assert [r.interval_ms for r in got] == [start_ms + i * Q_MS for i in range(closed)], group
        assert [r.members for r in got] == [members] * closed, group
        assert [r.total for r in got] == pytest.approx(expected[group][:closed], abs=1e-9), group
        assert [r.ts_ms for r in got] == [start_ms + (i + 1) * Q_MS for i in range(closed)]
        # The forecasts are those of the stream's own forecaster run on the sums.
        state = SeriesState(s.stream.energy_step_s, s.stream.energy_season_steps, model_name=s.stream.model,
                            site=site_for(group.rsplit("/", 1)[1], s.stream))  # PV: under the site's sky
        offline = [observe(state, v, start_ms + i * Q_MS).forecast
                   for i, v in enumerate(expected[group][:closed])]
        assert [r.forecast for r in got] == pytest.approx(offline, abs=1e-9), group
        assert got[-1].n == closed - 1
