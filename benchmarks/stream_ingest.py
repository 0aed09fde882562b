"""Ingest throughput over TLS with per-device identities vs a plain anonymous broker, MQTT → Kafka.

Two private Mosquittos started by this benchmark, same Mosquitto, same limits and persistence (those of
benchmarks.mqtt_tls): the platform's broker (TLS only, the dynamic-security plugin, every device and the
ingest enrolled with an identity and ACL of its own) and, in the same run, the baseline: a plain,
anonymous listener (what the platform replaced). All else is the same for both: the real ingest
(citygrid.stream.ingest.Ingest in a process of its own, as `citygrid stream ingest` runs it: signature,
schema, enrolment, replay window, dedupe) writing as the `ingest` principal to the shared Kafka (SCRAM
over TLS, under its ACLs) into topics of its own. For the baseline only, the ingest's MQTT client is
made without TLS and credentials: the product has no such mode, so this benchmark swaps the client
factory inside its own ingest process.

Throughput: enrolled devices publish signed readings (each device over its own connection, as its own
identity on the TLS broker) into the ingest's persistent session while the ingest is down; the ingest
then starts and drains them. The rate comes from Kafka's append times (LogAppendTime) of what it wrote;
every reading must arrive and none be dead-lettered. Rounds alternate between the brokers and the best
round of each counts, as in benchmarks.mqtt_tls. Latency: one device then publishes at a fixed rate,
each reading signed at publish; latency = the broker's append time minus the reading's timestamp.
A stage breakdown (in-process, no I/O) says where the ingest's time goes.

Instances (issue 15), on the TLS broker in the same run: the ingest as it is (instances sharing the
subscription, verified readings deduplicated by the dedupe stage in Kafka transactions) with one and with
two instances, against the single-instance path it replaced (the same front, its replay window in the
process's memory, readings written straight to the readings topic), rebuilt here as `SingleInstanceIngest`.
The rate is again taken from the append times of what reached the readings topic.

    PYTHONPATH=.dev .venv/bin/python -m benchmarks.stream_ingest [--drain N] [--rounds N] [--rate R]
        [--only instances]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from kafka.admin import NewTopic
from rich.console import Console
from rich.table import Table

from benchmarks.mqtt_tls import TARGET_COST, free_port, plain_broker
from benchmarks.results import save
from citygrid import kafka_clients
from citygrid.devtools.local_kafka import as_principal, principals
from citygrid.devtools.local_servers import mosquitto_server
from citygrid.devtools.processes import stop
from citygrid.errors import ReadingRejected
from citygrid.mqtt import mqtt_client
from citygrid.ops.enroll import Credentials, enroll_device, enroll_ingest
from citygrid.ops.kafka_access import apply
from citygrid.reading import Reading, SignedReading, sign_reading
from citygrid.settings import CitygridSettings, MqttSettings, PathSettings
from citygrid.signing import DeviceKey, DeviceRegistry
from citygrid.stream.ingest import Ingest
from citygrid.stream.kafka_topics import read_topic, topic_end
from citygrid.stream.validation import IngestValidator, ReplayWindow
from citygrid.topics import DISTRICT_HEADER, readings_topic

DISTRICT = "d1"


def plain_client(s: MqttSettings, client_id: str, manual_ack: bool = False,
                 clean_session: bool = False) -> mqtt.Client:
    """The baseline's client: citygrid.mqtt.mqtt_client without TLS and credentials."""
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session,
                       protocol=mqtt.MQTTv311, manual_ack=manual_ack)


def use_plain_mqtt() -> None:
    """Make the ingest (and its session set-up) in this process connect without TLS or identity."""
    import citygrid.stream.ingest

    citygrid.stream.ingest.mqtt_client = plain_client


@dataclass
class Broker:
    """One of the two brokers: its name, port and how a device connects to it."""

    name: str
    port: int
    secure: bool

    def device_client(self, s: MqttSettings, creds: Credentials) -> mqtt.Client:
        """A device's client: its own identity over TLS, or anonymous on the plain broker."""
        if self.secure:
            return mqtt_client(creds.apply(s), creds.client_id, clean_session=True)
        return plain_client(s, creds.client_id, clean_session=True)


