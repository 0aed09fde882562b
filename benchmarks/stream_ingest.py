"""Ingest throughput and latency, MQTT → Kafka, against a plain paho → kafka-python pipe.

Both pipelines run as their own process on the shared Mosquitto and Kafka, in
the same run. Throughput: readings queued in the broker for the pipeline's
persistent session while it is down are drained (rate from Kafka's append
times). Latency: readings published at a fixed rate, each stamped at publish;
latency = the broker's LogAppendTime minus that stamp. A stage breakdown
(in-process, no I/O) says where the ingest's time goes.

    PYTHONPATH=.dev .venv/bin/python -m benchmarks.stream_ingest [--drain N] [--rate R]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from kafka.admin import NewTopic
from rich.console import Console
from rich.table import Table

from benchmarks.results import save
from citygrid import kafka_clients
from citygrid.devtools.local_kafka import as_principal
from citygrid.devtools.processes import spawn, stop
from citygrid.mqtt import Publisher
from citygrid.reading import Reading, SignedReading, sign_reading
from citygrid.settings import CitygridSettings, PathSettings
from citygrid.signing import DeviceKey, DeviceRegistry
from citygrid.stream.ingest import prepare_session
from citygrid.stream.kafka_topics import read_topic, topic_end
from citygrid.stream.validation import IngestValidator
from citygrid.topics import readings_filter, readings_topic


def settings(tag: str, data_dir: Path) -> CitygridSettings:
    """Isolated state, topics and client ids for one pipeline."""
    base = as_principal(CitygridSettings(), "admin")  # the local broker's admin: the benchmark's harness
    data_dir.mkdir(parents=True, exist_ok=True)
    return base.model_copy(update={
        "paths": PathSettings.under(data_dir, base.paths.cache_dir),
        "mqtt": base.mqtt.model_copy(update={"readings_topic": f"b{tag}/readings",
                                              "ingest_client_id": f"bench-{tag}"}),
        "kafka": base.kafka.model_copy(update={"readings_topic": f"bench-{tag}",
                                                "dead_letter_topic": f"bench-{tag}.dead"}),
    })


def create_topics(s: CitygridSettings) -> None:
    """Topics stamped by the broker (LogAppendTime), so latency is measured at the append."""
    admin = kafka_clients.admin(s.kafka)
    try:
        admin.create_topics([NewTopic(t, s.kafka.partitions, 1,
                                      topic_configs={"message.timestamp.type": "LogAppendTime"})
                             for t in (s.kafka.readings_topic, s.kafka.dead_letter_topic)])
    finally:
        admin.close()


def plain_pipe(s: CitygridSettings) -> None:
    """The baseline: forward every MQTT message to Kafka, keyed by the topic's device, no checks."""
    producer = kafka_clients.producer(s.kafka, linger_ms=5, batch_size=256 * 1024)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=s.mqtt.ingest_client_id,
                         clean_session=False, protocol=mqtt.MQTTv311)
    client.on_connect = lambda c, *_: c.subscribe(readings_filter(s.mqtt.readings_topic), qos=1)
    client.on_message = lambda c, u, m: producer.send(
        s.kafka.readings_topic, key=m.topic.rsplit("/", 1)[1].encode(), value=m.payload)
    client.connect(s.mqtt.host, s.mqtt.port, keepalive=30)
    client.loop_forever()


class Fleet:
    """Keys of simulated devices, registered, and a clock of sequence numbers."""

    def __init__(self, s: CitygridSettings, devices: int) -> None:
        self.keys = [DeviceKey.generate() for _ in range(devices)]
        reg = DeviceRegistry()
        for k in self.keys:
            reg.add(k.public_key)
        reg.save(s.paths.device_registry)
        self.seq = [0] * devices

    def envelope(self, i: int, ts_ms: int) -> tuple[str, bytes]:
        d = i % len(self.keys)
        key = self.keys[d]
        r = Reading(device=key.device_id, seq=self.seq[d], ts_ms=ts_ms, kind="meter",
                    values={"p_kw": float(i % 97) / 10})
        self.seq[d] += 1
        return key.device_id, sign_reading(r, key).encode()


def publish(s: CitygridSettings, items: list[tuple[str, bytes]], rate: float | None = None,
            stamp: Fleet | None = None) -> None:
    """Publish QoS 1; at `rate`/s with fresh timestamps (signed at publish) when given."""
    pub = Publisher(s.mqtt, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}")
    pub.connect()
    infos = []
    t0 = time.perf_counter()
    try:
        for i, (device, payload) in enumerate(items):
            if rate:
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                device, payload = stamp.envelope(i, int(time.time() * 1000))
            infos.append(pub.publish_async(readings_topic(s.mqtt.readings_topic, "d1", device), payload))
        for info in infos:
            info.wait_for_publish(60)
    finally:
        pub.close()


