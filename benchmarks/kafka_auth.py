"""What Kafka's security costs: records/s through a SASL/SCRAM-over-TLS broker, each client its own
principal under ACLs, vs the same through a plaintext broker without authentication, both started
by this benchmark (same machine, same run); and the anchorer's per-reading re-verification
(signature + canonical form) vs taking the record as it comes.

Targets (issue "Cluster trust"): anchoring with authentication and re-verification ≥ 0.8 of
without; the ingest path's Kafka throughput with SASL vs without reported as a ratio.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.results import save
from citygrid.devtools.local_kafka import as_principal, kafka_server
from citygrid.kafka_clients import consumer, producer
from citygrid.ops.kafka_access import apply
from citygrid.reading import Reading, SignedReading, sign_reading
from citygrid.settings import CitygridSettings, PathSettings
from citygrid.signing import DeviceKey, DeviceRegistry
from citygrid.stream.kafka_topics import ensure_topics

RECORDS = 100_000
PORTS = {"secure": 29392, "plain": 29492}


def _broker(root: Path, name: str) -> CitygridSettings:
    base = CitygridSettings()
    s = base.model_copy(update={
        "paths": PathSettings.under(root / name, base.paths.cache_dir),
        "kafka": base.kafka.model_copy(update={"bootstrap": f"127.0.0.1:{PORTS[name]}"})})
    kafka_server(s, secure=name == "secure").start()
    return s


def _envelopes(n: int) -> tuple[list[bytes], DeviceRegistry]:
    keys = [DeviceKey.generate() for _ in range(50)]
    registry = DeviceRegistry()
    for k in keys:
        registry.add(k.public_key)
    t0 = 1_760_000_000_000
    out = [sign_reading(Reading(device=k.device_id, seq=i, ts_ms=t0 + i * 1000, kind="meter",
                                values={"p_kw": 1.0 + i % 7, "q_kvar": 0.1}), k).encode()
           for i in range(n // len(keys)) for k in keys]
    return out, registry


def _through_kafka(writer: CitygridSettings, reader: CitygridSettings, envelopes: list[bytes],
                   verify: DeviceRegistry | None) -> float:
    """Records/s written by `writer` (acks=all) and read back by `reader`, optionally re-verified."""
    topic = writer.kafka.readings_topic
    t0 = time.perf_counter()
    p = producer(writer.kafka, acks="all", linger_ms=5, batch_size=256 * 1024)
    for e in envelopes:
        p.send(topic, e)
    p.flush()
    p.close()
    c = consumer(reader.kafka, topic, group_id=reader.kafka.anchor_group, auto_offset_reset="earliest",
                 enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024)
    seen = 0
    while seen < len(envelopes):
        for records in c.poll(timeout_ms=1000, max_records=50_000).values():
            for r in records:
                if verify is not None:
                    signed = SignedReading.decode(r.value)
                    reading = signed.verify(verify)
                    assert reading.body() == signed.body  # canonical: re-encoding gives the same bytes
                seen += 1
    c.close()
    return len(envelopes) / (time.perf_counter() - t0)


def main() -> None:
    envelopes, registry = _envelopes(RECORDS)
    with tempfile.TemporaryDirectory() as tmp:
        secure, plain = _broker(Path(tmp), "secure"), _broker(Path(tmp), "plain")
        try:
            for s in (as_principal(secure, "admin"), plain):
                ensure_topics(s.kafka, [s.kafka.readings_topic])
            apply(as_principal(secure, "admin"))
            ingest, anchorer = as_principal(secure, "ingest"), as_principal(secure, "anchorer")
            rows = {
                "plain, no checks (baseline)": _through_kafka(plain, plain, envelopes, None),
                "SASL_SSL + ACLs, no checks": _through_kafka(ingest, anchorer, envelopes, None),
                "SASL_SSL + ACLs + re-verify (the anchorer's path)": _through_kafka(
                    ingest, anchorer, envelopes, registry),
            }
        finally:
            for s in (secure, plain):
                kafka_server(s).stop()
    base = rows["plain, no checks (baseline)"]
    verified = rows["SASL_SSL + ACLs + re-verify (the anchorer's path)"]
    t = Table("path", "records/s", "vs baseline", title=f"{RECORDS:,} readings, write (acks=all) + read")
    for name, rate in rows.items():
        t.add_row(name, f"{rate:,.0f}", f"{rate / base:.2f}")
    Console().print(t)
    save("kafka_auth", {"records": RECORDS, "records_per_s": rows,
                        "ratio_auth": rows["SASL_SSL + ACLs, no checks"] / base,
                        "ratio_auth_and_verify": verified / base,
                        "note": "2-core machine shared with other work"})


if __name__ == "__main__":
    main()
