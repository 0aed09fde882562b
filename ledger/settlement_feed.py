"""Feeding the settler from the market's trades topic.

The market publishes all trades of an interval together, keyed by interval; an
interval is handed to the settler once the feed has been idle for a moment or a
later interval shows up. Offsets are committed only after every interval read
so far is settled; re-read trades are harmless because the settlement store
recognises an interval it already holds.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import structlog

from citygrid.ledger.consumer import ledger_consumer
from citygrid.ledger.errors import SettlementError
from citygrid.ledger.settlement import Settler
from citygrid.market import Trade
from citygrid.settings import CitygridSettings

log = structlog.get_logger(__name__)


def run_feed(settler: Settler, s: CitygridSettings, stop: threading.Event, idle_s: float = 2.0) -> None:
    """Consume trades and settle each complete interval until `stop` is set."""
    consumer = ledger_consumer(s.kafka, s.kafka.trades_topic, s.settlement.group)
    open_: dict[int, dict[str, Trade]] = defaultdict(dict)
    last = time.monotonic()
    uncommitted = False
    try:
        while not stop.is_set():
            polled = consumer.poll(timeout_ms=200)
            for records in polled.values():
                for rec in records:
                    t = Trade.model_validate_json(rec.value)
                    open_[t.interval_start_ms][t.trade_id] = t
            if polled:
                last = time.monotonic()
                uncommitted = True
            newest = max(open_, default=None)
            idle = time.monotonic() - last >= idle_s
            for start in sorted(open_):
                if start == newest and not idle:
                    continue
                trades = list(open_.pop(start).values())
                try:
                    settler.settle(start, trades)
                except SettlementError as exc:
                    # Recorded as failed; the operator fixes funds and settles again.
                    log.error("settlement_not_done", interval=start, error=str(exc))
            if not open_ and uncommitted:
                consumer.commit()
                uncommitted = False
    finally:
        consumer.close()
