"""Helpers for the stream layer's integration tests: signed readings on real SimBench data."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from support import wait_until

from citygrid import kafka_clients
from citygrid.reading import Reading, sign_reading
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey
from citygrid.sim.profiles import load_profiles


def signed_readings(key: DeviceKey, kind: str, values: list[float], first_seq: int = 0,
                    start_ms: int | None = None, step_s: int = 900) -> list[bytes]:
    """Envelopes of consecutive readings of one device, ending now unless `start_ms` is given."""
    start_ms = start_ms or int(time.time() * 1000) - len(values) * step_s * 1000
    return [
        sign_reading(Reading(device=key.device_id, seq=first_seq + i, ts_ms=start_ms + i * step_s * 1000,
                             kind=kind, values={"p_kw": round(v, 4)}), key).encode()
        for i, v in enumerate(values)
    ]


@pytest.fixture(scope="session")
def profiles() -> dict[str, list[float]]:
    """One real SimBench household meter and one PV profile (kW, quarter-hours), summer days."""
    by_kind: dict[str, list[float]] = {}
    for p in load_profiles(CitygridSettings().paths.cache_dir):
        by_kind.setdefault(p.kind, [float(v) for v in p.kw[96 * 150:96 * 160]])
    return by_kind


@pytest.fixture
def produce(live: CitygridSettings) -> Callable[[list[tuple[bytes, bytes]]], None]:
    """Write (key, envelope) records to the test's readings topic as the ingest would."""
    producer = kafka_clients.producer(live.kafka, acks="all", linger_ms=5)

    def send(records: list[tuple[bytes, bytes]]) -> None:
        for key, value in records:
            producer.send(live.kafka.readings_topic, key=key, value=value)
        producer.flush(30)

    yield send
    producer.close(5)


@pytest.fixture
def helpers() -> type:
    """The module-level helpers, for test modules (importlib mode cannot import conftest)."""

    class Helpers:
        signed = staticmethod(signed_readings)
        wait = staticmethod(wait_until)

    return Helpers


