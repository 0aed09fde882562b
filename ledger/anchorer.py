"""The anchorer: consumes verified readings from Kafka and puts each interval's Merkle root on chain.

Order of durability: leaves are written to the anchor store before the root is
submitted, and per partition Kafka offsets are committed only up to the lowest
record still held by an open batch, so a crash at any point loses nothing;
re-consumed readings are recognised by (device, seq) and skipped, and batches
recorded but not yet included are submitted again on restart.

Nothing is anchored on trust: each record is re-verified (device signature against the registry,
canonical encoding, 64-bit bounds; citygrid.reading_check) before it becomes a leaf. A record that
fails, or that claims a (device, seq) already held by a different verified reading, goes to the
anchorer's dead-letter topic with the reason, and anchoring carries on. A forged record therefore
never takes a genuine reading's (device, seq) slot.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import structlog
from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata, TopicPartition
from prometheus_client import Counter
from substrateinterface import Keypair

from citygrid.errors import ReadingRejected
from citygrid.ledger import signed_once
from citygrid.ledger.anchor_store import AnchorStore, Batch
from citygrid.ledger.batching import IntervalBatcher
from citygrid.ledger.chain import ChainClient, Inclusion, inclusion_histogram
from citygrid.ledger.consumer import ledger_consumer
from citygrid.ledger.dead_letters import DeadLetters
from citygrid.ledger.errors import ExtrinsicFailed
from citygrid.ledger.offsets import OffsetTracker
from citygrid.ledger.remarks import anchor_remark
from citygrid.ledger.signer import role_keypair
from citygrid.merkle import MerkleTree
from citygrid.reading import Reading
from citygrid.reading_check import BatchChecks, PendingChecks, ReadingChecker, Verified
from citygrid.settings import CitygridSettings

log = structlog.get_logger(__name__)

ANCHORED_READINGS = Counter("citygrid_anchor_readings_total", "Readings included in anchored batches")
ANCHORED_BATCHES = Counter("citygrid_anchor_batches_total", "Batches whose root is on chain")
ANCHOR_FAILURES = Counter("citygrid_anchor_failures_total", "Root submissions that failed")
ANCHOR_LATENCY = inclusion_histogram("citygrid_anchor_submit_seconds", "an anchor extrinsic")
REFUSED = Counter("citygrid_anchor_refused_total", "Records on the readings topic not anchored, by reason",
                  ["reason"])


class ConflictingReading(ReadingRejected, reason="conflicting"):
    """A verified reading whose (device, seq) is already held by a different verified reading."""


@dataclass
class Anchorer:
    """Batches readings per interval and anchors each batch's root."""

    settings: CitygridSettings
    store: AnchorStore
    chain: ChainClient
    keypair: Keypair

    def __post_init__(self) -> None:
        a = self.settings.anchor
        self.batcher = IntervalBatcher(a.interval_s * 1000, a.interval_s * 1000)
        self.checker = ReadingChecker(self.settings.paths.device_registry)
        self.dead: DeadLetters | None = None  # set by `run`; without it refusals are only logged

    @classmethod
    def from_settings(cls, s: CitygridSettings) -> Anchorer:
        """Open the store, the chain and the anchorer's own key (a dev key only on a dev chain)."""
        chain = ChainClient(s.chain.url)
        return cls(s, AnchorStore(s.paths.anchor_store), chain,
                   role_keypair(s, "anchorer", chain.chain_type()))

    def place(self, record: object,
              checked: Reading | Verified | ReadingRejected | None = None) -> int | None:
        """Batch one consumed record (kafka-python's ConsumerRecord, or bytes); the interval start of
        the batch now holding it, or None if none does (already anchored, or refused). `checked` is
        the record's verdict when `BatchChecks` already computed it; else it is checked here."""
        envelope = getattr(record, "value", record)
        try:
            reading = self.checker.check(envelope) if checked is None else checked
            if isinstance(reading, ReadingRejected):
                raise reading
            return self._place(reading, envelope)
        except ReadingRejected as exc:
            self._refuse(record, exc.reason, str(exc))
        except Exception as exc:  # one record must never stop anchoring for every later one
            self._refuse(record, "unprocessable", repr(exc))
        return None

    def _place(self, reading: Reading | Verified, envelope: bytes) -> int | None:
        held = self.store.envelope(reading.device, reading.seq)
        if held is None:
            held = self.batcher.held(reading.device, reading.seq)
        if held is not None:
            if held != envelope:
                raise ConflictingReading(f"{reading.device}/{reading.seq} is already held by a different "
                                         "verified reading; the first one keeps the slot")
            return None  # re-read after a restart: already batched or anchored
        self.batcher.add(reading.device, reading.seq, reading.ts_ms, envelope)
        return self.batcher.interval_of(reading.ts_ms)

    def _refuse(self, record: object, reason: str, error: str) -> None:
        REFUSED.labels(reason).inc()
        if self.dead is not None and not isinstance(record, bytes):
            self.dead.send(record, reason, error)
        else:
            log.warning("anchor_refused", reason=reason, error=error[:300])

    def anchor(self, interval_start_ms: int, leaves: list[tuple[str, int, bytes]]) -> Batch:
        """Record one batch and put its root on chain."""
        tree = MerkleTree([env for _, _, env in leaves])
        batch = self.store.add_batch(
            interval_start_ms, tree.root, anchor_remark(interval_start_ms, len(tree), tree.root),
            leaves,
        )
        return self.submit(batch)

    def submit(self, batch: Batch) -> Batch:
        """Put a recorded batch's remark on chain (at most once: `signed_once`) and record where."""
        t0 = time.perf_counter()
        try:
            inclusion = self._include(batch)
        except Exception:
            ANCHOR_FAILURES.inc()
            raise
        ANCHOR_LATENCY.observe(time.perf_counter() - t0)
        self.store.mark_anchored(batch.id, inclusion)
        ANCHORED_BATCHES.inc()
        ANCHORED_READINGS.inc(batch.count)
        log.info("anchored", batch=batch.id, readings=batch.count, root=batch.root.hex(),
                 block=inclusion.block_hash, block_number=inclusion.block_number)
        return self.store.batch(batch.id)

    def _include(self, batch: Batch) -> Inclusion:
        what = f"anchor of batch {batch.id}"
        address = self.chain.address(self.keypair)
        if batch.signed is not None:  # signed before a crash or by the instance this one took over from
            stored = batch.signed
            found = signed_once.recover(self.chain, stored, address,
                                        lambda: signed_once.include(self.chain, stored, what))
            if found is not None:
                return self._succeeded(found, what)
        call = self.chain.compose("System", "remark_with_event", {"remark": batch.remark.encode()})
        signed = signed_once.sign(self.chain, call, self.keypair, self.chain.next_nonce(address))
        self.store.mark_signed(batch.id, signed)  # kept before it leaves: a successor finds these bytes
        return self._succeeded(signed_once.include(self.chain, signed, what), what)

    def _succeeded(self, inclusion: Inclusion, what: str) -> Inclusion:
        error = self.chain.dispatch_error(inclusion)
        if error:
            raise ExtrinsicFailed(f"{what} failed in block #{inclusion.block_number}: {error}")
        return inclusion

    def resubmit_pending(self) -> list[Batch]:
        """Finish batches recorded but never included (by this instance before a crash, or by the active
        one this instance took over from)."""
        return [self.submit(b) for b in self.store.batches(pending_only=True)]

    def run(self, stop: threading.Event) -> None:
        """Consume the readings topic until `stop` is set, as the group's active anchorer or its standby.

        Each polled batch is verified in `BatchChecks` processes while the next is fetched, and placed
        (in record order) one poll later; records not yet placed are never committed past. Taking over
        (partitions assigned) first finishes the batches left pending in the shared store; handing
        over (partitions revoked) drops what is open, which the next active re-reads from Kafka.
        """
        s = self.settings
        handover = _Handover(self)
        consumer = ledger_consumer(s.kafka, s.kafka.readings_topic, s.kafka.anchor_group, handover,
                                   max_poll_records=10_000)
        self.dead = DeadLetters(s.kafka, s.kafka.readings_topic, "anchorer")
        checks = BatchChecks(self.checker.registry, s.anchor.verify_workers)
        last_record = time.monotonic()
        pending: tuple[int, list[ConsumerRecord], PendingChecks] | None = None
        try:
            while not stop.is_set():
                records = [rec for batch in consumer.poll(timeout_ms=200).values() for rec in batch]
                if pending is not None and pending[0] == handover.generation:
                    self._place_all(handover.offsets, *pending[1:])
                pending = (handover.generation, records, checks.submit([r.value for r in records])) \
                    if records else None
                if records:
                    last_record = time.monotonic()
                self._anchor_due(handover.offsets, idle=pending is None
                                 and time.monotonic() - last_record >= s.anchor.idle_flush_s)
                self._commit(consumer, handover)
        finally:
            checks.close()
            consumer.close()
            self.dead.close()

    def _commit(self, consumer: KafkaConsumer, handover: _Handover) -> None:
        commit = {tp: o for tp, o in handover.offsets.committable().items()
                  if handover.committed.get(tp) != o}
        if commit:
            assert self.dead is not None
            self.dead.flush()  # a refused record is committed past only once its letter is kept
            consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in commit.items()})
            handover.committed.update(commit)

    def _place_all(self, offsets: OffsetTracker, records: list[ConsumerRecord],
                   checks: PendingChecks) -> None:
        for rec, checked in zip(records, checks.result(), strict=True):
            offsets.consume(TopicPartition(rec.topic, rec.partition), rec.offset, self.place(rec, checked))

    def _anchor_due(self, offsets: OffsetTracker, idle: bool) -> None:
        due = self.batcher.closed()
        if len(self.batcher) and idle:
            due += self.batcher.drain()
        for start, leaves in due:
            self.anchor(start, leaves)
            offsets.release(start)


class _Handover(ConsumerRebalanceListener):
    """The anchorer's side of leadership: what it holds while active, and what taking over or handing
    over does to it (kafka-python calls these from inside `poll`)."""

    def __init__(self, anchorer: Anchorer) -> None:
        self.anchorer = anchorer
        self.generation = 0  # bumped on each handover: records polled before it are not ours to place
        self.offsets, self.committed = OffsetTracker(), {}

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Hand over: drop open batches and offsets; the next active re-reads them from Kafka."""
        if revoked:
            a = self.anchorer
            a.batcher = IntervalBatcher(a.batcher.interval_ms, a.batcher.grace_ms)
            self.offsets, self.committed = OffsetTracker(), {}
            self.generation += 1
            log.info("anchorer_standby", partitions=len(revoked))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Take over: finish what the shared store holds as signed or recorded but not on chain."""
        if assigned:
            log.info("anchorer_active", partitions=len(assigned))
            self.anchorer.resubmit_pending()
