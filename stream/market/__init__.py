"""citygrid.stream.market: per-interval double auction of prosumers' energy."""

from citygrid.stream.market.auction import Clearing, clear
from citygrid.stream.market.orders import Mechanism, Order, Side, Trade

__all__ = ["Clearing", "Mechanism", "Order", "Side", "Trade", "clear"]
