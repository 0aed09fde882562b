"""The edge agent's exception hierarchy; each message says what to do about it."""

from __future__ import annotations

from citygrid.errors import CitygridError


class EdgeError(CitygridError):
    """Base of every error the edge agent raises on purpose."""


class SensorError(EdgeError):
    """A sensor driver could not read its source (device unreachable, data missing)."""


class ModelError(EdgeError):
    """An ONNX model could not be loaded or run."""


class OutboxFull(EdgeError):
    """The outbox reached its disk budget and its policy is to refuse new readings."""


