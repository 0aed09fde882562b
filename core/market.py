"""Order book types: bids, offers and the trades a clearing produces.

Energy is in whole watt-hours and prices in the chain's smallest currency unit
(planck) per Wh, so every amount that is settled on chain is an exact integer
and the clearing never has to round money.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Side(StrEnum):
    """Which way an order trades."""

    BID = "bid"  # a consumer buying
    OFFER = "offer"  # a prosumer selling surplus


class Mechanism(StrEnum):
    """How matched energy is priced."""

    PAY_AS_CLEAR = "pay_as_clear"  # one uniform price for every trade of the interval
    PAY_AS_BID = "pay_as_bid"  # each trade at its buyer's limit


class Order(BaseModel):
    """A bid or offer for one market interval."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    participant: str
    side: Side
    wh: int = Field(gt=0)
    limit: int = Field(ge=0, description="planck per Wh: max a buyer pays / min a seller accepts")
    interval_start_ms: int = 0


class Trade(BaseModel):
    """Energy moving from a seller to a buyer in one interval, and what it costs."""

    model_config = ConfigDict(frozen=True)

    trade_id: str
    interval_start_ms: int
    buyer: str
    seller: str
    bid_id: str
    offer_id: str
    wh: int
    price: int = Field(description="planck per Wh the buyer pays, grid fee included")
    grid_fee: int = Field(description="planck per Wh of the price that goes to the grid operator")

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
