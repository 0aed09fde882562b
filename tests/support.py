"""What many tests share: polling with a loud timeout, free ports, isolated settings, and identities
on the real (TLS, authenticated) broker for devices and services.

Imported as `support` (tests/ is on pytest's pythonpath).
"""

from __future__ import annotations

import random
import secrets
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from citygrid.settings import CitygridSettings, PathSettings
from citygrid.signing import DeviceKey

if TYPE_CHECKING:
    from citygrid.ledger.anchorer import Anchorer
    from citygrid.reading import Reading


def wait_until(check: Callable[[], bool], timeout_s: float = 90, what: str = "a condition",
               every_s: float = 0.5) -> None:
    """Poll until `check()`; fail the test loudly on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def exit_code(proc: subprocess.Popen, timeout_s: float, log: Path) -> int:
    """The child's exit code once it ends; a failure showing the end of its log if it is still running."""
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running after {timeout_s}s; its log ends:\n"
                             f"{log.read_text()[-3000:]}") from None


def free_port(consecutive: int = 1) -> int:
    """The first of `consecutive` ports all bindable on 127.0.0.1 now, below Linux's ephemeral range
    (32768+) so that no client connection's local port can take them before a server binds."""
    for port in random.sample(range(21000, 32000 - consecutive), 500):
        try:
            socks = [socket.socket() for _ in range(consecutive)]
            try:
                for i, s in enumerate(socks):
                    s.bind(("127.0.0.1", port + i))
            finally:
                for s in socks:
                    s.close()
            return port
        except OSError:
            continue
    raise RuntimeError(f"no {consecutive} consecutive free ports")


def isolated_settings(data_dir: Path) -> CitygridSettings:
    """Settings for one test: private data dir, topics, MQTT root, client ids and groups, and a state key
    of its own for the workers' authenticated table state."""
    from citygrid.devtools.local_kafka import as_principal

    tag = uuid.uuid4().hex[:10]
    # The tests' own Kafka clients (topic set-up, read-back) act as the local broker's admin; the
    # processes a test starts get their service's principal from `as_kafka_service`.
    base = as_principal(CitygridSettings(), "admin")
    return base.model_copy(update={
        "paths": PathSettings.under(data_dir, base.paths.cache_dir),
        "mqtt": base.mqtt.model_copy(update={
            "readings_topic": f"t{tag}/readings", "commands_topic": f"t{tag}/commands",
            "ingest_client_id": f"ingest-{tag}",
        }),
        "edge": base.edge.model_copy(update={"model_updates_topic": f"t{tag}/models"}),
        "kafka": base.kafka.model_copy(update={
            "readings_topic": f"readings-{tag}", "dead_letter_topic": f"readings-{tag}.dead",
            "stats_topic": f"stats-{tag}", "stream_app_id": f"stream-{tag}", "ingest_group": f"ingest-{tag}",
            "anchor_group": f"anchorer-{tag}", "forecasts_topic": f"forecasts-{tag}",
            "alerts_topic": f"alerts-{tag}", "orders_topic": f"orders-{tag}", "trades_topic": f"trades-{tag}",
        }),
        "settlement": base.settlement.model_copy(update={"group": f"settler-{tag}"}),
        "stream": base.stream.model_copy(update={"state_key": secrets.token_hex(32)}),
    })


def enrol(s: CitygridSettings, key: DeviceKey, district: str = "d1", kind: str = "meter",
          owner: str = "tests") -> CitygridSettings:
    """Enrol `key`'s device on `s`'s broker and registry; `s` connecting as that device."""
    from citygrid.ops.enroll import enroll_device

    creds = enroll_device(s, key.public_key, kind, district, owner)
    return s.model_copy(update={"mqtt": creds.apply(s.mqtt)})


def as_service(s: CitygridSettings, role: str) -> CitygridSettings:
    """`s` connecting as the test's own `role` service (ingest, advisor, models, observer), enrolled on
    `s`'s broker with only that role's topics (under the test's own roots)."""
    from citygrid.ops.enroll import enroll_service

    name = s.mqtt.ingest_client_id if role == "ingest" else f"{s.mqtt.ingest_client_id}-{role}"
    creds = enroll_service(s, role, name)  # type: ignore[arg-type]
    return s.model_copy(update={"mqtt": creds.apply(s.mqtt)})


def as_kafka_service(s: CitygridSettings, principal: str) -> CitygridSettings:
    """These settings with the Kafka principal of one service (ingest, worker, anchorer, settler,
    advisor, participant), as that process gets it in a deployment."""
    from citygrid.devtools.local_kafka import principals

    base = CitygridSettings()
    return s.model_copy(update={"kafka": s.kafka.model_copy(update={
        "username": principal, "password": principals(base)[principal]})})


class RunningIngest:
    """The real ingest on a thread, with its own Kafka principal, stopped like SIGTERM stops the process."""

    def __init__(self, s: CitygridSettings) -> None:
        from citygrid.stream.ingest import Ingest

        self.ingest = Ingest(as_kafka_service(s, "ingest"))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.ingest.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the ingest did not stop"


def publish_signed(s: CitygridSettings, readings: Iterable[tuple[Reading, DeviceKey]]) -> None:
    """Write each reading, signed by its key, straight to the readings topic (keyed by device)."""
    from citygrid import kafka_clients
    from citygrid.reading import sign_reading

    producer = kafka_clients.producer(s.kafka)
    for r, key in readings:
        producer.send(s.kafka.readings_topic, key=r.device.encode(), value=sign_reading(r, key).encode())
    producer.flush()
    producer.close()


@contextmanager
def running_anchorer(s: CitygridSettings) -> Iterator[Anchorer]:
    """The real anchorer on a thread for the block, stopped (as SIGTERM stops it) when it ends."""
    from citygrid.ledger.anchorer import Anchorer

    anchorer = Anchorer.from_settings(s)
    stop = threading.Event()
    thread = threading.Thread(target=anchorer.run, args=(stop,))
    thread.start()
    try:
        yield anchorer
    finally:
        stop.set()
        thread.join(30)
