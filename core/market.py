"""Order book types: bids, offers and the trades a clearing produces.

Energy is in whole watt-hours and prices in the chain's smallest currency unit
(planck) per Wh, so every amount that is settled on chain is an exact integer
and the clearing never has to round money.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Every integer on the wire fits a signed 64-bit field (SQLite, Kafka tooling, the chain's u64/u128):
# a record claiming more is refused at parse, never passed on to fail (or wrap) further down.
MAX_INT64 = 2**63 - 1
Int64 = Annotated[int, Field(ge=0, le=MAX_INT64)]
Name = Annotated[str, Field(min_length=1, max_length=128)]


class Side(StrEnum):
    """Which way an order trades."""

    BID = "bid"  # a consumer buying
    OFFER = "offer"  # a prosumer selling surplus


class Mechanism(StrEnum):
    """How matched energy is priced."""

    PAY_AS_CLEAR = "pay_as_clear"  # one uniform price for every trade of the interval
    PAY_AS_BID = "pay_as_bid"  # each trade at its buyer's limit


class Order(BaseModel):
    """A bid or offer for one market interval.

    What the market and the settler accept is an Order signed by its participant's enrolled key
    (citygrid.signed_orders): `nonce` orders a participant's revisions of one order id (a higher one
    replaces it), and `expires_ms` bounds how long the signed order can be used at all; both default to
    0 only so the clearing's own tests can build bare orders, which the market never takes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_id: Name
    participant: Name
    side: Side
    wh: int = Field(gt=0, le=MAX_INT64)
    limit: int = Field(ge=0, le=MAX_INT64,
                       description="planck per Wh: max a buyer pays / min a seller accepts")
    interval_start_ms: Int64 = 0
    nonce: Int64 = 0
    expires_ms: Int64 = 0


class Trade(BaseModel):
    """Energy moving from a seller to a buyer in one interval, and what it costs."""

    model_config = ConfigDict(frozen=True)

    trade_id: Name
    interval_start_ms: Int64
    buyer: Name
    seller: Name
    bid_id: Name
    offer_id: Name
    wh: int = Field(gt=0, le=MAX_INT64)
    price: Int64 = Field(description="planck per Wh the buyer pays, grid fee included")
    grid_fee: Int64 = Field(description="planck per Wh of the price that goes to the grid operator")

    @model_validator(mode="after")
    def _fee_within_price(self) -> Trade:
        if self.grid_fee > self.price:
            raise ValueError(f"grid fee {self.grid_fee} exceeds the price {self.price}: the seller would pay")
        return self

    @property
    def buyer_pays(self) -> int:
        """Total the buyer pays."""
        return self.wh * self.price

    @property
    def seller_receives(self) -> int:
        """Total the seller receives."""
        return self.wh * (self.price - self.grid_fee)

    @property
    def fee_total(self) -> int:
        """Total grid fee of the trade."""
        return self.wh * self.grid_fee


def trade_id(interval_start_ms: int, bid_id: str, offer_id: str) -> str:
    """A deterministic id, so a re-run clearing names the same trades and settlement stays idempotent."""
    digest = hashlib.sha256(f"{interval_start_ms}|{bid_id}|{offer_id}".encode()).hexdigest()
    return digest[:16]
