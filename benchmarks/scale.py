"""How CPU, memory and latency grow with the fleet: 1,000, 10,000 and 100,000 devices, the real pipeline.

    bash scripts/bench.sh scale
    PYTHONPATH=.dev .venv/bin/python -m benchmarks.scale [--sizes 1000,10000,100000] [--rate 400]
        [--per-device 3] [--max-readings 100000] [--no-chart]

Per fleet size, a fresh pipeline of real processes, each as its own Kafka principal: a private TLS
Mosquitto (dynamic security) started here → `citygrid stream ingest` (verify, dedupe stage in Kafka
transactions) → the shared Kafka → `citygrid stream worker` (every agent of the Faust app) and `citygrid
ledger anchor` (re-verify, Merkle root per interval on the dev chain). The fleet (benchmarks.scale_fleet)
is enrolled in the registry and published through a few gateway connections; every reading is signed by
its device's key when sent. Time-compressed: readings go out at a fixed `--rate` whatever the fleet size,
each device sending `--per-device` readings (the same for every size, so the sizes compare; a fleet round
apart), fewer where that would exceed `--max-readings`. One each by default: the 100,000-device fleet's
100,000 readings already take the worker most of the ~15 minutes the whole run may take on two cores, and
a device's first reading (its state created) costs the worker more than later ones, so the figures are an
upper bound for a fleet whose devices all have state.

Measured per stage, from /proc (benchmarks.process_usage), between the end of a warm-up (a few devices
through every stage, so start-up is excluded) and the moment every reading is forecast and anchored:
CPU-seconds per 1,000 readings (user + system of the process tree), memory (PSS) and its growth per
device, and the state per device (bytes of the worker's table state and the dedupe stage's windows, from
their changelog topics). End-to-end latency from a reading's `ts_ms` (its send time) to the broker's
append time of its forecast (LogAppendTime), and to the anchoring of its root (which waits for the
interval, `--anchor-interval` s, and as long again for late readings). A linear fit over the sizes
projects each stage to 1,000,000 devices (benchmarks.scale_projection), written into the chart's
production values.
"""

from __future__ import annotations

import argparse
import datetime
import json
import secrets
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from kafka import TopicPartition
from kafka.admin import NewTopic
from rich.console import Console
from rich.table import Table

from benchmarks import scale_projection as projection
from benchmarks.mqtt_tls import free_port
from benchmarks.process_usage import Usage, usage
from benchmarks.results import save
from benchmarks.scale_fleet import Fleet, Gateway
from citygrid import kafka_clients
from citygrid.devtools.local_kafka import as_principal, principals
from citygrid.devtools.local_servers import mosquitto_server
from citygrid.devtools.processes import spawn, stop
from citygrid.ledger.anchor_store import AnchorStore
from citygrid.ops.enroll import enroll_ingest
from citygrid.ops.kafka_access import apply
from citygrid.settings import CitygridSettings, PathSettings
from citygrid.stream.ingest import prepare_session
from citygrid.stream.kafka_topics import ensure_topics
from citygrid.topics import dead_letters_topic, dedupe_state_topic, verified_readings_topic

CHART_VALUES = Path(__file__).parent.parent / "deploy" / "helm" / "citygrid" / "ci" / "production-values.yaml"
STAGES = ("ingest", "worker", "anchorer")
WARM_DEVICES = 20
# A dev account no test signs with (the tests anchor as //Alice): the shared dev chain's nonces stay apart.
SIGNER = "//Eve"
RATES = {"15 min": 900, "1 min": 60}  # one reading per device per …: the projection's rates


def size_settings(base: CitygridSettings, root: Path, anchor_interval_s: int) -> CitygridSettings:
    """One size's own topics, groups, MQTT root and identities, state and state key."""
    tag = uuid.uuid4().hex[:8]
    k, m = base.kafka, base.mqtt
    return base.model_copy(update={
        "paths": PathSettings.under(root / tag, base.paths.cache_dir),
        "mqtt": m.model_copy(update={
            "readings_topic": f"s{tag}/readings", "ingest_client_id": f"ingest-{tag}",
            "commands_topic": f"s{tag}/commands"}),
        "kafka": k.model_copy(update={
            "readings_topic": f"scale-{tag}", "dead_letter_topic": f"scale-{tag}.dead",
            "stats_topic": f"scale-{tag}.stats", "forecasts_topic": f"scale-{tag}.forecasts",
            "alerts_topic": f"scale-{tag}.alerts", "orders_topic": f"scale-{tag}.orders",
            "trades_topic": f"scale-{tag}.trades", "stream_app_id": f"scale-{tag}",
            "ingest_group": f"scale-ingest-{tag}", "anchor_group": f"scale-anchorer-{tag}"}),
        "anchor": base.anchor.model_copy(update={"interval_s": anchor_interval_s, "idle_flush_s": 1.0}),
        "stream": base.stream.model_copy(update={"state_key": secrets.token_hex(32)}),
        "chain": base.chain.model_copy(update={"signer_uri": SIGNER}),
    })


