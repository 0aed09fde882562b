"""What the market's agent does with a signed order and with a market tick, as plain functions.

An order record is booked only if it is a canonical signed order, by an enrolled participant's order
key, for an interval that is still open on the partition its key routes to, not expired, and a newer
revision (higher nonce) of its order id than the one booked; anything else raises Refused with the
reason its dead letter and counter carry.

Time in the market is the ticks' time, not the wall clock of whichever worker happens to process a
record: every worker's timer writes a sealed tick (its clock) to every orders partition, and the
agent handles ticks in log order with the orders. An order after the tick that passed its gate is
late; a tick that passes a gate clears that book. So a worker that takes a partition over and
re-reads it books and clears exactly what the first would have: same orders, same trades, same ids.
No broker here: `agents.py` only moves records between Kafka and these functions.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import NoReturn

import structlog
from kafka.partitioner.default import murmur2
from prometheus_client import Counter, Gauge, Histogram

from citygrid.clearing import PriceCertificate
from citygrid.interval_records import ClearingPrice, IntervalSummary, sorted_book, summarize
from citygrid.market import Mechanism, Order, Trade
from citygrid.sealed import MAGIC, StateTampered, seal, unseal
from citygrid.settings import MarketSettings
from citygrid.signed_orders import OrderRefused, SignedOrder
from citygrid.stream.market.auction import MarketPlan
from citygrid.stream.market.book import Books, MarketRules

log = structlog.get_logger(__name__)

ORDERS = Counter("citygrid_market_orders_total", "Signed orders accepted into an interval's book")
REFUSED = Counter("citygrid_market_orders_refused_total",
                  "Order records refused (unsigned, forged, unknown, replayed, expired, late, …)", ["reason"])
TRADES = Counter("citygrid_market_trades_total", "Trades cleared")
TICKS = Counter("citygrid_market_ticks_total", "Market ticks that moved an orders partition's time forward")
CLEAR_SECONDS = Histogram("citygrid_market_clear_seconds", "Time to clear one interval's book")
CLEARED_KWH = Gauge("citygrid_market_cleared_volume_kwh", "Energy traded in the last cleared interval")
CLEARING_PRICE = Gauge("citygrid_market_clearing_price",
                       "Clearing price of the last cleared interval (planck per Wh)")

TICK_CONTEXT = b"market-tick"


class Refused(Exception):
    """A record the market will not book: `reason` (short) for the dead letter, and the error."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason


@dataclass(frozen=True)
class ClearedInterval:
    """One cleared interval: what the market publishes for the settler and for audit."""

    summary: IntervalSummary
    orders: list[SignedOrder]  # in book order
    trades: list[Trade]
    certificate: PriceCertificate | None = None  # its prices' proof; the summary commits to its digest


def expected_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as kafka-python and aiokafka) gives `key`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def order_key(interval_start_ms: int) -> bytes:
    """The record key of every order of an interval: all of them go to one partition, one book."""
    return str(interval_start_ms).encode()


def take_order(books: Books, rules: MarketRules, partition: int, key: bytes | None, raw: bytes) -> Order:
    """Book a signed order record, or raise Refused (counted) saying why not."""
    try:
        signed = SignedOrder.decode(raw)
        order = signed.verified(rules.participants)
    except OrderRefused as exc:
        _refuse(exc.reason, str(exc))
    start = order.interval_start_ms
    location = rules.plan.location
    if location is not None and order.participant not in location:
        _refuse("no_bus", f"participant {order.participant} has no grid bus in the registry, so the "
                          "market cannot tell which wires its energy crosses; enrol it with --bus")
    if start % rules.interval_ms:
        _refuse("malformed", f"order {order.order_id} names {start}, not the start of an interval")
    if key != order_key(start) or partition != expected_partition(order_key(start), rules.partitions):
        _refuse("misrouted", f"order {order.order_id} for interval {start} must be keyed {start} "
                             "(and on that key's partition), so one worker holds the interval's book")
    clock = books.clock(partition)
    if rules.gate_of(start) <= clock.tick_ms:
        _refuse("late", f"order {order.order_id} for interval {start} came after its gate closed")
    if order.expires_ms < start + rules.interval_ms or order.expires_ms <= clock.tick_ms:
        _refuse("expired", f"order {order.order_id} expires at {order.expires_ms}, before its interval ends "
                           f"({start + rules.interval_ms}) or the market's time ({clock.tick_ms})")
    booked = books.current(start, order.order_id)
    if booked is not None and booked.unverified_order().nonce >= order.nonce:
        _refuse("replayed", f"order {order.order_id} nonce {order.nonce} is not above the booked "
                            f"{booked.unverified_order().nonce}")
    books.put(start, order.order_id, signed)
    if start not in clock.open:
        clock.open = sorted([*clock.open, start])
        books.set_clock(partition, clock)
    ORDERS.inc()
    return order


