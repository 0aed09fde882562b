"""The exception hierarchy shared by every part of citygrid.

Rejections carry a short machine-readable `reason` so that the dead-letter
topic and the metrics can group them, plus a message a person can act on.
"""

from __future__ import annotations


class CitygridError(Exception):
    """Base of every error citygrid raises on purpose; `reason` is its short machine-readable name."""

    reason = "error"

    def __init_subclass__(cls, reason: str = "", **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.reason = reason or cls.reason


class ReadingRejected(CitygridError, reason="rejected"):
    """A reading that must not enter the platform; `reason` names why."""


class MalformedReading(ReadingRejected, reason="malformed"):
    """The bytes are not a reading of a schema version we understand."""


class UnknownDevice(ReadingRejected, reason="unknown_device"):
    """The device is not in the registry, so its signature cannot be checked."""


class BadSignature(ReadingRejected, reason="bad_signature"):
    """The signature does not match the device's registered public key."""


class DuplicateReading(ReadingRejected, reason="duplicate"):
    """This (device, seq) was already accepted."""


class ReplayedReading(ReadingRejected, reason="replayed"):
    """The sequence number is older than the device's replay window."""


class OutOfRange(ReadingRejected, reason="out_of_range"):
    """A value or timestamp lies outside what a real sensor can report."""


class DeviceRevoked(ReadingRejected, reason="revoked"):
    """The device's enrolment was revoked: its new readings are refused (its old ones still verify)."""


class TopicMismatch(ReadingRejected, reason="topic_mismatch"):
    """The reading's topic or kind differs from what the device was enrolled as."""


class ConfigError(CitygridError, reason="config"):
    """Configuration or key material is missing or unusable."""


class NonCanonical(ReadingRejected, reason="non_canonical"):
    """The bytes parse, but are not the one canonical encoding: their signature or proof would not hold."""


class PayloadTooLarge(ReadingRejected, reason="too_large"):
    """The message is larger than any valid reading can be; kept truncated, with its hash and length."""
