"""What cluster trust costs, measured on the real paths in one run (issue "Cluster trust").

Two brokers started by this benchmark on the same machine: a plaintext one without authentication
(the baseline) and the project's SASL/SCRAM-over-TLS one where each client is its own principal
under ACLs. Against each:

- the ingest's write path: 100,000 signed readings produced with acks=all (readings/s);
- the anchorer's whole path: the real `Anchorer.run` consuming those readings, batching them per
  interval, storing the leaves and anchoring each root on the dev chain, timed until every reading
  is anchored. The baseline anchorer takes each record as it comes (parse only); the secure one
  re-verifies every reading (ed25519 signature against the registry, canonical form, bounds) in
  `anchor.verify_workers` processes while the next poll is fetched, with 1 and 2 processes shown.

Targets: anchoring with authentication and re-verification ≥ 0.8 of without; the ingest write path
with SASL vs without reported as a ratio.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from rich.console import Console
from rich.table import Table

from benchmarks.results import save
from citygrid.devtools.local_kafka import as_principal, kafka_server
from citygrid.kafka_clients import admin, producer
from citygrid.ledger import anchorer as anchorer_module
from citygrid.ledger.anchorer import Anchorer
from citygrid.ops.kafka_access import apply
from citygrid.reading import Reading, SignedReading, sign_reading
from citygrid.reading_check import PendingChecks
from citygrid.settings import CitygridSettings, PathSettings
from citygrid.signing import DeviceKey, DeviceRegistry
from citygrid.stream.kafka_topics import ensure_topics
from citygrid.topics import dead_letters_topic

RECORDS = 100_000
DEVICES = 50
PORTS = {"secure": 29392, "plain": 29492}


def _broker(root: Path, name: str) -> CitygridSettings:
    base = CitygridSettings()
    s = base.model_copy(update={
        "paths": PathSettings.under(root / name, base.paths.cache_dir),
        "kafka": base.kafka.model_copy(update={
            "bootstrap": f"127.0.0.1:{PORTS[name]}",
            "security_protocol": "SASL_SSL" if name == "secure" else "PLAINTEXT"})})
    kafka_server(s, secure=name == "secure").start()
    return s


def _envelopes(n: int) -> tuple[list[bytes], DeviceRegistry]:
    keys = [DeviceKey.generate() for _ in range(DEVICES)]
    registry = DeviceRegistry()
    for k in keys:
        registry.add(k.public_key)
    t0 = 1_760_000_000_000
    out = [sign_reading(Reading(device=k.device_id, seq=i, ts_ms=t0 + i * 1000, kind="meter",
                                values={"p_kw": 1.0 + i % 7, "q_kvar": 0.1}), k).encode()
           for i in range(n // len(keys)) for k in keys]
    return out, registry


def _write(writer: CitygridSettings, topic: str, envelopes: list[bytes]) -> float:
    """Readings/s the ingest's producer settings write with acks=all."""
    t0 = time.perf_counter()
    p = producer(writer.kafka, acks="all", linger_ms=5, batch_size=256 * 1024)
    for e in envelopes:
        p.send(topic, e)
    p.flush()
    p.close()
    return len(envelopes) / (time.perf_counter() - t0)


class _ParseOnly:
    """The baseline anchorer: every record taken as it comes, parsed on one thread overlapping the
    next poll (as BatchChecks overlaps its checks) but never verified."""

    def __init__(self, registry: object, workers: int) -> None:
        self._parser = ThreadPoolExecutor(1)

    def submit(self, envelopes: Sequence[bytes]) -> PendingChecks:
        def parse() -> list[Reading]:
            return [SignedReading.decode(e).reading() for e in envelopes]
        return PendingChecks(self._parser.submit(parse))

    def close(self) -> None:
        self._parser.shutdown(wait=True)


@contextmanager
def _unverified(verify: bool) -> Iterator[None]:
    if verify:
        yield
        return
    with mock.patch.object(anchorer_module, "BatchChecks", _ParseOnly):
        yield


