"""What the market publishes when an interval clears, so the settler and any auditor can check it.

For each cleared interval the market writes every signed order of its book (one record each, keyed
by interval), its trades, and one `IntervalSummary`: the Merkle root of the book (RFC 6962 over the
canonical signed-order bytes, sorted by order id), the clearing price, and the count and hash of the
canonical trade list. The settler pays an interval only when the orders and trades it holds hash to
its summary, and commits the root, the price and the trades hash in its on-chain remark, so
`citygrid market audit` can tie the chain's payments back to signed orders.

`ClearingPrice` is the one place the interval's price lives: it is committed by its hash, so a
richer price (per node, with its certificate) replaces it without changing the summary's users.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from citygrid.clearing import PriceCertificate
from citygrid.market import Mechanism, Trade
from citygrid.merkle import MerkleTree
from citygrid.signed_orders import SignedOrder, canonical_json

MAX_INT64 = 2**63 - 1
Hex32 = Field(pattern=r"^[0-9a-f]{64}$")


class ClearingPrice(BaseModel):
    """The interval's price: the top market's pay-as-clear price (planck per Wh; None if nothing traded or
    the mechanism prices each trade itself), every market node's price, and the digest of the whole
    price certificate (citygrid.clearing.PriceCertificate) that an auditor recomputes and re-checks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uniform: int | None = Field(default=None, ge=0, le=MAX_INT64)
    nodes: dict[str, int] = Field(default_factory=dict, max_length=10_000)  # market node → price
    certificate: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")  # its certificate's digest

    @classmethod
    def of(cls, uniform: int | None, certificate: PriceCertificate | None) -> ClearingPrice:
        """The price record of a clearing and its certificate."""
        if certificate is None:
            return cls(uniform=uniform)
        digest = hashlib.sha256(canonical_json(certificate.model_dump(mode="json"))).hexdigest()
        return cls(uniform=uniform, nodes=dict(certificate.prices), certificate=digest)

    def digest(self) -> str:
        """The hash committed on chain (hex SHA-256 of its canonical JSON)."""
        return hashlib.sha256(canonical_json(self.model_dump(mode="json"))).hexdigest()


class IntervalSummary(BaseModel):
    """One cleared interval, as the market commits to it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval_start_ms: int = Field(ge=0, le=MAX_INT64)
    mechanism: Mechanism
    order_count: int = Field(ge=0, le=MAX_INT64)
    orders_root: str = Hex32
    price: ClearingPrice
    trade_count: int = Field(ge=0, le=MAX_INT64)
    trades_hash: str = Hex32

    def encode(self) -> bytes:
        """The record's canonical bytes."""
        return canonical_json(self.model_dump(mode="json"))


def sorted_book(orders: Iterable[SignedOrder]) -> list[SignedOrder]:
    """Signed orders in book order (by order id; the canonical bytes break a tie between revisions)."""
    return sorted(orders, key=lambda s: (s.unverified_order().order_id, s.encode()))


def orders_root(orders: Iterable[SignedOrder]) -> str:
    """RFC 6962 root (hex) over the canonical signed-order bytes in book order; SHA-256 of nothing if none."""
    leaves = [s.encode() for s in sorted_book(orders)]
    return (MerkleTree(leaves).root if leaves else hashlib.sha256(b"").digest()).hex()


def trades_hash(trades: Iterable[Trade]) -> str:
    """SHA-256 (hex) of the canonical JSON list of the trades, sorted by trade id."""
    ordered = sorted(trades, key=lambda t: t.trade_id)
    return hashlib.sha256(canonical_json([t.model_dump(mode="json") for t in ordered])).hexdigest()


def summarize(interval_start_ms: int, mechanism: Mechanism, orders: list[SignedOrder],
              price: ClearingPrice, trades: list[Trade]) -> IntervalSummary:
    """The summary of an interval cleared from `orders` into `trades` at `price`."""
    return IntervalSummary(interval_start_ms=interval_start_ms, mechanism=mechanism,
                           order_count=len(orders), orders_root=orders_root(orders), price=price,
                           trade_count=len(trades), trades_hash=trades_hash(trades))


class PublishedInterval(BaseModel):
    """An interval as published: its summary, signed orders and trades (the audit's and `settle --book`'s
    file format)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    summary: IntervalSummary
    orders: list[SignedOrder]
    trades: list[Trade]
