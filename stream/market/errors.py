"""The market's exceptions, under the stream layer's hierarchy."""

from __future__ import annotations

from citygrid.stream.errors import StreamError


class MarketError(StreamError):
    """Base of every error the market raises on purpose."""


class BidderKeyError(MarketError, reason="config"):
    """A bidder's order key is missing, unreadable or not the one its participant is enrolled with."""