def wait_end(s: CitygridSettings, n: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while topic_end(s.kafka, s.kafka.readings_topic) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {topic_end(s.kafka, s.kafka.readings_topic)} of {n} in Kafka")
        time.sleep(0.5)


Starter = Callable[[dict[str, str], Path], subprocess.Popen]


def run_pipeline(name: str, start: Starter, drain: int, rate: float, seconds: float, devices: int,
                 workdir: Path) -> dict:
    """Drain a preloaded queue, then hold a fixed rate; return throughput and latency."""
    s = settings(uuid.uuid4().hex[:8], workdir / name)
    create_topics(s)
    fleet = Fleet(s, devices)
    prepare_session(s)
    now = int(time.time() * 1000)
    publish(s, [fleet.envelope(i, now) for i in range(drain)])
    proc = start(s.as_env(), s.paths.data_dir / "pipeline.log")
    try:
        wait_end(s, drain, 600)
        n_rate = int(rate * seconds)
        publish(s, [("", b"")] * n_rate, rate=rate, stamp=fleet)
        wait_end(s, drain + n_rate, 120)
    finally:
        stop(proc)
    recs = read_topic(s.kafka, s.kafka.readings_topic, timeout_s=120)
    append = np.array(sorted(r.timestamp for r in recs))
    drained = append[:drain]
    throughput = (drain - 1) / max((drained[-1] - drained[0]) / 1000, 1e-3)
    lat = np.array([r.timestamp - SignedReading.decode(r.value).reading().ts_ms for r in recs
                    if r.timestamp >= append[drain]])
    return {"pipeline": name, "drained": drain, "throughput_per_s": throughput,
            "latency_rate_per_s": rate, "latency_samples": len(lat),
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max())}


def stage_breakdown(n: int = 20000) -> dict[str, float]:
    """Microseconds per reading for each step of the ingest's check, without I/O."""
    fleet = Fleet(settings("stages", Path("/tmp") / f"citygrid-bench-stages-{uuid.uuid4().hex[:6]}"), 50)
    reg = DeviceRegistry({k.device_id: k.public_key for k in fleet.keys})
    now = int(time.time() * 1000)
    payloads = [fleet.envelope(i, now)[1] for i in range(n)]
    out = {}

    def timed(name: str, fn) -> None:
        t = time.perf_counter()
        for p in payloads:
            fn(p)
        out[name] = (time.perf_counter() - t) / n * 1e6

    timed("envelope decode (msgpack)", SignedReading.decode)
    timed("schema parse (msgpack + pydantic)", lambda p: SignedReading.decode(p).reading())
    signed = [SignedReading.decode(p) for p in payloads]
    t = time.perf_counter()
    for sr in signed:
        sr.verify(reg)
    out["parse + ed25519 verify"] = (time.perf_counter() - t) / n * 1e6
    validator = IngestValidator(reg)
    timed("full check (parse, verify, window)", lambda p: validator.check(p, now))
    return out


def start_ingest(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """The real ingest process, as deployed."""
    return spawn(["stream", "ingest"], env, log_path)


def start_pipe(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """The baseline pipe, this module in --pipe mode."""
    with open(log_path, "ab") as logf:
        return subprocess.Popen([sys.executable, "-m", "benchmarks.stream_ingest", "--pipe"], env=env,
                                stdout=logf, stderr=subprocess.STDOUT)


def main() -> None:
    """Run both pipelines and the breakdown; print a table and write JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--drain", type=int, default=30000)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--pipe", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.pipe:
        plain_pipe(CitygridSettings())
        return
    workdir = Path("/tmp") / f"citygrid-bench-{uuid.uuid4().hex[:6]}"
    rows = [run_pipeline(name, start, a.drain, a.rate, a.seconds, a.devices, workdir)
            for name, start in (("plain paho→kafka-python", start_pipe),
                                ("citygrid ingest (verified)", start_ingest))]
    report(rows, stage_breakdown(), a)


def report(rows: list[dict], stages: dict[str, float], a: argparse.Namespace) -> None:
    base, ours = rows
    table = Table(title="MQTT → Kafka ingest (2 cores, shared with other work: figures under load)")
    for col in ("pipeline", "drain readings/s", f"p50 ms @{a.rate:.0f}/s", f"p99 ms @{a.rate:.0f}/s",
                "max ms"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["pipeline"], f"{r['throughput_per_s']:,.0f}", f"{r['p50_ms']:.0f}",
                      f"{r['p99_ms']:.0f}", f"{r['max_ms']:.0f}")
    ratio = ours["throughput_per_s"] / base["throughput_per_s"]
    console = Console()
    console.print(table)
    console.print(f"verified ingest / plain pipe throughput: {ratio:.2f}; target ≥ 50,000/s "
                  f"{'met' if ours['throughput_per_s'] >= 50000 else 'missed'}; p99 < 250 ms "
                  f"{'met' if ours['p99_ms'] < 250 else 'missed'} at {a.rate:.0f}/s")
    st = Table("stage (in-process, no I/O)", "µs / reading", "max readings/s on one core",
               title="where the ingest's time goes")
    for k, v in stages.items():
        st.add_row(k, f"{v:.1f}", f"{1e6 / v:,.0f}")
    console.print(st)
    save("stream_ingest", {"rows": rows, "ratio_vs_plain_pipe": ratio, "stages_us": stages,
                           "args": vars(a), "note": "2-core machine shared with concurrent work"})


if __name__ == "__main__":
    main()