class Fleet:
    """Enrolled devices (each its broker identity and registry entry) and their signed readings."""

    def __init__(self, s: CitygridSettings, devices: int) -> None:
        self.keys = [DeviceKey.generate() for _ in range(devices)]
        self.creds = [enroll_device(s, k.public_key, "meter", DISTRICT, "bench") for k in self.keys]
        self.registry = s.paths.device_registry
        self.seq = [0] * devices

    def envelope(self, d: int, ts_ms: int) -> bytes:
        """The next signed reading of device `d`."""
        key = self.keys[d]
        r = Reading(device=key.device_id, seq=self.seq[d], ts_ms=ts_ms, kind="meter",
                    values={"p_kw": float(self.seq[d] % 97) / 10})
        self.seq[d] += 1
        return sign_reading(r, key).encode()

    def batches(self, n: int) -> list[list[bytes]]:
        """`n` readings spread over the devices, per device in sequence order."""
        now = int(time.time() * 1000)
        per_device = n // len(self.keys)
        return [[self.envelope(d, now + i) for i in range(per_device)] for d in range(len(self.keys))]


def prepare(s: CitygridSettings, broker: Broker) -> None:
    """The ingest's persistent session, which queues readings while it is down (plain: no TLS)."""
    import citygrid.stream.ingest as ingest

    factory = ingest.mqtt_client
    if not broker.secure:
        ingest.mqtt_client = plain_client
    try:
        ingest.prepare_session(s)
    finally:
        ingest.mqtt_client = factory


def publish(broker: Broker, s: MqttSettings, fleet: Fleet, batches: list[list[bytes]]) -> None:
    """Each device connects as itself and publishes its readings at QoS 1 until all are acknowledged."""
    for d, payloads in enumerate(batches):
        client = broker.device_client(s, fleet.creds[d])
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.connect("127.0.0.1", broker.port, keepalive=30)
        client.loop_start()
        topic = readings_topic(s.readings_topic, DISTRICT, fleet.keys[d].device_id)
        try:
            infos = [client.publish(topic, p, qos=1) for p in payloads]
            for info in infos:
                info.wait_for_publish(60)
            assert all(i.is_published() for i in infos), f"{broker.name}: a reading was not acknowledged"
        finally:
            client.disconnect()
            client.loop_stop()


def publish_paced(broker: Broker, s: MqttSettings, fleet: Fleet, n: int, rate: float) -> None:
    """Device 0 publishes `n` readings at `rate`/s, each signed (and stamped) at its publish time."""
    client = broker.device_client(s, fleet.creds[0])
    client.connect("127.0.0.1", broker.port, keepalive=30)
    client.loop_start()
    topic = readings_topic(s.readings_topic, DISTRICT, fleet.keys[0].device_id)
    t0, infos = time.perf_counter(), []
    try:
        for i in range(n):
            if (delay := t0 + i / rate - time.perf_counter()) > 0:
                time.sleep(delay)
            infos.append(client.publish(topic, fleet.envelope(0, int(time.time() * 1000)), qos=1))
        for info in infos:
            info.wait_for_publish(60)
    finally:
        client.disconnect()
        client.loop_stop()


def round_settings(base: CitygridSettings, broker: Broker, tmp: Path, registry: Path,
                   instances: int = 1) -> list[CitygridSettings]:
    """Topics, group and state of one round's pipeline; each of its ingest instances enrolled on the TLS
    broker with an identity of its own (the plain broker: one anonymous instance)."""
    tag = uuid.uuid4().hex[:8]
    data = tmp / f"{broker.name}-{tag}"
    data.mkdir(parents=True)
    shutil.copy(registry, data / "devices.json")  # the same enrolments for both brokers
    s = base.model_copy(update={
        "paths": PathSettings.under(data, base.paths.cache_dir),
        "mqtt": base.mqtt.model_copy(update={"port": broker.port, "ingest_client_id": f"bench-{tag}"}),
        "kafka": base.kafka.model_copy(update={
            "readings_topic": f"bench-{tag}", "ingest_group": f"bench-{tag}",
            "dead_letter_topic": f"bench-{tag}.dead"}),
    })
    admin = kafka_clients.admin(s.kafka)
    try:  # stamped by the broker (LogAppendTime): rate and latency are measured at the append
        admin.create_topics([NewTopic(t, s.kafka.partitions, 1, topic_configs={
            "message.timestamp.type": "LogAppendTime"}) for t in (s.kafka.readings_topic,
                                                                   s.kafka.dead_letter_topic)])
    finally:
        admin.close()
    apply(s)  # the ingest principal's ACLs on these topics
    if not broker.secure:
        return [s]
    return [s.model_copy(update={"mqtt": c.apply(s.mqtt)}) for c in enroll_ingest(s, instances)]


