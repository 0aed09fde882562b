"""What TLS and per-device authentication cost a device: QoS 1 publish rate and (re)connect time.

Two private brokers started by this benchmark, same Mosquitto, same limits and persistence:
- the platform's broker: TLS only, the dynamic-security plugin, a device enrolled with its own ACL;
- baseline in the same run: a plain, anonymous listener (the configuration the platform replaced).
The same signed readings (real size) are published at QoS 1 with up to 1,000 in flight, rounds
alternating between the brokers; the best round of each counts. Then a device's connect time
(TCP + TLS handshake + password check + CONNACK) on both, and its reconnect time after a broker
restart (from the broker answering again to the device's session being back, the agent's own
reconnect backoff included).

    PYTHONPATH=.dev .venv/bin/python -m benchmarks.mqtt_tls [--readings N] [--rounds N]
"""

from __future__ import annotations

import argparse
import getpass
import json
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt

from benchmarks.results import save
from citygrid.devtools.local_servers import mosquitto_server
from citygrid.devtools.server import Server, port_open
from citygrid.mqtt import Publisher, mqtt_client
from citygrid.ops.enroll import enroll_device
from citygrid.reading import Reading, sign_reading
from citygrid.settings import CitygridSettings, MqttSettings, PathSettings
from citygrid.signing import DeviceKey
from citygrid.topics import readings_topic

TARGET_COST = 0.15  # the ceiling on what TLS + authentication may cost in throughput


def free_port() -> int:
    """A port nothing listens on (below the ephemeral range)."""
    import random

    for port in random.sample(range(23000, 32000), 200):
        if not port_open("127.0.0.1", port):
            return port
    raise RuntimeError("no free port")


def plain_broker(d: Path, port: int, s: CitygridSettings) -> Server:
    """The baseline: anonymous and unencrypted, otherwise the platform broker's settings."""
    def prepare(d: Path) -> None:
        (d / "data").mkdir(parents=True, exist_ok=True)
        (d / "mosquitto.conf").write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\npersistence true\n"
            f"persistence_location {d / 'data'}/\nmax_packet_size {s.mqtt.max_message_bytes}\n"
            f"max_queued_messages {s.mqtt.max_queued_messages}\nmax_inflight_messages 1000\n"
            "log_dest stdout\n")

    return Server("mosquitto-plain", port, d, lambda d: ["mosquitto", "-c", str(d / "mosquitto.conf")],
                  prepare, lambda: port_open("127.0.0.1", port), 20)


def connected_client(make: Callable[[], mqtt.Client], host: str, port: int) -> tuple[mqtt.Client, float]:
    """A started client and how long its connection took to be accepted (s)."""
    client = make()
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    up = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: up.set() if not rc.is_failure else None
    t0 = time.perf_counter()
    client.connect(host, port, keepalive=30)
    client.loop_start()
    if not up.wait(10):
        raise RuntimeError(f"broker on {port} did not accept the client")
    return client, time.perf_counter() - t0


