"""citygrid.stream.market: per-interval double auction of prosumers' energy (orders: citygrid.market)."""

from citygrid.stream.market.auction import Clearing, clear

__all__ = ["Clearing", "clear"]
