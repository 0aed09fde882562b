"""The stream layer's exceptions, all under citygrid's one hierarchy."""

from __future__ import annotations

from citygrid.errors import CitygridError


class StreamError(CitygridError):
    """Base of every error the stream layer raises on purpose."""


class ModelStateError(StreamError):
    """A key's saved model state cannot be restored (e.g. written by an incompatible version)."""


class EvaluationDataMissing(StreamError):
    """The real data the prequential report needs is not there."""