def create_topics(s: CitygridSettings) -> None:
    """Every topic of the pipeline, the forecasts stamped by the broker (LogAppendTime), and the ACLs."""
    k = s.kafka
    client = kafka_clients.admin(k)
    try:
        client.create_topics([NewTopic(k.forecasts_topic, k.partitions, 1,
                                       topic_configs={"message.timestamp.type": "LogAppendTime"})])
    finally:
        client.close()
    state = dedupe_state_topic(k)
    ensure_topics(k, [k.readings_topic, k.dead_letter_topic, verified_readings_topic(k), state, k.stats_topic,
                      k.alerts_topic, k.orders_topic, k.trades_topic, dead_letters_topic(k.readings_topic,
                                                                                         "anchorer")],
                  {state: {"cleanup.policy": "compact"}})
    apply(s)


def as_service(s: CitygridSettings, principal: str) -> dict[str, str]:
    """The environment of a process running as `principal` on the shared Kafka."""
    password = principals(CitygridSettings())[principal]
    return s.model_copy(update={"kafka": s.kafka.model_copy(update={"username": principal,
                                                                    "password": password})}).as_env()


def start_stages(s: CitygridSettings) -> dict[str, object]:
    """The three real processes of the pipeline, each as its own Kafka principal (the ingest also as its
    own broker identity, its persistent session prepared first)."""
    ingest = s.model_copy(update={"mqtt": enroll_ingest(s, 1)[0].apply(s.mqtt)})
    prepare_session(ingest)
    logs = s.paths.data_dir
    return {
        "ingest": spawn(["stream", "ingest"], as_service(ingest, "ingest"), logs / "ingest.log"),
        "worker": spawn(["stream", "worker"], as_service(s, "worker"), logs / "worker.log"),
        "anchorer": spawn(["ledger", "anchor"], as_service(s, "anchorer"), logs / "anchorer.log"),
    }


class ForecastTail:
    """The forecasts topic read as it grows: the broker's append time of each device's forecast, by
    (device, seq of the reading it follows)."""

    def __init__(self, s: CitygridSettings) -> None:
        self.consumer = kafka_clients.consumer(s.kafka, enable_auto_commit=False)
        self.consumer.assign([TopicPartition(s.kafka.forecasts_topic, p) for p in range(s.kafka.partitions)])
        self.consumer.seek_to_beginning()
        self.appended: dict[tuple[str, int], int] = {}

    def poll(self) -> int:
        """Read what is new; how many device forecasts were seen so far."""
        for records in self.consumer.poll(timeout_ms=500, max_records=20_000).values():
            for rec in records:
                f = json.loads(rec.value)
                if f.get("scope") == "device" and f.get("based_on_seq") is not None:
                    self.appended.setdefault((f["device"], f["based_on_seq"]), rec.timestamp)
        return len(self.appended)

    def close(self) -> None:
        """Leave the topic."""
        self.consumer.close()


def anchored_count(s: CitygridSettings) -> int:
    """Readings whose batch is on chain (0 until the anchorer made its store)."""
    if not s.paths.anchor_store.exists():
        return 0
    db = sqlite3.connect(f"file:{s.paths.anchor_store}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute("SELECT COALESCE(SUM(count), 0) FROM batches WHERE anchored_s IS NOT NULL"
                          ).fetchone()[0]
    except sqlite3.OperationalError:  # the schema not made yet
        return 0
    finally:
        db.close()


