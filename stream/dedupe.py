"""The dedupe stage: the one authoritative (device, seq) check, partitioned by device, in Kafka transactions.

The ingest's instances share the readings subscription, so a device's readings (and its republished
copies, and the broker's redeliveries after a crash) may reach any instance. Each instance writes what
it verified to `{readings}.verified`, keyed by device, and acks MQTT once Kafka holds it; no instance
decides alone whether a reading is new. Every instance also runs this stage, one member of the consumer
group `kafka.ingest_group`: the verified topic's partitions (so each device) are split among the live
members, and a member keeps the replay window (citygrid.stream.validation.ReplayWindow) of every
device of its partitions. For each poll it runs ONE Kafka transaction that
  - writes each reading seen for the first time to `readings` (keyed by device, district header kept),
  - dead-letters duplicates and replays to `readings.dead` (rate-limited per source, as the ingest does),
  - writes the new window of every device it changed to the compacted `{readings}.dedupe-state`, in the
    partition of its input, and
  - commits its input offsets with the group's metadata (KIP-447).
Consumers read committed only (citygrid.kafka_clients), so all of a poll's effect is visible or none.

Durability order and crashes: a member killed at any moment leaves an open transaction, which the broker
aborts after `stream.ingest_transaction_timeout_ms` (or at once when that instance restarts: same
transactional id); the partition's next owner restores its devices' windows from the state topic, waiting
until no transaction on it is open, so it resumes at the committed offsets with exactly the windows they
imply and decides the uncommitted records again. A member that lost its partitions but runs on (paused
past the session timeout) cannot commit: the coordinator refuses offsets of a stale generation, which
fails its transaction. Any error here stops the ingest (the supervisor restarts it): what was not
committed is decided again, never twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata
from prometheus_client import Counter, Histogram

from citygrid import kafka_clients
from citygrid.errors import ReadingRejected
from citygrid.records import DeadLetter
from citygrid.settings import CitygridSettings
from citygrid.stream.validation import IngestFault, ReplayWindow
from citygrid.topics import DISTRICT_HEADER, dedupe_state_topic, readings_topic, verified_readings_topic

log = structlog.get_logger(__name__)

# The record header in which an ingest instance passes a verified reading's seq to the dedupe stage, so the
# stage decides without parsing the envelope again (only the ingest principal may write that topic).
SEQ_HEADER = "seq"
UNIQUE = Counter("citygrid_ingest_unique_total", "Verified readings let into the readings topic once")
DECIDED = Histogram("citygrid_ingest_dedupe_commit_seconds", "One dedupe transaction, begin to commit",
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))

# (reason, source topic) → may its dead letter be written now: counted and rate-limited as the ingest's own.
Rejected = Callable[[str, str], bool]


def transactional_id(s: CitygridSettings) -> str:
    """This instance's transactional id: stable across its restarts (so a restart aborts what it left
    open), distinct between instances (its broker identity's client id), under the ACL prefix
    `kafka.ingest_group`."""
    return f"{s.kafka.ingest_group}.{s.mqtt.client_id or s.mqtt.ingest_client_id}"


def ensure_ingest_topics(s: CitygridSettings) -> None:
    """The ingest's topics: readings, dead letters, verified readings and the compacted window changelog."""
    from citygrid.stream.kafka_topics import ensure_topics

    k = s.kafka
    state = dedupe_state_topic(k)
    ensure_topics(k, [k.readings_topic, k.dead_letter_topic, verified_readings_topic(k), state],
                  {state: {"cleanup.policy": "compact"}})


def seq_header(seq: int) -> tuple[str, bytes]:
    """The header carrying a verified reading's seq."""
    return SEQ_HEADER, str(seq).encode()


class Dedupe(ConsumerRebalanceListener):
    """One member of the dedupe stage (a thread of each ingest instance)."""

    def __init__(self, s: CitygridSettings, may_dead_letter: Rejected) -> None:
        self.s, self.may_dead_letter = s, may_dead_letter
        self.windows: dict[int, ReplayWindow] = {}  # partition → the windows of its devices
        self.consumer = kafka_clients.consumer(
            s.kafka, group_id=s.kafka.ingest_group, enable_auto_commit=False, auto_offset_reset="earliest",
            isolation_level="read_committed", max_poll_records=s.stream.ingest_dedupe_batch,
            session_timeout_ms=10_000, heartbeat_interval_ms=2_000)
        self.producer = kafka_clients.producer(
            s.kafka, transactional_id=transactional_id(s), enable_idempotence=True, acks="all",
            transaction_timeout_ms=s.stream.ingest_transaction_timeout_ms, linger_ms=5,
            batch_size=256 * 1024, reconnect_backoff_max_ms=1000)

    def run(self, stop: threading.Event, failed: threading.Event) -> None:
        """Decide verified readings until `stop` or `failed` is set; on any error set `failed`."""
        try:
            # Fences this instance's former self, aborting the transaction it left open.
            self.producer.init_transactions()
            self.consumer.subscribe([verified_readings_topic(self.s.kafka)], listener=self)
            while not stop.is_set() and not failed.is_set():
                batch = self.consumer.poll(timeout_ms=200)
                if batch:
                    self.commit(batch)
        except Exception as exc:  # not committed is decided again by whoever owns the partition next
            log.exception("dedupe_failed", error=str(exc)[:300])
            failed.set()
        finally:
            self.consumer.close(autocommit=False)
            self.producer.close(10)

    def commit(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Decide one poll's records and make the outcome visible in one transaction."""
        t0 = time.perf_counter()
        self.producer.begin_transaction()
        offsets = {}
        for tp, records in batch.items():
            window = self.windows.setdefault(tp.partition, ReplayWindow())
            changed: set[str] = set()
            for rec in records:
                self.decide(rec, window, changed)
            for device in changed:
                self.producer.send(dedupe_state_topic(self.s.kafka), key=device.encode(),
                                   value=window.encode(device), partition=tp.partition)
            offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
        self.producer.send_offsets_to_transaction(offsets, self.consumer.group_metadata())
        self.producer.commit_transaction()
        DECIDED.observe(time.perf_counter() - t0)

    def decide(self, rec: ConsumerRecord, window: ReplayWindow, changed: set[str]) -> None:
        """Let one verified reading into the readings topic, or dead-letter it as a duplicate or replay."""
        k = self.s.kafka
        headers = dict(rec.headers)
        device, district = rec.key.decode(), headers.get(DISTRICT_HEADER, b"").decode()
        try:
            seq = _seq(headers)
            window.check(device, seq)
        except ReadingRejected as exc:
            source = readings_topic(self.s.mqtt.readings_topic, district, device)
            if self.may_dead_letter(exc.reason, source):
                dead = DeadLetter.of(rec.value, source, exc.reason, str(exc), int(time.time() * 1000))
                self.producer.send(k.dead_letter_topic, key=exc.reason.encode(), value=dead.encode())
            return
        window.accept(device, seq)
        changed.add(device)
        self.producer.send(k.readings_topic, key=rec.key, value=rec.value,
                           headers=[(DISTRICT_HEADER, district.encode())])
        UNIQUE.inc()

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Called inside poll, between transactions: what this member decided is committed."""
        for tp in revoked:
            self.windows.pop(tp.partition, None)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Restore the windows of the devices of newly assigned partitions before deciding any of them."""
        new = [tp.partition for tp in assigned if tp.partition not in self.windows]
        if new:
            t0 = time.perf_counter()
            self.windows.update(restore_windows(self.s, new))
            log.info("dedupe_windows_restored", partitions=new,
                     devices=sum(len(self.windows[p].highest) for p in new),
                     seconds=round(time.perf_counter() - t0, 3))


def _seq(headers: dict[str, bytes]) -> int:
    try:
        return int(headers[SEQ_HEADER])
    except (KeyError, ValueError):  # only the ingest writes this topic: a bug, kept for replay once fixed
        raise IngestFault("a verified reading without its seq header") from None


def restore_windows(s: CitygridSettings, partitions: list[int], timeout_s: float | None = None
                    ) -> dict[int, ReplayWindow]:
    """Each partition's device windows from the state topic: read committed up to the end offset seen now,
    so a transaction still open on it (the former owner's) ends first — committed, its windows count;
    aborted, not — and the windows match the offsets the group has committed."""
    topic = dedupe_state_topic(s.kafka)
    tps = [TopicPartition(topic, p) for p in partitions]
    probe = kafka_clients.consumer(s.kafka, isolation_level="read_uncommitted", enable_auto_commit=False)
    try:
        ends = probe.end_offsets(tps)  # the high watermark: open transactions' records included
    finally:
        probe.close()
    timeout_s = timeout_s or 3 * s.stream.ingest_transaction_timeout_ms / 1000 + 30
    reader = kafka_clients.consumer(s.kafka, enable_auto_commit=False,
                                    max_partition_fetch_bytes=8 * 1024 * 1024)
    windows = {p: ReplayWindow() for p in partitions}
    try:
        reader.assign(tps)
        reader.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while any(reader.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the dedupe state of partitions {partitions} stayed behind an open "
                                   f"transaction for {timeout_s:.0f}s")
            for tp, records in reader.poll(timeout_ms=500).items():
                for rec in records:
                    if rec.value is not None:  # a tombstone: nothing to restore
                        windows[tp.partition].restore(rec.key.decode(), rec.value)
    finally:
        reader.close()
    return windows
