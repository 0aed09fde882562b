"""The exception hierarchy shared by every part of citygrid.

Rejections carry a short machine-readable `reason` so that the dead-letter
topic and the metrics can group them, plus a message a person can act on.
"""

from __future__ import annotations


class CitygridError(Exception):
    """Base of every error citygrid raises on purpose."""


class ReadingRejected(CitygridError):
    """A reading that must not enter the platform; `reason` names why."""

    reason = "rejected"


class MalformedReading(ReadingRejected):
    """The bytes are not a reading of a schema version we understand."""

    reason = "malformed"


class UnknownDevice(ReadingRejected):
    """The device is not in the registry, so its signature cannot be checked."""

    reason = "unknown_device"


class BadSignature(ReadingRejected):
    """The signature does not match the device's registered public key."""

    reason = "bad_signature"


class DuplicateReading(ReadingRejected):
    """This (device, seq) was already accepted."""

    reason = "duplicate"


class ReplayedReading(ReadingRejected):
    """The sequence number is older than the device's replay window."""

    reason = "replayed"


class OutOfRange(ReadingRejected):
    """A value or timestamp lies outside what a real sensor can report."""

    reason = "out_of_range"


class ConfigError(CitygridError):
    """Configuration or key material is missing or unusable."""


class CommandRejected(CitygridError):
    """A command to a device (signal advice, model update) that the device must not act on."""

    reason = "rejected"


class AdviceRejected(CommandRejected):
    """A command on an intersection's topic is not usable signal advice for it; the light keeps its plan."""

    reason = "bad_advice"


class ModelUpdateRejected(CommandRejected):
    """A model update failed its signature, hash or version check and was not installed."""

    reason = "bad_model_update"


class RecordRejected(CitygridError):
    """A record on a Kafka topic (forecast, alert, order, trade) that does not match its schema."""

    reason = "malformed"