def wait_done(s: CitygridSettings, tail: ForecastTail, n: int, procs: dict, timeout_s: float) -> None:
    """Until `n` readings are forecast and anchored; fails if a stage died or time ran out."""
    deadline = time.monotonic() + timeout_s
    while True:
        forecast, anchored = tail.poll(), anchored_count(s)
        if forecast >= n and anchored >= n:
            return
        dead = [name for name, p in procs.items() if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "".join(f"\n--- {name}\n" + (s.paths.data_dir / f"{name}.log").read_text()[-3000:]
                           for name in dead or procs)
            raise RuntimeError(f"{dead or 'timeout'}: {forecast} of {n} forecast, {anchored} anchored{logs}")
        time.sleep(0.2)


def sample_state(s: CitygridSettings, topic: str, per_partition: int = 500) -> float:
    """Mean bytes of a keyed state topic's latest value per key, over the last `per_partition` records of
    each partition (a changelog: the latest record of a key is its state)."""
    consumer = kafka_clients.consumer(s.kafka, enable_auto_commit=False, isolation_level="read_uncommitted")
    tps = [TopicPartition(topic, p) for p in range(s.kafka.partitions)]
    consumer.assign(tps)
    ends = consumer.end_offsets(tps)
    for tp in tps:
        consumer.seek(tp, max(0, ends[tp] - per_partition))
    latest: dict[bytes, int] = {}
    deadline = time.monotonic() + 60
    try:  # until a poll finds nothing: a transactional topic's last offset is a marker no poll returns
        while time.monotonic() < deadline and (batch := consumer.poll(timeout_ms=1000)):
            for records in batch.values():
                latest.update((r.key, len(r.value or b"")) for r in records)
    finally:
        consumer.close()
    return float(np.mean(list(latest.values()))) if latest else 0.0


def latencies(sent: dict[tuple[str, int], int], done_ms: dict[tuple[str, int], float]) -> dict[str, float]:
    """p50, p99 and max (ms) from each reading's send time to its `done_ms`."""
    lat = np.array([done_ms[k] - t for k, t in sent.items() if k in done_ms])
    done = np.array([done_ms[k] for k in sent if k in done_ms])
    return {"p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max()), "n": int(lat.size),
            "per_s": float((lat.size - 1) / max((done.max() - done.min()) / 1000, 1e-3))}


def anchored_at(s: CitygridSettings) -> dict[tuple[str, int], float]:
    """When each anchored reading's root was included (ms), from the anchorer's store."""
    store = AnchorStore(s.paths.anchor_store)
    try:
        rows = store.db.execute("SELECT l.device, l.seq, b.anchored_s FROM leaves l JOIN batches b "
                                "ON l.batch_id = b.id WHERE b.anchored_s IS NOT NULL").fetchall()
    finally:
        store.close()
    return {(d, seq): at * 1000 for d, seq, at in rows}


def stage_figures(before: Usage, after: Usage, readings: int, devices: int) -> dict[str, float]:
    """One stage's CPU per 1,000 readings and memory, from its usage before and after the run."""
    cpu = after.cpu_s - before.cpu_s
    return {"cpu_s": cpu, "cpu_s_per_1k": cpu / readings * 1000, "memory_bytes": after.pss_bytes,
            "memory_before_bytes": before.pss_bytes, "rss_bytes": after.rss_bytes,
            "growth_per_device": (after.pss_bytes - before.pss_bytes) / devices, "processes": after.processes}


def run_size(base: CitygridSettings, devices: int, per_device: int, a: argparse.Namespace,
             broker_pid: int) -> dict:
    """One fleet size through a fresh pipeline; its figures."""
    s = size_settings(base, Path(a.tmp), a.anchor_interval)
    s.paths.data_dir.mkdir(parents=True)
    create_topics(s)
    warm = Fleet.enrol(WARM_DEVICES, s.paths.device_registry)
    t = time.perf_counter()
    fleet = Fleet.enrol(devices, s.paths.device_registry)
    enrol_s = time.perf_counter() - t
    procs = start_stages(s)
    gateway, tail = Gateway(s, a.connections), ForecastTail(s)
    n = devices * per_device
    try:
        gateway.send(warm, 1, 20)
        wait_done(s, tail, WARM_DEVICES, procs, 240)
        pids = {**{name: p.pid for name, p in procs.items()}, "broker": broker_pid}
        before = {name: usage(pid) for name, pid in pids.items()}
        t0 = time.perf_counter()
        late_s = gateway.send(fleet, per_device, a.rate)
        send_s = time.perf_counter() - t0
        gateway.wait_acked()
        wait_done(s, tail, WARM_DEVICES + n, procs, 600 + n / 50)
        run_s = time.perf_counter() - t0
        after = {name: usage(pid) for name, pid in pids.items()}
    finally:
        gateway.close()
        tail.close()
        for p in procs.values():
            stop(p)
    k = s.kafka
    state = {"worker_models_bytes_per_device": sample_state(s, f"{k.stream_app_id}-device-models-changelog"),
             "worker_stats_bytes_per_device": sample_state(s, f"{k.stream_app_id}-device-stats-changelog"),
             "ingest_dedupe_bytes_per_device": sample_state(s, dedupe_state_topic(k)),
             "anchor_store_bytes_per_reading": s.paths.anchor_store.stat().st_size / (n + WARM_DEVICES)}
    return {"devices": devices, "readings_per_device": per_device, "readings": n, "rate_per_s": a.rate,
            "enrol_s": enrol_s, "send_s": send_s, "send_late_s": late_s, "run_s": run_s,
            "stages": {name: stage_figures(before[name], after[name], n, devices) for name in pids},
            "state": state, "latency_forecast": latencies(fleet.sent, tail.appended),
            "latency_anchored": latencies(fleet.sent, anchored_at(s))}


def project_all(sizes: list[dict]) -> dict[str, dict]:
    """Each stage at 1,000,000 devices for each rate of RATES."""
    out = {}
    for label, period_s in RATES.items():
        rate = projection.PROJECTED_DEVICES / period_s
        stages = {name: projection.project(sizes, name, rate) for name in STAGES}
        out[label] = {"rate_per_s": rate, "stages": {n: vars(st) for n, st in stages.items()},
                      "chart": {".".join(p): v for p, v in projection.chart_values(stages).items()},
                      "partitions": projection.partitions_for(stages["worker"].instances)}
    return out


def write_chart(projected: dict, chart_rate: str) -> None:
    """The projection at `chart_rate` into the chart's production values, each line marked and dated."""
    stages = {n: projection.Stage(**v) for n, v in projected[chart_rate]["stages"].items()}
    note = (f"benchmarks/scale.py (bash scripts/bench.sh scale), {datetime.date.today()}: 1,000,000 "
            f"devices at one reading per device per {chart_rate}")
    text = projection.write_values(CHART_VALUES.read_text(), projection.chart_values(stages), note)
    CHART_VALUES.write_text(text)


def main() -> None:
    """Start the private broker, run every size, project, print, save and write the chart's values."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--rate", type=float, default=200, help="readings/s the fleet sends, whatever its size")
    ap.add_argument("--per-device", type=int, default=1, help="readings per device, the same for every size")
    ap.add_argument("--max-readings", type=int, default=100_000, help="fewer readings per device above this")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--anchor-interval", type=int, default=5)
    ap.add_argument("--no-chart", action="store_true", help="do not write the chart's production values")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        a.tmp = tmp
        kafka = as_principal(CitygridSettings(), "admin")  # the harness's Kafka client: topics, read-back
        base = CitygridSettings(paths=PathSettings.under(Path(tmp) / "harness", kafka.paths.cache_dir))
        port = free_port()
        mqtt = base.mqtt.model_copy(update={"port": port})
        base = base.model_copy(update={"kafka": kafka.kafka, "mqtt": mqtt})
        broker = mosquitto_server(base, port, Path(tmp) / "mosquitto")
        broker.start()
        try:
            results = [run_size(base, d, max(1, min(a.per_device, a.max_readings // d)), a, broker.pid())
                       for d in sizes]
        finally:
            broker.stop()
    del a.tmp
    projected = project_all(results)
    if not a.no_chart:
        write_chart(projected, "15 min")
    report({"args": vars(a), "sizes": results, "projection": projected,
            "note": "2-core machine shared with concurrent work; Kafka and the dev chain shared"})


def report(r: dict) -> None:
    """Print the tables and save the JSON."""
    console = Console()
    t = Table("devices", "readings", "stage", "CPU-s / 1k readings", "memory MiB", "growth B/device",
              title=f"the pipeline at {r['args']['rate']:.0f} readings/s (2 shared cores: under load)")
    for size in r["sizes"]:
        for name, st in size["stages"].items():
            t.add_row(f"{size['devices']:,}", f"{size['readings']:,}", name, f"{st['cpu_s_per_1k']:.2f}",
                      f"{st['memory_bytes'] / 2**20:.0f}", f"{st['growth_per_device']:,.0f}")
    console.print(t)
    lat = Table("devices", "forecast p50 / p99 ms", "forecasts/s", "anchored p50 / p99 ms",
                "worker state B/device", "dedupe state B/device", "run s",
                title="end to end, from each reading's send time")
    for size in r["sizes"]:
        f, an, st = size["latency_forecast"], size["latency_anchored"], size["state"]
        lat.add_row(f"{size['devices']:,}", f"{f['p50_ms']:,.0f} / {f['p99_ms']:,.0f}", f"{f['per_s']:,.0f}",
                    f"{an['p50_ms']:,.0f} / {an['p99_ms']:,.0f}",
                    f"{st['worker_models_bytes_per_device'] + st['worker_stats_bytes_per_device']:,.0f}",
                    f"{st['ingest_dedupe_bytes_per_device']:,.0f}", f"{size['run_s']:.0f}")
    console.print(lat)
    proj = Table("1 reading / device / …", "stage", "CPU-s / 1k", "cores", "memory GiB", "instances",
                 title=f"projected to {projection.PROJECTED_DEVICES:,} devices (linear fit over the sizes)")
    for label, p in r["projection"].items():
        for name, st in p["stages"].items():
            proj.add_row(f"{label} ({p['rate_per_s']:,.0f}/s)", name,
                         f"{st['cpu_s_per_1k']:.2f}", f"{st['cores']:.1f}",
                         f"{st['memory_bytes'] / 2**30:.1f}", str(st["instances"]))
        proj.add_row("", "kafka partitions", "", "", "", str(p["partitions"]))
    console.print(proj)
    console.print(f"written {save('scale', r)}")


if __name__ == "__main__":
    main()