def _refuse(reason: str, error: str) -> NoReturn:
    REFUSED.labels(reason).inc()
    log.warning("market_order_refused", reason=reason, error=error[:300])
    raise Refused(reason, error)


def tick_record(state_key: bytes, now_ms: int) -> bytes:
    """A market tick: this worker's clock, sealed so no one without the workers' key can move time."""
    return seal(state_key, TICK_CONTEXT, struct.pack(">q", now_ms))


def is_tick(raw: bytes) -> bool:
    """Whether a record on the orders topic claims to be a tick (orders are JSON, never sealed)."""
    return raw.startswith(MAGIC)


def take_tick(books: Books, rules: MarketRules, partition: int, raw: bytes,
              mechanism: Mechanism) -> list[ClearedInterval]:
    """Advance the partition's clock to a tick's time and clear every book whose gate it passed."""
    try:
        (now_ms,) = struct.unpack(">q", unseal(rules.state_key, TICK_CONTEXT, raw))
    except (StateTampered, struct.error) as exc:
        _refuse("forged_tick", f"a tick not sealed by a worker: {exc}")
    clock = books.clock(partition)
    if now_ms <= clock.tick_ms:
        return []  # another worker's (or an older) tick: time only moves forward
    TICKS.inc()
    due = [s for s in clock.open if rules.gate_of(s) <= now_ms]
    cleared = [clear_interval(s, books.orders(s), mechanism, rules.plan) for s in due]
    for s in due:
        books.drop(s)
    clock.tick_ms, clock.open = now_ms, [s for s in clock.open if s not in due]
    books.set_clock(partition, clock)
    return cleared


def clear_interval(start: int, signed: list[SignedOrder], mechanism: Mechanism,
                   plan: MarketPlan) -> ClearedInterval:
    """Clear one interval's booked (verified) orders into trades and the summary that commits to both."""
    book = sorted_book(signed)
    orders = [s.unverified_order() for s in book]  # verified when booked
    t0 = time.perf_counter()
    result = plan.clear(orders, mechanism, start)
    CLEAR_SECONDS.observe(time.perf_counter() - t0)
    TRADES.inc(len(result.trades))
    CLEARED_KWH.set(result.wh / 1000)
    if result.clearing_price is not None:
        CLEARING_PRICE.set(result.clearing_price)
    price = ClearingPrice.of(result.clearing_price, result.certificate)
    summary = summarize(start, mechanism, book, price, result.trades)
    log.info("market_cleared", interval=start, orders=len(orders), trades=len(result.trades),
             wh=result.wh, price=result.clearing_price, root=summary.orders_root[:16])
    return ClearedInterval(summary, book, list(result.trades), result.certificate)


def take_record(books: Books, rules: MarketRules, partition: int, key: bytes | None, raw: bytes,
                m: MarketSettings) -> list[ClearedInterval]:
    """Handle one record of the orders topic: a tick (what it cleared) or an order (nothing cleared)."""
    if not isinstance(raw, bytes):
        _refuse("malformed", "an orders record with no value")
    if is_tick(raw):
        return take_tick(books, rules, partition, raw, Mechanism(m.mechanism))
    take_order(books, rules, partition, key, raw)
    return []
