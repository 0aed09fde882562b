"""`citygrid demo`: the whole local platform on real data, end to end, with a report.

It starts the real servers, runs the ingest, a Faust worker and the anchorer as
separate processes (as they run in production), replays SimBench profiles from
signed simulated devices, sends a few bad readings, and then checks from the
outside what happened: Kafka topic offsets, the anchor store, the chain.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table
from substrateinterface import Keypair

from citygrid.devtools import local_servers
from citygrid.devtools.local_kafka import as_principal
from citygrid.devtools.processes import spawn, stop
from citygrid.devtools.prometheus import register_target, scraped
from citygrid.ledger.anchor_store import AnchorStore
from citygrid.ledger.chain import ChainClient
from citygrid.ledger.errors import ProofInvalid
from citygrid.ledger.proofs import ProofBundle, build_bundle, verify_offline, verify_on_chain
from citygrid.ops.enroll import enroll_service
from citygrid.ops.kafka_access import apply
from citygrid.reading import Reading, SignedReading
from citygrid.settings import CitygridSettings
from citygrid.sim.fleet import SimDevice, provision, replay_fleet, send_bad_readings
from citygrid.storage import atomic_write
from citygrid.stream.dedupe import ensure_ingest_topics
from citygrid.stream.ingest import prepare_session
from citygrid.stream.kafka_topics import ensure_topics, topic_end
from citygrid.topics import stream_output_topics

DEMO_ANCHOR_INTERVAL_S = 3600
DEMO_METRICS_PORT = 19101  # ingest, worker, anchorer take this and the next ports
PROCESSES = (("ingest", ["stream", "ingest"]), ("worker", ["stream", "worker"]),
             ("anchorer", ["ledger", "anchor"]))
PRINCIPALS = {"ingest": "ingest", "worker": "worker", "anchorer": "anchorer"}  # each its Kafka principal


def demo_state_key(s: CitygridSettings) -> str:
    """The local workers' table-state key: made once (0600) and kept, so the demo's models survive
    from one run to the next."""
    path = s.paths.data_dir / "stream-state.key"
    if not path.exists():
        atomic_write(path, secrets.token_hex(32), mode=0o600)
    return path.read_text().strip()


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, console: Console) -> bool:
    """Poll `check()` until true; False on timeout."""
    deadline = time.monotonic() + timeout_s
    with console.status(f"waiting for {what}…"):
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.5)
    console.print(f"[red]timed out waiting for {what}[/]")
    return False


@dataclass
class Baseline:
    """What the topics and the anchor store held before the demo, so its report counts only its own."""

    s: CitygridSettings
    store: AnchorStore
    ends: dict[str, int] = field(default_factory=dict)
    leaves: int = 0
    batches: set[int] = field(default_factory=set)

    def take(self) -> Baseline:
        """Record the current counts."""
        self.ends = {t: topic_end(self.s.kafka, t) for t in stream_output_topics(self.s)}
        self.leaves = self.store.counts()[2]
        self.batches = {b.id for b in self.store.batches()}
        return self

    def delta(self, topic: str) -> int:
        """Records written to `topic` since the baseline."""
        return topic_end(self.s.kafka, topic) - self.ends[topic]

    def anchored(self) -> int:
        """Readings anchored since the baseline."""
        return self.store.counts()[2] - self.leaves


def run_demo(s: CitygridSettings, devices: int, steps: int, keep_servers: bool,
             console: Console) -> int:
    """Run the demo; return a process exit code."""
    t0 = time.monotonic()
    s = s.model_copy(update={"anchor": s.anchor.model_copy(update={"interval_s": DEMO_ANCHOR_INTERVAL_S})})
    with console.status("starting Mosquitto, Kafka and the dev chain…"):
        started = local_servers.up(s)
    console.print(f"servers up in {time.monotonic() - t0:.1f}s (started: {', '.join(started) or 'none'})")
    # The demo's processes connect to MQTT as the platform's ingest, each device as itself; to Kafka the
    # demo's own clients act as the admin, each process as its own principal (see _start_processes).
    s = s.model_copy(update={"mqtt": enroll_service(s, "ingest").apply(s.mqtt),
                             "stream": s.stream.model_copy(update={"state_key": demo_state_key(s)})})
    s = as_principal(s, "admin")
    prepare_session(s)
    fleet = provision(s, devices)
    ensure_ingest_topics(s)
    ensure_topics(s.kafka, stream_output_topics(s))
    apply(s)  # every process's ACLs as this checkout defines them (idempotent), even on a broker up before
    base = Baseline(s, AnchorStore(s.paths.anchor_store)).take()
    with ExitStack() as stack:
        if not keep_servers and started:
            # Only what this demo started: servers that were already up stay up.
            stack.callback(local_servers.down, s, started)
        watched = _start_processes(s, stack, console)
        if watched:
            # The replay is a burst of about a second: scraped once before it, the dashboards show it.
            wait_for("Prometheus's first scrape of the demo's processes",
                     lambda: scraped(s, [name for name, _ in PROCESSES]), 30, console)
        sent = replay_fleet(s, fleet, steps)
        bad = send_bad_readings(s, fleet[0])
        console.print(f"{sent} signed readings published by {len(fleet)} devices; {bad} bad ones")
        ok = _wait_for_pipeline(base, sent, bad, console)
        batches = _print_batches(base, console)
        verified, ok_proofs = _check_proofs(s, base.store, fleet, console)
        _print_summary(base, sent, batches, verified, console)
        if watched:
            console.print(f"Prometheus scrapes the ingest, worker and anchorer at "
                          f"http://127.0.0.1:{s.prometheus.port} (citygrid_* metrics)")
        ok &= ok_proofs
    console.print(f"{'[green]done' if ok else '[red]FAILED'}[/] in {time.monotonic() - t0:.1f}s")
    return 0 if ok else 1


def _start_processes(s: CitygridSettings, stack: ExitStack, console: Console) -> bool:
    """The ingest, a Faust worker and the anchorer as child processes (stopped with the stack);
    registered with the local Prometheus where it runs. True if Prometheus scrapes them."""
    prometheus = local_servers.servers(s).get("prometheus")
    for port, (name, args) in enumerate(PROCESSES, start=DEMO_METRICS_PORT):
        env = as_principal(s, PRINCIPALS[name]).as_env()
        proc = spawn(args, {**env, "CITYGRID_METRICS_PORT": str(port)}, s.paths.logs_dir / f"{name}.log")
        stack.callback(stop, proc)
        if prometheus:
            register_target(prometheus.dir, name, port)
    console.print(f"ingest, Faust worker and anchorer running (logs in {s.paths.logs_dir})")
    return prometheus is not None


def _wait_for_pipeline(base: Baseline, sent: int, bad: int, console: Console) -> bool:
    """Wait until every reading went through ingest, worker and anchorer; False if one timed out."""
    k = base.s.kafka
    ok = wait_for("ingest", lambda: base.delta(k.readings_topic) >= sent
                  and base.delta(k.dead_letter_topic) >= bad, 120, console)
    ok &= wait_for("the Faust worker", lambda: base.delta(k.stats_topic) >= sent
                   and base.delta(k.forecasts_topic) >= sent, 120, console)
    ok &= wait_for("anchoring", lambda: base.anchored() >= sent
                   and not base.store.batches(pending_only=True), 180, console)
    return ok


def _print_batches(base: Baseline, console: Console) -> int:
    """The table of batches this demo anchored; returns how many."""
    new_batches = [b for b in base.store.batches() if b.id not in base.batches]
    table = Table("interval (UTC)", "readings", "Merkle root", "block", title="anchored batches")
    for b in new_batches:
        table.add_row(time.strftime("%H:%M", time.gmtime(b.interval_start_ms / 1000)),
                      str(b.count), b.root.hex()[:16] + "…",
                      f"#{b.block_number} {b.block_hash}" if b.anchored else "pending")
    console.print(table)
    return len(new_batches)


def _check_proofs(s: CitygridSettings, store: AnchorStore, fleet: list[SimDevice],
                  console: Console) -> tuple[int, bool]:
    """Each device's last reading proven on chain and offline, and a tampered one refused."""
    chain = ChainClient(s.chain.url)
    anchor_key = "0x" + Keypair.create_from_uri(s.chain.signer_uri).public_key.hex()
    verified, ok = 0, True
    try:
        for d in fleet:
            bundle = build_bundle(store, d.key.device_id, d.next_seq() - 1, d.key.public_key, chain)
            verify_on_chain(bundle, chain, anchor_key)
            # The same bundle checks out with no connection at all: saved header, block, signature.
            verify_offline(bundle, anchor_key)
            verified += 1
        tampered = bundle.model_copy(update={"envelope": _tamper(bundle)})
        try:
            verify_on_chain(ProofBundle.model_validate(tampered.model_dump()), chain, anchor_key)
            console.print("[red]a tampered reading verified: this must never happen[/]")
            ok = False
        except ProofInvalid as exc:
            console.print(f"tampered reading rejected as it must be: {exc}")
    finally:
        chain.close()
    return verified, ok


def _print_summary(base: Baseline, sent: int, batches: int, verified: int, console: Console) -> None:
    k = base.s.kafka
    summary = Table("step", "count", title="citygrid demo")
    for step, count in (
        ("readings published (QoS 1, acked)", sent),
        ("ingested into Kafka 'readings'", base.delta(k.readings_topic)),
        ("rejected to 'readings.dead'", base.delta(k.dead_letter_topic)),
        ("device stats updated by the Faust worker", base.delta(k.stats_topic)),
        ("River forecasts (per device and per feeder)", base.delta(k.forecasts_topic)),
        ("anomaly alerts", base.delta(k.alerts_topic)),
        ("anchored on chain", base.anchored()),
        ("Merkle roots on chain", batches),
        ("proofs verified against the chain", verified),
        ("the same proofs verified offline (saved block)", verified),
    ):
        summary.add_row(step, str(count))
    console.print(summary)


def _tamper(bundle: ProofBundle) -> str:
    """The bundle's envelope with one value of the reading changed (signature kept)."""
    signed = bundle.signed()
    r = signed.reading()
    forged = Reading(**{**r.model_dump(), "values": {k: v + 1.0 for k, v in r.values.items()}})
    return SignedReading(forged.body(), signed.signature).encode().hex()
