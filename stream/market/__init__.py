"""citygrid.stream.market: per-interval double auction of prosumers' energy."""

from citygrid.market import Mechanism, Order, Side, Trade
from citygrid.stream.market.auction import Clearing, clear

__all__ = ["Clearing", "Mechanism", "Order", "Side", "Trade", "clear"]
