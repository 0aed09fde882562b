"""The market's state: each interval's signed orders and each orders partition's clock, in one table.

Orders are keyed by interval on the orders topic, so every order of an interval lands on one
partition, and the worker that owns that partition is the only one that books and clears it. The
state lives in a Faust table whose changelog follows the orders partition it was written from, so
whichever worker takes the partition over (after a rebalance or a kill) restores the same books:
- `o|<interval>|<order id>` → the order's current signed revision;
- `p|<partition>` → that partition's `PartitionClock`: the last market tick it saw, its open intervals and
  the offset of the last orders record the state includes (so a record is taken into it once, and a
  record the consumer skipped is noticed: see `agents.py`).
Every value is sealed (citygrid.sealed, HMAC under the workers' state key, bound to its table key) and
is JSON, never a pickle: a value written to the changelog by anyone else is refused, counted and
dropped (an order so lost is missing from its book, which the published root and the audit show).

Pure logic on any MutableMapping[bytes, bytes], so it is tested with a dict and run on a Faust table.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass

import structlog
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field

from citygrid.participants import Participants
from citygrid.sealed import StateTampered, seal, unseal
from citygrid.signed_orders import SignedOrder
from citygrid.stream.market.auction import MarketPlan

BOOK_TABLE = "market-books"  # the Faust table (and the seal's context)
log = structlog.get_logger(__name__)
TAMPERED = Counter("citygrid_market_state_refused_total",
                   "Market table entries refused because a worker did not seal them")
MAX_INT64 = 2**63 - 1


@dataclass(frozen=True)
class MarketRules:
    """What every worker must agree on to book and clear identically."""

    interval_ms: int
    gate_ms: int  # a book closes this long after its interval ends
    partitions: int  # of the orders topic: an interval's orders must come on its key's partition
    state_key: bytes  # the workers' secret sealing the table's values and the market's ticks
    participants: Participants
    plan: MarketPlan  # the market tree, buses and fees the books clear on

    def gate_of(self, interval_start_ms: int) -> int:
        """When the interval's book closes: the first tick at or after this clears it."""
        return interval_start_ms + self.interval_ms + self.gate_ms


class PartitionClock(BaseModel):
    """One orders partition's market time (the last tick it saw), the intervals with open books, and the
    offset of the last record of the partition taken into this state (-1: none yet)."""

    model_config = ConfigDict(extra="forbid")

    tick_ms: int = Field(default=0, ge=0, le=MAX_INT64)
    open: list[int] = Field(default_factory=list)
    offset: int = Field(default=-1, ge=-1, le=MAX_INT64)


class Books:
    """The market table: sealed signed orders by (interval, id) and a clock per orders partition."""

    def __init__(self, table: MutableMapping[bytes, bytes], state_key: bytes) -> None:
        self.table = table
        self.key = state_key

    def _get(self, key: bytes) -> bytes | None:
        raw = self.table.get(key)
        if raw is None:
            return None
        try:
            return unseal(self.key, BOOK_TABLE.encode() + b"/" + key, raw)
        except StateTampered as exc:
            # Not written by a worker: never used, and dropped so it cannot block the partition.
            TAMPERED.inc()
            log.error("market_state_refused", key=key[:80].decode(errors="replace"), error=str(exc))
            del self.table[key]
            return None

    def _put(self, key: bytes, payload: bytes) -> None:
        self.table[key] = seal(self.key, BOOK_TABLE.encode() + b"/" + key, payload)

    def clock(self, partition: int) -> PartitionClock:
        """The partition's clock (a fresh one if it never saw a tick)."""
        raw = self._get(f"p|{partition}".encode())
        return PartitionClock() if raw is None else PartitionClock.model_validate_json(raw)

    def set_clock(self, partition: int, clock: PartitionClock) -> None:
        """Store the partition's clock."""
        self._put(f"p|{partition}".encode(), clock.model_dump_json().encode())

    def taken(self, partition: int, offset: int) -> None:
        """Note that the partition's record at `offset` is in the state (booked, refused or a tick)."""
        clock = self.clock(partition)
        if offset > clock.offset:
            self.set_clock(partition, clock.model_copy(update={"offset": offset}))

    def current(self, interval_start_ms: int, order_id: str) -> SignedOrder | None:
        """The booked revision of an order, if any."""
        raw = self._get(_order_key(interval_start_ms, order_id))
        return None if raw is None else SignedOrder.decode(raw)

    def put(self, interval_start_ms: int, order_id: str, signed: SignedOrder) -> None:
        """Book (or replace) an order's signed revision."""
        self._put(_order_key(interval_start_ms, order_id), signed.encode())

    def orders(self, interval_start_ms: int) -> list[SignedOrder]:
        """Every booked order of an interval."""
        prefix = f"o|{interval_start_ms}|".encode()
        found = [self._get(k) for k in list(self.table.keys()) if k.startswith(prefix)]
        return [SignedOrder.decode(raw) for raw in found if raw is not None]

    def drop(self, interval_start_ms: int) -> None:
        """Forget a cleared interval's orders (they are published, and a late one is refused by time)."""
        prefix = f"o|{interval_start_ms}|".encode()
        for k in [k for k in list(self.table.keys()) if k.startswith(prefix)]:
            del self.table[k]


def unseen(last_taken: int, offset: int) -> range | None:
    """The offsets to take before the record at `offset`, given the last one the state took: None if that
    record is already in the state (redelivered after a takeover); the offsets in between if the consumer
    skipped some (the orders topic is written without transactions, so its offsets have no gaps of their
    own); empty if it follows on, or if the state has taken nothing yet."""
    if offset <= last_taken:
        return None
    return range(last_taken + 1, offset) if last_taken >= 0 else range(0)


def _order_key(interval_start_ms: int, order_id: str) -> bytes:
    return f"o|{interval_start_ms}|{order_id}".encode()