def publish_rate(make: Callable[[], mqtt.Client], port: int, topic: str, payloads: list[bytes]) -> float:
    """Readings/s at QoS 1 until the broker acknowledged every one."""
    client, _ = connected_client(make, "127.0.0.1", port)
    try:
        t0 = time.perf_counter()
        infos = [client.publish(topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(60)
        elapsed = time.perf_counter() - t0
        assert all(i.is_published() for i in infos), "a reading was not acknowledged"
        return len(payloads) / elapsed
    finally:
        client.disconnect()
        client.loop_stop()


def connect_times(make: Callable[[], mqtt.Client], port: int, n: int) -> list[float]:
    """Connect-to-CONNACK times (ms) of `n` fresh connections."""
    out = []
    for _ in range(n):
        client, took = connected_client(make, "127.0.0.1", port)
        client.disconnect()
        client.loop_stop()
        out.append(took * 1000)
    return out


def reconnect_s(device: MqttSettings, broker: Server) -> float:
    """Seconds from the broker answering again after a restart to the device's session being back."""
    pub = Publisher(device, client_id=str(device.client_id))
    pub.connect()
    try:
        broker.stop()
        while pub.connected:
            time.sleep(0.01)
        broker.start()
        back = time.perf_counter()
        while not pub.connected:
            time.sleep(0.005)
        return time.perf_counter() - back
    finally:
        pub.close()


def main() -> None:
    """Run both brokers, measure, print the table and write the JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        s = CitygridSettings(paths=PathSettings.under(Path(tmp)))
        tls_port, plain_port = free_port(), free_port()
        tls = mosquitto_server(s, tls_port, Path(tmp) / "tls")
        plain = plain_broker(Path(tmp) / "plain", plain_port, s)
        tls.start()
        plain.start()
        try:
            result = measure(s, tls, tls_port, plain_port, args.readings, args.rounds)
        finally:
            tls.stop()
            plain.stop()
    report(result)


def measure(s: CitygridSettings, tls: Server, tls_port: int, plain_port: int, readings: int,
            rounds: int) -> dict:
    """The figures of both brokers, rounds alternating."""
    key = DeviceKey.generate()
    s = s.model_copy(update={"mqtt": s.mqtt.model_copy(update={"port": tls_port})})
    device = enroll_device(s, key.public_key, "meter", "d1", "bench").apply(s.mqtt)
    topic = readings_topic(s.mqtt.readings_topic, "d1", key.device_id)
    now = int(time.time() * 1000)
    payloads = [sign_reading(Reading(device=key.device_id, seq=i, ts_ms=now + i, kind="meter",
                                     values={"p_kw": 1.0 + i % 100}), key).encode() for i in range(readings)]

    def secure() -> mqtt.Client:
        return mqtt_client(device, str(device.client_id), clean_session=True)

    def anonymous() -> mqtt.Client:
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"plain-{key.device_id}",
                           clean_session=True, protocol=mqtt.MQTTv311)

    rates: dict[str, list[float]] = {"tls_auth": [], "plain": []}
    for _ in range(rounds):
        rates["plain"].append(publish_rate(anonymous, plain_port, topic, payloads))
        rates["tls_auth"].append(publish_rate(secure, tls_port, topic, payloads))
    connects = {"tls_auth": connect_times(secure, tls_port, 30),
                "plain": connect_times(anonymous, plain_port, 30)}
    best = {k: max(v) for k, v in rates.items()}
    return {
        "readings": readings, "payload_bytes": len(payloads[0]), "rounds": rates, "best_per_s": best,
        "cost": 1 - best["tls_auth"] / best["plain"], "target_cost": TARGET_COST,
        "connect_ms_median": {k: statistics.median(v) for k, v in connects.items()},
        "connect_ms_p95": {k: sorted(v)[int(0.95 * len(v)) - 1] for k, v in connects.items()},
        "reconnect_after_restart_s": reconnect_s(device, tls),
        "mosquitto": subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.strip()[:40],
    }


def report(r: dict) -> None:
    """Print the table and save the JSON."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"MQTT QoS 1, {r['readings']} signed readings of {r['payload_bytes']} B")
    for col in ("broker", "best readings/s", "connect p50 ms", "connect p95 ms"):
        t.add_column(col)
    for k, label in (("tls_auth", "TLS + per-device identity"), ("plain", "plain, anonymous (baseline)")):
        t.add_row(label, f"{r['best_per_s'][k]:,.0f}", f"{r['connect_ms_median'][k]:.1f}",
                  f"{r['connect_ms_p95'][k]:.1f}")
    Console().print(t)
    verdict = "within" if r["cost"] <= TARGET_COST else "OVER"
    print(f"throughput cost of TLS + auth: {r['cost']:.1%} ({verdict} the {TARGET_COST:.0%} target); "
          f"reconnect after a broker restart: {r['reconnect_after_restart_s']:.2f} s")
    print(json.dumps({"written": str(save("mqtt_tls", r))}))


if __name__ == "__main__":
    main()
