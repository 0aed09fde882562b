"""Learning throughput inside a Faust worker vs the same River models in a bare loop.

Both learn the same readings (real SimBench profiles, many devices) with the same
code (`citygrid.stream.learning.process`): the bare loop in this process from a
list, the worker (`citygrid stream worker`, a separate process, with every agent
the app declares) from a preloaded Kafka topic. Worker throughput comes from the
broker's append times of the forecasts it writes, so start-up and recovery are
excluded.

    PYTHONPATH=.dev .venv/bin/python -m benchmarks.stream_learning [--readings N] [--devices D]
"""

from __future__ import annotations

import argparse
import secrets
import time
import uuid
from pathlib import Path

import numpy as np
from kafka.admin import NewTopic
from rich.console import Console
from rich.table import Table

from benchmarks.results import save
from citygrid import kafka_clients
from citygrid.devtools.local_kafka import as_principal
from citygrid.devtools.processes import spawn, stop
from citygrid.reading import Reading, SignedReading, sign_reading
from citygrid.settings import CitygridSettings, PathSettings
from citygrid.signing import DeviceKey
from citygrid.sim.profiles import load_profiles
from citygrid.stream.kafka_topics import ensure_topics, read_topic, topic_end
from citygrid.stream.learning import LiveStates, learn_batch, new_state, process

T0 = 1_750_000_000_000


def settings(tag: str) -> CitygridSettings:
    """Isolated state, topics and app id."""
    base = as_principal(CitygridSettings(), "admin")  # the local broker's admin: the benchmark's harness
    return base.model_copy(update={
        "paths": PathSettings.under(Path("/tmp") / f"citygrid-bench-{tag}", base.paths.cache_dir),
        "kafka": base.kafka.model_copy(update={
            "readings_topic": f"lb-{tag}", "stats_topic": f"lb-{tag}.stats", "stream_app_id": f"lb-{tag}",
            "forecasts_topic": f"lb-{tag}.forecasts", "alerts_topic": f"lb-{tag}.alerts"}),
        "stream": base.stream.model_copy(update={"state_key": secrets.token_hex(32)}),
    })


def workload(readings: int, devices: int, cache_dir: Path) -> list[tuple[bytes, bytes]]:
    """(key, envelope) of `devices` devices replaying SimBench profiles, interleaved like live traffic."""
    profiles = load_profiles(cache_dir)
    keys = [DeviceKey.generate() for _ in range(devices)]
    per = readings // devices
    out = []
    for i in range(per):
        for d, key in enumerate(keys):
            p = profiles[d % len(profiles)]
            r = Reading(device=key.device_id, seq=i, ts_ms=T0 + i * 900_000, kind=p.kind,
                        values={"p_kw": float(p.kw[(i + 96 * d) % len(p.kw)])})
            out.append((key.device_id.encode(), sign_reading(r, key).encode()))
    return out


def bare_loop(records: list[tuple[bytes, bytes]], s: CitygridSettings) -> dict[str, float]:
    """Readings/s of the models alone, and of the agent's whole per-batch logic without Kafka."""
    readings = [SignedReading.decode(v).reading() for _k, v in records]
    states = {}
    t = time.perf_counter()
    for r in readings:
        state = states.get(r.device)
        if state is None:
            state = states[r.device] = new_state(r, s.stream)
        process(state, r)
    models_only = len(readings) / (time.perf_counter() - t)
    stored: dict[bytes, bytes] = {}
    cache = LiveStates()
    t = time.perf_counter()
    for i in range(0, len(records), s.stream.batch_max):
        stored.update(learn_batch(records[i:i + s.stream.batch_max], stored.get, s.stream, cache).states)
    whole = len(records) / (time.perf_counter() - t)
    return {"models_only": models_only, "learn_batch": whole}


def in_faust(records: list[tuple[bytes, bytes]], s: CitygridSettings) -> float:
    """Readings/s of a worker process learning a preloaded topic."""
    admin = kafka_clients.admin(s.kafka)
    try:
        admin.create_topics([NewTopic(s.kafka.forecasts_topic, s.kafka.partitions, 1,
                                      topic_configs={"message.timestamp.type": "LogAppendTime"})])
    finally:
        admin.close()
    ensure_topics(s.kafka, [s.kafka.readings_topic, s.kafka.stats_topic, s.kafka.alerts_topic])
    producer = kafka_clients.producer(s.kafka, linger_ms=20, batch_size=512 * 1024)
    for k, v in records:
        producer.send(s.kafka.readings_topic, key=k, value=v)
    producer.flush(60)
    producer.close()
    proc = spawn(["stream", "worker"], s.as_env(), s.paths.data_dir / "worker.log")
    try:
        deadline = time.monotonic() + 900
        while topic_end(s.kafka, s.kafka.forecasts_topic) < len(records):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the worker did not learn every reading; see "
                                   f"{s.paths.data_dir / 'worker.log'}")
            time.sleep(1)
    finally:
        stop(proc)
    stamps = np.array(sorted(r.timestamp for r in read_topic(s.kafka, s.kafka.forecasts_topic, 120)))
    return (len(stamps) - 1) / max((stamps[-1] - stamps[0]) / 1000, 1e-3)


def main() -> None:
    """Measure both, print a table and write JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=40000)
    ap.add_argument("--devices", type=int, default=100)
    a = ap.parse_args()
    s = settings(uuid.uuid4().hex[:8])
    records = workload(a.readings, a.devices, s.paths.cache_dir)
    bare = bare_loop(records, s)
    faust_rate = in_faust(records, s)
    ratio = faust_rate / bare["learn_batch"]
    table = Table("where", "readings/s", "vs bare loop",
                  title=f"online learning, {len(records):,} readings of {a.devices} devices "
                        "(2 cores shared with other work: figures under load)")
    table.add_row("River models only (forecaster, anomaly, ADWIN), bare loop", f"{bare['models_only']:,.0f}",
                  f"{bare['models_only'] / bare['learn_batch']:.2f}")
    table.add_row("agent logic (decode, models, pickle state), bare loop", f"{bare['learn_batch']:,.0f}",
                  "1.00")
    table.add_row("inside a Faust worker (real Kafka, changelog, all agents)", f"{faust_rate:,.0f}",
                  f"{ratio:.2f}")
    console = Console()
    console.print(table)
    console.print(f"target ≥ 80% of the bare loop: {'met' if ratio >= 0.8 else 'missed'} ({ratio:.0%})")
    save("stream_learning", {"bare_loop": bare, "faust_worker": faust_rate, "ratio": ratio,
                             "args": vars(a), "note": "2-core machine shared with concurrent work"})


if __name__ == "__main__":
    main()