def _anchor(reader: CitygridSettings, run: str, registry: DeviceRegistry, n: int, verify: bool,
            workers: int) -> float:
    """Readings/s through the real anchorer until all `n` are anchored on the dev chain."""
    s = reader.model_copy(update={
        "paths": PathSettings.under(reader.paths.data_dir / run, reader.paths.cache_dir),
        "anchor": reader.anchor.model_copy(update={"idle_flush_s": 0.3, "verify_workers": workers})})
    s.paths.data_dir.mkdir(parents=True)
    registry.save(s.paths.device_registry)
    anchorer = Anchorer.from_settings(s)
    stop = threading.Event()
    with _unverified(verify):
        thread = threading.Thread(target=anchorer.run, args=(stop,), daemon=True)
        t0 = time.perf_counter()
        thread.start()
        while True:
            batches, anchored, leaves = anchorer.store.counts()
            if leaves == n and batches == anchored:
                break
            if not thread.is_alive():
                raise RuntimeError(f"the anchorer stopped with {leaves} of {n} readings stored")
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        stop.set()
        thread.join(30)
    _forget_group(reader)  # the next run reads the topic from the start again
    return n / elapsed


def _forget_group(s: CitygridSettings) -> None:
    admin_settings = as_principal(s, "admin") if s.kafka.security_protocol == "SASL_SSL" else s
    client = admin(admin_settings.kafka)
    try:
        client.delete_groups([s.kafka.anchor_group])
    finally:
        client.close()


def _measure(envelopes: list[bytes], registry: DeviceRegistry, tmp: Path) -> dict[str, float]:
    secure, plain = _broker(tmp, "secure"), _broker(tmp, "plain")
    try:
        for s in (as_principal(secure, "admin"), plain):
            k = s.kafka
            ensure_topics(k, [k.readings_topic, dead_letters_topic(k.readings_topic, "anchorer")])
        apply(as_principal(secure, "admin"))
        ingest, anchorer = as_principal(secure, "ingest"), as_principal(secure, "anchorer")
        topic = plain.kafka.readings_topic
        return {
            "write: plain, anonymous (baseline)": _write(plain, topic, envelopes),
            "write: SASL_SSL + ACLs (the ingest's path)": _write(ingest, topic, envelopes),
            "anchor: plain, no re-verification (baseline)": _anchor(plain, "plain", registry, len(envelopes),
                                                                    verify=False, workers=2),
            "anchor: SASL_SSL + ACLs + re-verify, 1 process": _anchor(anchorer, "verify1", registry,
                                                                      len(envelopes), verify=True, workers=1),
            "anchor: SASL_SSL + ACLs + re-verify, 2 processes (default)": _anchor(
                anchorer, "verify2", registry, len(envelopes), verify=True, workers=2),
        }
    finally:
        for s in (secure, plain):
            kafka_server(s).stop()


def main() -> None:
    envelopes, registry = _envelopes(RECORDS)
    with tempfile.TemporaryDirectory() as tmp:
        rows = _measure(envelopes, registry, Path(tmp))
    bases = {"write": rows["write: plain, anonymous (baseline)"],
             "anchor": rows["anchor: plain, no re-verification (baseline)"]}
    t = Table("path", "readings/s", "vs baseline",
              title=f"{len(envelopes):,} signed readings from {DEVICES} devices")
    for name, rate in rows.items():
        t.add_row(name, f"{rate:,.0f}", f"{rate / bases[name.split(':')[0]]:.2f}")
    Console().print(t)
    save("kafka_auth", {
        "records": len(envelopes), "readings_per_s": rows,
        "ratio_ingest_write_sasl": rows["write: SASL_SSL + ACLs (the ingest's path)"] / bases["write"],
        "ratio_anchor_auth_and_verify": rows["anchor: SASL_SSL + ACLs + re-verify, 2 processes (default)"]
        / bases["anchor"],
        "target_anchor_ratio": 0.8,
        "note": "2-core machine; brokers, chain and anchorer share it"})


if __name__ == "__main__":
    main()