def start_ingest(s: CitygridSettings, mode: str) -> subprocess.Popen:
    """The real ingest as its own process, as the `ingest` Kafka principal (`mode`: see run_ingest)."""
    password = principals(CitygridSettings())["ingest"]
    env = s.model_copy(update={"kafka": s.kafka.model_copy(update={"username": "ingest",
                                                                   "password": password})}).as_env()
    log = open(s.paths.data_dir / "ingest.log", "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen([sys.executable, "-m", "benchmarks.stream_ingest", "--ingest", mode], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def wait_end(s: CitygridSettings, n: int, timeout_s: float, procs: list[subprocess.Popen]) -> None:
    """Until the readings topic holds `n` records a consumer reads (fails if an ingest died). Counted by
    one tailing consumer, not by re-reading the topic, so the wait costs the measured processes little."""
    from kafka import TopicPartition

    consumer = kafka_clients.consumer(s.kafka, enable_auto_commit=False)
    consumer.assign([TopicPartition(s.kafka.readings_topic, p) for p in range(s.kafka.partitions)])
    consumer.seek_to_beginning()
    seen, deadline = 0, time.monotonic() + timeout_s
    try:
        while seen < n:
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                log = (s.paths.data_dir / "ingest.log").read_text()[-2000:]
                raise RuntimeError(f"only {seen} of {n} in Kafka; {log}")
            seen += sum(len(b) for b in consumer.poll(timeout_ms=500).values())
    finally:
        consumer.close()


def run_round(base: CitygridSettings, broker: Broker, fleet: Fleet, batches: list[list[bytes]],
              tmp: Path, latency: tuple[int, float] | None = None, mode: str = "",
              instances: int = 1) -> dict:
    """Drain a preloaded queue (and, if asked, hold a fixed rate); throughput and latency of one round."""
    sessions = round_settings(base, broker, tmp, fleet.registry, instances)
    s = sessions[0]
    for own in sessions:
        prepare(own, broker)
    publish(broker, s.mqtt, fleet, batches)
    drain = sum(len(b) for b in batches)
    procs = [start_ingest(own, mode or ("tls" if broker.secure else "plain")) for own in sessions]
    try:
        wait_end(s, drain, 600, procs)
        if latency:
            publish_paced(broker, s.mqtt, fleet, *latency)
            wait_end(s, drain + latency[0], 120, procs)
    finally:
        for proc in procs:
            stop(proc)
    recs = read_topic(s.kafka, s.kafka.readings_topic, timeout_s=120)
    dead = topic_end(s.kafka, s.kafka.dead_letter_topic)
    assert len(recs) == drain + (latency[0] if latency else 0) and dead == 0, (len(recs), dead)
    append = np.array(sorted(r.timestamp for r in recs))
    out = {"broker": broker.name, "drained": drain, "mode": mode, "instances": len(sessions),
           "throughput_per_s": (drain - 1) / max((append[drain - 1] - append[0]) / 1000, 1e-3)}
    if latency:
        lat = np.array([r.timestamp - SignedReading.decode(r.value).reading().ts_ms for r in recs
                        if r.timestamp >= append[drain]])
        out |= {"latency_rate_per_s": latency[1], "p50_ms": float(np.percentile(lat, 50)),
                "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max())}
    return out


class SingleInstanceIngest(Ingest):
    """The path the dedupe stage replaced, for comparison only: the same front, but the replay window in
    this one process's memory and each new reading written straight to the readings topic (what the
    ingest did before issue 15, minus its start-up re-read of the topic's tail)."""

    def __init__(self, settings: CitygridSettings) -> None:
        super().__init__(settings)
        self.dedupe.consumer.close()
        self.dedupe.producer.close()
        self.dedupe = Idle()
        self.window = ReplayWindow()

    def store(self, reading, payload: bytes, district: str, stored) -> None:
        """Check and accept in memory, then write the reading itself (no transaction)."""
        try:
            self.window.check(reading.device, reading.seq)
        except ReadingRejected:
            stored()  # the benchmark sends no duplicates; never taken
            return
        self.window.accept(reading.device, reading.seq)
        self._send(self.settings.kafka.readings_topic, reading.device.encode(), payload,
                   [(DISTRICT_HEADER, district.encode())], stored=stored,
                   lost=lambda: self.window.forget(reading.device, reading.seq))


class Idle:
    """No dedupe member: the single-instance path decides in the front."""

    def run(self, stop, failed) -> None:
        """Wait for the stop."""
        stop.wait()


def stage_breakdown(fleet: Fleet, n: int = 20000) -> dict[str, float]:
    """Microseconds per reading for each step of the ingest's check, without I/O."""
    reg = DeviceRegistry.load(fleet.registry)
    payloads = [p for batch in fleet.batches(n) for p in batch]
    now = int(time.time() * 1000)
    out = {}

    def timed(name: str, fn) -> None:
        t = time.perf_counter()
        for p in payloads:
            fn(p)
        out[name] = (time.perf_counter() - t) / len(payloads) * 1e6

    timed("envelope decode (msgpack)", SignedReading.decode)
    timed("schema parse (msgpack + pydantic)", lambda p: SignedReading.decode(p).reading())
    signed = [SignedReading.decode(p) for p in payloads]
    t = time.perf_counter()
    for sr in signed:
        sr.verify(reg)
    out["parse + ed25519 verify"] = (time.perf_counter() - t) / len(signed) * 1e6
    validator = IngestValidator(reg)
    timed("full check (parse, verify, enrolment, bounds)", lambda p: validator.check(p, now, DISTRICT))
    window, seqs = ReplayWindow(), [(str(d), i) for i in range(len(payloads) // 50) for d in range(50)]
    t = time.perf_counter()
    for device, seq in seqs:
        window.check(device, seq)
        window.accept(device, seq)
        window.encode(device)
    out["replay window check + accept + encode (dedupe stage)"] = (time.perf_counter() - t) / len(seqs) * 1e6
    return out


# The ingest paths compared on the TLS broker (issue 15): name → (ingest mode, instances).
PATHS = {"single_instance": ("single", 1), "dedupe_1": ("tls", 1), "dedupe_2": ("tls", 2)}
PATH_LABELS = {"single_instance": "before: 1 instance, window in memory, direct write",
               "dedupe_1": "now: 1 instance, dedupe stage (Kafka transactions)",
               "dedupe_2": "now: 2 instances, shared subscription + dedupe stage"}


def measure(base: CitygridSettings, brokers: dict[str, Broker], a: argparse.Namespace, tmp: Path) -> dict:
    """Alternating rounds on both brokers, then the latency round of each and the stage breakdown; then
    the ingest paths, alternating too."""
    fleet = Fleet(base, a.devices)
    out: dict = {"args": vars(a), "stages_us": stage_breakdown(fleet),
                 "note": "2-core machine shared with concurrent work; same Kafka, same fleet"}
    if a.only != "instances":
        out |= measure_brokers(base, brokers, a, tmp, fleet)
    paths: dict[str, list[dict]] = {name: [] for name in PATHS}
    for _ in range(a.rounds):
        for name, (mode, n) in PATHS.items():
            paths[name].append(run_round(base, brokers["tls_auth"], fleet, fleet.batches(a.drain), tmp,
                                         mode=mode, instances=n))
    best = {name: max(r["throughput_per_s"] for r in rs) for name, rs in paths.items()}
    ratios = {n: best[n] / best["single_instance"] for n in ("dedupe_1", "dedupe_2")}
    return out | {"paths": paths, "paths_best_per_s": best, "dedupe_vs_single": ratios}


def measure_brokers(base: CitygridSettings, brokers: dict[str, Broker], a: argparse.Namespace, tmp: Path,
                    fleet: Fleet) -> dict:
    """The TLS + identity broker against the plain one, the same ingest behind both."""
    rounds: dict[str, list[dict]] = {name: [] for name in brokers}
    for _ in range(a.rounds):
        for name, broker in brokers.items():
            rounds[name].append(run_round(base, broker, fleet, fleet.batches(a.drain), tmp))
    lat = {name: run_round(base, broker, fleet, fleet.batches(a.devices), tmp,
                           (int(a.rate * a.seconds), a.rate)) for name, broker in brokers.items()}
    best = {name: max(r["throughput_per_s"] for r in rs) for name, rs in rounds.items()}
    ratio = best["tls_auth"] / best["plain"]
    return {"rounds": rounds, "best_per_s": best, "latency": lat, "cost": 1 - ratio,
            "ratio_vs_plain": ratio, "target_cost": TARGET_COST}


def main() -> None:
    """Start both brokers, measure, print the tables and write the JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--drain", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--only", choices=["instances"], help="only the ingest paths (single vs dedupe stage)")
    ap.add_argument("--ingest", choices=["tls", "plain", "single"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.ingest:
        run_ingest(a.ingest)
        return
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        # The shared Kafka (its admin for the harness); a private CA, admin and brokers for MQTT.
        kafka = as_principal(CitygridSettings(), "admin")
        base = CitygridSettings(paths=PathSettings.under(Path(tmp) / "harness", kafka.paths.cache_dir))
        brokers = {"tls_auth": Broker("tls_auth", free_port(), True),
                   "plain": Broker("plain", free_port(), False)}
        mqtt_settings = base.mqtt.model_copy(update={"port": brokers["tls_auth"].port})
        base = base.model_copy(update={"kafka": kafka.kafka, "mqtt": mqtt_settings})
        servers = [mosquitto_server(base, brokers["tls_auth"].port, Path(tmp) / "tls"),
                   plain_broker(Path(tmp) / "plain", brokers["plain"].port, base)]
        for server in servers:
            server.start()
        try:
            result = measure(base, brokers, a, Path(tmp))
        finally:
            for server in servers:
                server.stop()
    report(result)


def run_ingest(mode: str) -> None:
    """`--ingest`: the real ingest process, as `citygrid stream ingest` runs it (plain: without TLS;
    single: the single-instance path it replaced)."""
    from citygrid.lifecycle import stop_event_on_signals
    from citygrid.settings import get_settings

    if mode == "plain":
        use_plain_mqtt()
    (SingleInstanceIngest if mode == "single" else Ingest)(get_settings()).run(stop_event_on_signals())


def report(r: dict) -> None:
    """Print the tables and save the JSON."""
    console = Console()
    if "latency" in r:
        report_brokers(r, console)
    paths = Table("ingest path (TLS broker)", "drain readings/s (best)", "rounds", "vs before",
                  title="the ingest as N instances with the dedupe stage vs the single-instance path")
    for name, label in PATH_LABELS.items():
        paths.add_row(label, f"{r['paths_best_per_s'][name]:,.0f}",
                      ", ".join(f"{x['throughput_per_s']:,.0f}" for x in r["paths"][name]),
                      f"{r['paths_best_per_s'][name] / r['paths_best_per_s']['single_instance']:.2f}")
    console.print(paths)
    st = Table("stage (in-process, no I/O)", "µs / reading", "max readings/s on one core",
               title="where the ingest's time goes")
    for k, v in r["stages_us"].items():
        st.add_row(k, f"{v:.1f}", f"{1e6 / v:,.0f}")
    console.print(st)
    console.print(f"written {save('stream_ingest' if 'latency' in r else 'stream_ingest_instances', r)}")


def report_brokers(r: dict, console: Console) -> None:
    """The TLS + identity broker against the plain one."""
    table = Table(title="MQTT → verified ingest → Kafka (2 shared cores: figures under load)")
    for col in ("broker", "drain readings/s (best)", "rounds", "p50 ms", "p99 ms", "max ms"):
        table.add_column(col)
    for name, label in (("tls_auth", "TLS + per-device identity"), ("plain", "plain, anonymous (baseline)")):
        lat = r["latency"][name]
        table.add_row(label, f"{r['best_per_s'][name]:,.0f}",
                      ", ".join(f"{x['throughput_per_s']:,.0f}" for x in r["rounds"][name]),
                      f"{lat['p50_ms']:.0f}", f"{lat['p99_ms']:.0f}", f"{lat['max_ms']:.0f}")
    console.print(table)
    verdict = "within" if r["cost"] <= TARGET_COST else "OVER"
    console.print(f"TLS + auth / plain ingest throughput: {r['ratio_vs_plain']:.2f} (cost {r['cost']:.1%}, "
                  f"{verdict} the {TARGET_COST:.0%} target); latency at {r['args']['rate']:.0f}/s above")


if __name__ == "__main__":
    main()
