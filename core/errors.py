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
