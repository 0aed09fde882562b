"""Feeding the settler from the market's trades topic.

The market publishes all trades of an interval together, keyed by interval; an
interval is handed to the settler once the feed has been idle for a moment or a
later interval shows up. Offsets are committed only after every interval read
so far is settled; re-read trades are harmless because the settlement store
recognises an interval it already holds.

A trade record is checked before it is held for settlement: it must parse as a bounded Trade
(every integer within 64 bits, the fee within the price) and name only enrolled participants. Any
other record goes to the settler's dead-letter topic (`trades.settler.dead`) with the reason, and
the feed moves on, so one bad record neither stops nor poisons the genuine trades after it.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import structlog
from pydantic import ValidationError

from citygrid.ledger.consumer import ledger_consumer
from citygrid.ledger.dead_letters import DeadLetters
from citygrid.ledger.errors import ChainUnreachable, LedgerError
from citygrid.ledger.settlement import Settler
from citygrid.market import Trade, trade_id
from citygrid.records import MAX_RECORD_BYTES
from citygrid.settings import CitygridSettings

log = structlog.get_logger(__name__)


def checked_trade(settler: Settler, raw: bytes) -> Trade | tuple[str, str]:
    """The trade in a record, or (reason, error) saying why it must not be settled."""
    if len(raw) > MAX_RECORD_BYTES:
        return "too_large", f"trade record of {len(raw)} bytes exceeds {MAX_RECORD_BYTES}"
    try:
        trade = Trade.model_validate_json(raw)
    except ValidationError as exc:
        return "malformed", f"not a Trade record: {str(exc)[:500]}"
    if trade.trade_id != trade_id(trade.interval_start_ms, trade.bid_id, trade.offer_id):
        return "malformed", f"trade id {trade.trade_id} is not derived from its interval, bid and offer"
    problem = settler.refusal(trade)
    if problem is not None:
        return "unknown_participant", f"trade {trade.trade_id}: {problem}"
    return trade


def run_feed(settler: Settler, s: CitygridSettings, stop: threading.Event, idle_s: float = 2.0) -> None:
    """Consume trades and settle each complete interval until `stop` is set."""
    consumer = ledger_consumer(s.kafka, s.kafka.trades_topic, s.settlement.group)
    dead = DeadLetters(s.kafka, s.kafka.trades_topic, "settler")
    open_: dict[int, dict[str, Trade]] = defaultdict(dict)
    last = time.monotonic()
    uncommitted = False
    try:
        while not stop.is_set():
            polled = consumer.poll(timeout_ms=200)
            for records in polled.values():
                for rec in records:
                    checked = checked_trade(settler, rec.value or b"")
                    if isinstance(checked, Trade):
                        open_[checked.interval_start_ms][checked.trade_id] = checked
                    else:
                        dead.send(rec, *checked)
            if polled:
                last = time.monotonic()
                uncommitted = True
            _settle_due(settler, open_, time.monotonic() - last >= idle_s)
            if not open_ and uncommitted:
                dead.flush()  # committed past only once its dead letter is kept
                consumer.commit()
                uncommitted = False
    finally:
        consumer.close()
        dead.close()


def _settle_due(settler: Settler, open_: dict[int, dict[str, Trade]], idle: bool) -> None:
    """Settle every interval a later one (or idleness) has closed."""
    newest = max(open_, default=None)
    for start in sorted(open_):
        if start == newest and not idle:
            continue
        trades = list(open_.pop(start).values())
        try:
            settler.settle(start, trades)
        except ChainUnreachable:
            raise  # an outage, not a bad record: stop, and settle it after the restart
        except LedgerError as exc:
            # Recorded as failed (or refused by the pool); the operator fixes funds and settles again.
            log.error("settlement_not_done", interval=start, error=str(exc))
