"""Feeding the settler from what the market publishes: its summaries, signed orders and trades.

The market publishes each cleared interval's signed orders, trades and summary, all keyed by interval
(citygrid.interval_records). The feed holds them per interval (`trade_backing.Evidence`) and settles
an interval as soon as its orders hash to the summary's root and its backed trades to the summary's
trades hash (`trade_backing.judge`); a trade that is not backed by its parties' signed orders goes to
the settler's dead-letter topic with its reason while the genuine trades of the interval still settle.
An interval still unproven `settlement.evidence_wait_s` after its first record (no summary, orders
missing, a forged trade that breaks the hash) is dead-lettered whole and nothing of it is paid. The wait
runs out only once the feed has read everything Kafka holds: a feed catching up on a backlog (after an
outage or a takeover) reads its partitions unevenly, and the rest of an interval may still be behind.

Every record is checked before it is held: bounded, parsed strictly, orders verified against the
participants' enrolled keys. One bad record neither stops nor poisons the genuine ones after it.
Offsets are committed only when no interval is held open, after its dead letters are flushed; re-read
records are harmless because the settlement store recognises an interval it already holds.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable

import structlog
from kafka import KafkaConsumer
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from pydantic import ValidationError

from citygrid.errors import CitygridError
from citygrid.interval_records import IntervalSummary, PublishedInterval
from citygrid.ledger.consumer import ledger_consumer
from citygrid.ledger.dead_letters import DeadLetters
from citygrid.ledger.errors import ChainUnreachable, LedgerError, SettlementError
from citygrid.ledger.settlement import Settler
from citygrid.ledger.settlement_store import Settlement
from citygrid.ledger.trade_backing import Evidence, Verdict, judge, verified_order
from citygrid.market import Trade, trade_id
from citygrid.records import MAX_RECORD_BYTES
from citygrid.settings import CitygridSettings
from citygrid.topics import cleared_orders_topic, interval_summaries_topic

log = structlog.get_logger(__name__)


def checked_trade(raw: bytes) -> Trade | tuple[str, str]:
    """The trade in a record, or (reason, error) saying why it is no trade record."""
    if len(raw) > MAX_RECORD_BYTES:
        return "too_large", f"trade record of {len(raw)} bytes exceeds {MAX_RECORD_BYTES}"
    try:
        trade = Trade.model_validate_json(raw)
    except ValidationError as exc:
        return "malformed", f"not a Trade record: {str(exc)[:500]}"
    if trade.trade_id != trade_id(trade.interval_start_ms, trade.bid_id, trade.offer_id):
        return "malformed", f"trade id {trade.trade_id} is not derived from its interval, bid and offer"
    return trade


class Feed:
    """Each interval's evidence as records arrive, and what is settled or dead-lettered from it."""

    def __init__(self, settler: Settler, s: CitygridSettings,
                 behind: Callable[[], bool] = lambda: False) -> None:
        self.settler = settler
        self.wait_s = s.settlement.evidence_wait_s
        self.behind = behind  # whether records are left to read: then no interval's wait runs out
        k = s.kafka
        self.topics = [k.trades_topic, cleared_orders_topic(k), interval_summaries_topic(k)]
        self.dead = {t: DeadLetters(k, t, "settler") for t in self.topics}
        self.open: dict[int, Evidence] = defaultdict(Evidence)

    def take(self, rec: object) -> None:
        """Hold one consumed record with its interval's evidence, or dead-letter it with the reason."""
        topic, raw = getattr(rec, "topic", ""), getattr(rec, "value", b"") or b""
        try:
            if topic == self.topics[0]:
                self._take_trade(rec, raw)
            elif topic == self.topics[1]:
                signed = verified_order(raw, self.settler.participants)
                self._evidence(signed.unverified_order().interval_start_ms).orders[signed.encode()] = signed
            elif len(raw) > MAX_RECORD_BYTES:
                self.dead[topic].send(rec, "too_large", f"summary record of {len(raw)} bytes")
            else:
                summary = IntervalSummary.model_validate_json(raw)
                self._evidence(summary.interval_start_ms).summary = summary
        except CitygridError as exc:
            self.dead[topic].send(rec, exc.reason, str(exc))
        except ValidationError as exc:
            self.dead[topic].send(rec, "malformed", f"not an interval summary: {str(exc)[:500]}")

    def _take_trade(self, rec: object, raw: bytes) -> None:
        checked = checked_trade(raw)
        if isinstance(checked, tuple):
            self.dead[self.topics[0]].send(rec, *checked)
        else:
            self._evidence(checked.interval_start_ms).add_trade(checked, rec)

    def _evidence(self, interval: int) -> Evidence:
        ev = self.open[interval]
        ev.since = ev.since or time.monotonic()
        return ev

    def settle_due(self) -> None:
        """Settle every proven interval; dead-letter what stayed unproven past the wait."""
        now, behind = time.monotonic(), None
        for interval in sorted(self.open):
            ev = self.open[interval]
            expired = now - ev.since >= self.wait_s
            if expired:
                behind = self.behind() if behind is None else behind
                if behind:  # the rest of it may be in what is still unread: wait on from now
                    ev.since, expired = now, False
            if not ev.orders_match():
                if expired:
                    self._give_up(interval, ev)
                continue
            verdict = judge(ev, self.settler.participants, self.settler.grid_operator)
            if verdict.problem is not None and not expired:
                continue  # a trade may still be on its way
            del self.open[interval]
            self._act(ev, verdict)

    def _give_up(self, interval: int, ev: Evidence) -> None:
        why = (f"interval {interval}: no summary" if ev.summary is None else
               f"interval {interval}: the {len(ev.orders)} orders held do not hash to the summary's root")
        log.error("settlement_unproven", interval=interval, problem=why)
        for _, record in ev.trades.values():
            self.dead[self.topics[0]].send(record, "unbacked_interval", why)
        del self.open[interval]

    def _act(self, ev: Evidence, verdict: Verdict) -> None:
        for record, reason, error in verdict.refused:
            self.dead[self.topics[0]].send(record, reason, error)
        if not verdict.pay:
            return
        assert ev.summary is not None
        try:
            self.settler.settle(ev.summary, verdict.pay)
        except ChainUnreachable:
            raise  # an outage, not a bad record: stop, and settle it after the restart
        except LedgerError as exc:
            # Recorded as failed (or refused by the pool); the operator fixes funds and settles again.
            log.error("settlement_not_done", interval=ev.summary.interval_start_ms, error=str(exc))

    def flush(self) -> None:
        """Make every dead letter durable before offsets move past their records."""
        for d in self.dead.values():
            d.flush()

    def close(self) -> None:
        """Close the dead-letter producers."""
        for d in self.dead.values():
            d.close()


