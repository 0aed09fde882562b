"""Attacks on a real stream worker through Kafka: a forged reading written straight to the readings
topic is never learned (dead-lettered, counted), and a pickle that runs a shell command, written to
the worker's changelog topic, is never executed when the restarted worker restores its state: it is
refused, counted, and the device's models start afresh."""

from __future__ import annotations

import os
import pickle
import secrets
import urllib.request
from pathlib import Path

import pytest
from support import free_port, wait_until

from citygrid import kafka_clients
from citygrid.devtools.processes import spawn, stop
from citygrid.reading import Reading, SignedReading
from citygrid.records import DeadLetter, Forecast
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey, DeviceRegistry
from citygrid.stream.kafka_topics import read_topic
from citygrid.topics import dead_letters_topic

pytestmark = [pytest.mark.servers, pytest.mark.timeout(240)]

T0 = 1_750_000_000_000
FIRST, SECOND = 48, 12


class _Shell:
    """Unpickling this runs a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_a_forged_reading_is_not_learned_and_a_changelog_pickle_never_runs(
        live: CitygridSettings, produce, helpers, tmp_path: Path) -> None:
    device, attacker = DeviceKey.generate(), DeviceKey.generate()
    registry = DeviceRegistry.load(live.paths.device_registry)
    registry.add(device.public_key)
    registry.save(live.paths.device_registry)
    port = free_port()
    s = live.model_copy(update={"metrics_port": port, "stream": live.stream.model_copy(update={
        "batch_within_s": 0.1, "state_key": secrets.token_hex(32)})})
    load = [1.0 + 0.5 * (i % 4) for i in range(FIRST + SECOND)]
    envelopes = helpers.signed(device, "meter", load, start_ms=T0)
    key = device.device_id.encode()
    forged_body = Reading(device=device.device_id, seq=FIRST, ts_ms=T0 + FIRST * 900_000, kind="meter",
                          values={"p_kw": 999.0}).body()
    forged = SignedReading(forged_body, attacker.sign(forged_body)).encode()

    def forecasts() -> list[Forecast]:
        return [Forecast.decode(r.value) for r in read_topic(s.kafka, s.kafka.forecasts_topic)]

    produce([(key, e) for e in envelopes[:FIRST]] + [(key, forged)])
    dead_topic = dead_letters_topic(s.kafka.readings_topic, "worker")
    worker = spawn(["stream", "worker"], s.as_env(), tmp_path / "worker1.log")
    try:
        wait_until(lambda: len(forecasts()) >= FIRST, 120, "forecasts of the genuine readings")
        wait_until(lambda: len(read_topic(s.kafka, dead_topic)) >= 1, 30, "the forged reading's dead letter")
        assert _metric(port, 'citygrid_stream_unverified_total{reason="bad_signature"}') == 1
    finally:
        # A clean stop commits every offset: the restarted worker reads only the new readings, so its
        # first forecast shows whether it used the stored models (n = 48) or started afresh (n = 0).
        assert stop(worker) == 0
    assert [f.based_on_seq for f in forecasts()] == list(range(FIRST))  # the forgery was not learned
    (letter,) = [DeadLetter.decode(r.value) for r in read_topic(s.kafka, dead_topic)]
    assert letter.reason == "bad_signature" and letter.payload() == forged

    # The attacker replaces the device's model state on the worker's changelog topic.
    marker = tmp_path / "pwned"
    changelog = f"{s.kafka.stream_app_id}-device-models-changelog"
    producer = kafka_clients.producer(s.kafka, acks="all")
    producer.send(changelog, key=key, value=pickle.dumps((1, _Shell(f"touch {marker}"))))
    producer.flush(30)
    producer.close(5)

    produce([(key, e) for e in envelopes[FIRST:]])
    worker = spawn(["stream", "worker"], s.as_env(), tmp_path / "worker2.log")
    try:
        wait_until(lambda: any(f.based_on_seq == FIRST + SECOND - 1 for f in forecasts()), 120,
                   "forecasts after the restart")
        refused = _metric(port, 'citygrid_stream_state_refused_total{table="device-models"}')
        resets = _metric(port, "citygrid_stream_state_resets_total")
    finally:
        stop(worker)
    assert not marker.exists(), "the changelog's pickle ran inside the worker"
    assert refused == 1 and resets == 1
    after = {f.based_on_seq: f for f in forecasts() if f.based_on_seq >= FIRST}
    # The refused state was not used: the models started afresh. (The restarted worker's first
    # forecast is taken, whichever reading it follows: see the note on Faust's first record after a
    # restart in the learning worker's test.)
    assert after[min(after)].n == 0
    assert after[max(after)].n == len(after) - 1  # and went on learning from there
