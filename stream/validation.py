"""What the ingest checks before a reading may enter Kafka. Pure logic, no I/O.

Order matters for the reasons reported: an envelope that does not parse is
`malformed` before anything else; only a reading whose signature verifies is
allowed to touch a device's replay window, so forged traffic cannot push a
real device's window forward and get its genuine readings rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from citygrid.errors import DeviceRevoked, DuplicateReading, OutOfRange, ReplayedReading, TopicMismatch
from citygrid.reading import Reading, SignedReading
from citygrid.signing import DeviceRegistry


@dataclass
class ReplayWindow:
    """Per-device sliding window of accepted sequence numbers (like IPsec's anti-replay)."""

    size: int = 4096
    highest: dict[str, int] = field(default_factory=dict)
    seen: dict[str, set[int]] = field(default_factory=dict)

    def check(self, device: str, seq: int) -> None:
        """Raise if (device, seq) was accepted before or is older than the window."""
        top = self.highest.get(device)
        if top is None:
            return
        if seq <= top - self.size:
            raise ReplayedReading(
                f"seq {seq} of {device} is older than the replay window (highest {top})"
            )
        if seq in self.seen[device]:
            raise DuplicateReading(f"seq {seq} of {device} was already accepted")

    def accept(self, device: str, seq: int) -> None:
        """Record an accepted reading, sliding the window forward."""
        seen = self.seen.setdefault(device, set())
        seen.add(seq)
        top = self.highest.get(device, -1)
        if seq > top:
            self.highest[device] = seq
            if len(seen) > 2 * self.size:
                floor = seq - self.size
                self.seen[device] = {s for s in seen if s > floor}

    def forget(self, device: str, seq: int) -> None:
        """Undo `accept` for a reading that could not be stored, so its redelivery passes."""
        self.seen.get(device, set()).discard(seq)


@dataclass
class IngestValidator:
    """Checks schema, signature, timestamp bounds and replays."""

    registry: DeviceRegistry
    window: ReplayWindow = field(default_factory=ReplayWindow)
    max_future_ms: int = 5 * 60 * 1000
    max_age_ms: int = 30 * 24 * 3600 * 1000

    def check(self, payload: bytes, now_ms: int, district: str | None = None) -> Reading:
        """Return the verified reading or raise a ReadingRejected subclass; on success the
        reading counts as accepted (call `window.forget` if storing it fails). `district` is the one
        in the reading's MQTT topic: it must be the device's enrolled district."""
        reading = SignedReading.decode(payload).verify(self.registry)
        self.check_enrolment(reading, district)
        if reading.ts_ms > now_ms + self.max_future_ms:
            raise OutOfRange(f"timestamp {reading.ts_ms} is in the future (now {now_ms})")
        if reading.ts_ms < now_ms - self.max_age_ms:
            raise OutOfRange(f"timestamp {reading.ts_ms} is older than the accepted age")
        self.window.check(reading.device, reading.seq)
        self.window.accept(reading.device, reading.seq)
        return reading

    def check_enrolment(self, reading: Reading, district: str | None) -> None:
        """Refuse a revoked device, and a reading whose topic's district or whose kind is not what the
        device was enrolled as (a key-only entry from before enrolment keeps the topic's district)."""
        entry = self.registry.enrolment(reading.device)
        if entry.revoked:
            raise DeviceRevoked(f"device {reading.device} was revoked at {entry.revoked_at_ms}")
        if entry.district is not None and district != entry.district:
            raise TopicMismatch(f"device {reading.device} is enrolled in district {entry.district!r}, "
                                f"not {district!r}")
        if entry.kind is not None and reading.kind != entry.kind:
            raise TopicMismatch(f"device {reading.device} is enrolled as {entry.kind!r}, "
                                f"not {reading.kind!r}")