class _Handover(ConsumerRebalanceListener):
    """The settler's side of leadership (citygrid.ledger.leadership): only the active instance settles.

    Taking over first finishes what the shared settlement store holds unfinished (an interval the
    previous active signed is found on chain or its same bytes resubmitted, never signed again);
    handing over drops the evidence held open, which the next active re-reads from Kafka. Recovery
    waits for the takeover: a standby that recovered at start could sign an interval the active was
    about to sign, and pay it twice.
    """

    def __init__(self, feed: Feed) -> None:
        self.feed = feed

    def on_partitions_revoked(self, revoked: list) -> None:
        """Hand over: forget open evidence."""
        if revoked:
            self.feed.open.clear()
            log.info("settler_standby", partitions=len(revoked))

    def on_partitions_assigned(self, assigned: list) -> None:
        """Take over: re-read the chain's nonce and finish every unfinished interval."""
        if assigned:
            log.info("settler_active", partitions=len(assigned))
            try:
                for r in self.feed.settler.recover():
                    log.info("settlement_recovered", interval=r.interval_start_ms, status=r.status)
            except ChainUnreachable:
                raise  # an outage: stop, and recover after the restart
            except LedgerError as exc:  # failed on chain: recorded; the operator settles it again
                log.error("settlement_not_recovered", error=str(exc))


def run_feed(settler: Settler, s: CitygridSettings, stop: threading.Event) -> None:
    """Consume the market's published intervals and settle each proven one until `stop` is set, as the
    group's active settler or its standby."""
    feed = Feed(settler, s)
    consumer = ledger_consumer(s.kafka, feed.topics, s.settlement.group, _Handover(feed))
    feed.behind = lambda: unread(consumer)
    uncommitted = False
    try:
        while not stop.is_set():
            polled = consumer.poll(timeout_ms=200)
            for records in polled.values():
                for rec in records:
                    feed.take(rec)
            uncommitted = uncommitted or bool(polled)
            feed.settle_due()
            if not feed.open and uncommitted:
                feed.flush()  # committed past only once its dead letters are kept
                consumer.commit()
                uncommitted = False
    finally:
        consumer.close()
        feed.close()


def unread(consumer: KafkaConsumer) -> bool:
    """Whether any assigned partition has committed records this consumer has not read yet (its end
    offsets are read-committed ones, like the consumer: an open transaction's records do not count)."""
    assigned = list(consumer.assignment())
    if not assigned:
        return False
    try:
        ends = consumer.end_offsets(assigned)
    except KafkaError:  # the broker cannot say now: wait on rather than give up on evidence
        return True
    return any(consumer.position(tp) < ends[tp] for tp in assigned)


def settle_published(settler: Settler, published: PublishedInterval) -> tuple[Settlement, list[str]]:
    """Settle one published interval from a file (`citygrid ledger settle --book`), with the same checks
    as the feed: (its settlement, why each refused trade was refused); SettlementError if it is unproven."""
    ev = Evidence(summary=published.summary)
    for signed in published.orders:
        signed.verified(settler.participants)  # OrderRefused if any is not its participant's
        ev.orders[signed.encode()] = signed
    for t in published.trades:
        ev.add_trade(t, t.trade_id)
    if not ev.orders_match():
        raise SettlementError(f"interval {published.summary.interval_start_ms}: the orders do not hash to "
                              "the summary's root; nothing is paid")
    verdict = judge(ev, settler.participants, settler.grid_operator)
    if verdict.problem is not None:
        raise SettlementError(f"{verdict.problem}; nothing is paid")
    refused = [f"{record}: {reason}: {error}" for record, reason, error in verdict.refused]
    return settler.settle(published.summary, verdict.pay), refused
