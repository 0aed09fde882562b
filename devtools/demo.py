"""`citygrid demo`: the whole local platform on real data, end to end, with a report.

It starts the real servers, runs the ingest, a Faust worker and the anchorer as
separate processes (as they run in production), replays SimBench profiles from
signed simulated devices, sends a few bad readings, and then checks from the
outside what happened: Kafka topic offsets, the anchor store, the chain.
"""

from __future__ import annotations

import time
from contextlib import ExitStack

from rich.console import Console
from rich.table import Table
from substrateinterface import Keypair

from citygrid.devtools import local_servers
from citygrid.devtools.processes import spawn, stop
from citygrid.settings import CitygridSettings

DEMO_ANCHOR_INTERVAL_S = 3600
DEMO_METRICS_PORT = 19101  # ingest, worker, anchorer take this and the next ports


def wait_for(what: str, check, timeout_s: float, console: Console) -> bool:
    """Poll `check()` until true; False on timeout."""
    deadline = time.monotonic() + timeout_s
    with console.status(f"waiting for {what}…"):
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.5)
    console.print(f"[red]timed out waiting for {what}[/]")
    return False


def run_demo(s: CitygridSettings, devices: int, steps: int, keep_servers: bool,
             console: Console) -> int:
    """Run the demo; return a process exit code."""
    from citygrid.ledger.anchor_store import AnchorStore
    from citygrid.ledger.chain import ChainClient
    from citygrid.ledger.errors import ProofInvalid
    from citygrid.ledger.proofs import ProofBundle, build_bundle, verify_offline, verify_on_chain
    from citygrid.sim.fleet import provision, replay_fleet, send_bad_readings
    from citygrid.stream.ingest import prepare_session
    from citygrid.stream.kafka_topics import ensure_topics, topic_end

    t0 = time.monotonic()
    s = s.model_copy(update={"anchor": s.anchor.model_copy(update={"interval_s": DEMO_ANCHOR_INTERVAL_S})})
    with console.status("starting Mosquitto, Kafka and the dev chain…"):
        started = local_servers.up(s)
    console.print(f"servers up in {time.monotonic() - t0:.1f}s (started: {', '.join(started) or 'none'})")
    prepare_session(s)
    fleet = provision(s.paths, devices)
    store = AnchorStore(s.paths.anchor_store)
    topics = [s.kafka.readings_topic, s.kafka.dead_letter_topic, s.kafka.stats_topic,
              s.kafka.forecasts_topic, s.kafka.alerts_topic]
    ensure_topics(s.kafka, topics)
    before = {t: topic_end(s.kafka, t) for t in topics}
    leaves_before = store.counts()[2]
    batches_before = {b.id for b in store.batches()}

    env = s.as_env()
    logs = s.paths.data_dir / "logs"
    ok = True
    with ExitStack() as stack:
        if not keep_servers:
            stack.callback(local_servers.down, s)
        scraped = local_servers.servers(s).get("prometheus")
        for port, (name, args) in enumerate(
            (("ingest", ["stream", "ingest"]), ("worker", ["stream", "worker"]),
             ("anchorer", ["ledger", "anchor"])), start=DEMO_METRICS_PORT):
            stack.callback(stop, spawn(args, {**env, "CITYGRID_METRICS_PORT": str(port)},
                                       logs / f"{name}.log"))
            if scraped:
                from citygrid.devtools.prometheus import register_target

                register_target(scraped.dir(s.paths.data_dir.resolve()), name, port)
        console.print(f"ingest, Faust worker and anchorer running (logs in {logs})")

        sent = replay_fleet(s, fleet, steps)
        bad = send_bad_readings(s, fleet[0].key)
        console.print(f"{sent} signed readings published by {len(fleet)} devices; {bad} bad ones")

        def delta(t: str) -> int:
            return topic_end(s.kafka, t) - before[t]

        ok &= wait_for("ingest", lambda: delta(s.kafka.readings_topic) >= sent
                       and delta(s.kafka.dead_letter_topic) >= bad, 120, console)
        ok &= wait_for("the Faust worker", lambda: delta(s.kafka.stats_topic) >= sent
                       and delta(s.kafka.forecasts_topic) >= sent, 120, console)
        ok &= wait_for("anchoring", lambda: store.counts()[2] - leaves_before >= sent
                       and not store.batches(pending_only=True), 180, console)

        new_batches = [b for b in store.batches() if b.id not in batches_before]
        table = Table("interval (UTC)", "readings", "Merkle root", "block", title="anchored batches")
        for b in new_batches:
            table.add_row(time.strftime("%H:%M", time.gmtime(b.interval_start_ms / 1000)),
                          str(b.count), b.root.hex()[:16] + "…",
                          f"#{b.block_number} {b.block_hash}" if b.anchored else "pending")
        console.print(table)

        chain = ChainClient(s.chain.url)
        anchor_key = "0x" + Keypair.create_from_uri(s.chain.signer_uri).public_key.hex()
        verified = offline = 0
        for d in fleet:
            last = d.next_seq() - 1
            bundle = build_bundle(store, d.key.device_id, last, d.key.public_key, chain)
            verify_on_chain(bundle, chain, anchor_key)
            verified += 1
            # The same bundle checks out with no connection at all: saved header, block, signature.
            verify_offline(bundle, anchor_key)
            offline += 1
        tampered = bundle.model_copy(update={"envelope": _tamper(bundle)})
        try:
            verify_on_chain(ProofBundle.model_validate(tampered.model_dump()), chain, anchor_key)
            console.print("[red]a tampered reading verified: this must never happen[/]")
            ok = False
        except ProofInvalid as exc:
            console.print(f"tampered reading rejected as it must be: {exc}")

        summary = Table("step", "count", title="citygrid demo")
        summary.add_row("readings published (QoS 1, acked)", str(sent))
        summary.add_row("ingested into Kafka 'readings'", str(delta(s.kafka.readings_topic)))
        summary.add_row("rejected to 'readings.dead'", str(delta(s.kafka.dead_letter_topic)))
        summary.add_row("device stats updated by the Faust worker", str(delta(s.kafka.stats_topic)))
        summary.add_row("River forecasts (per device and per feeder)", str(delta(s.kafka.forecasts_topic)))
        summary.add_row("anomaly alerts", str(delta(s.kafka.alerts_topic)))
        summary.add_row("anchored on chain", str(store.counts()[2] - leaves_before))
        summary.add_row("Merkle roots on chain", str(len(new_batches)))
        summary.add_row("proofs verified against the chain", str(verified))
        summary.add_row("the same proofs verified offline (saved block)", str(offline))
        console.print(summary)
        if scraped:
            console.print(f"Prometheus scrapes the ingest, worker and anchorer at "
                          f"http://127.0.0.1:{s.prometheus.port} (citygrid_* metrics)")
        chain.close()
    console.print(f"{'[green]done' if ok else '[red]FAILED'}[/] in {time.monotonic() - t0:.1f}s")
    return 0 if ok else 1


def _tamper(bundle) -> str:
    """The bundle's envelope with one value of the reading changed (signature kept)."""
    from citygrid.reading import Reading, SignedReading

    signed = bundle.signed()
    r = signed.reading()
    forged = Reading(**{**r.model_dump(), "values": {k: v + 1.0 for k, v in r.values.items()}})
    return SignedReading(forged.body(), signed.signature).encode().hex()

