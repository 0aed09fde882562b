"""The edge agent's exception hierarchy; each message says what to do about it."""

from __future__ import annotations

from citygrid.errors import CitygridError


class EdgeError(CitygridError):
    """Base of every error the edge agent raises on purpose."""


class SensorError(EdgeError):
    """A sensor driver could not read its source (device unreachable, data missing)."""


class ModelError(EdgeError):
    """An ONNX model could not be loaded or run."""


class ModelUpdateRejected(EdgeError):
    """A model update failed its signature, hash or version check and was not installed."""


class OutboxFull(EdgeError):
    """The outbox reached its disk budget and its policy is to refuse new readings."""


class DeployError(EdgeError):
    """Installing or upgrading the agent on a device failed (the device was rolled back)."""
