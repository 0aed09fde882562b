"""The market's exceptions, under the stream layer's hierarchy."""

from __future__ import annotations

from citygrid.stream.errors import StreamError


class MarketError(StreamError):
    """Base of every error the market raises on purpose."""


class ParticipantsConfigError(MarketError):
    """The participants file (CITYGRID_MARKET__PARTICIPANTS_FILE) is missing or malformed."""
