"""What the ingest checks before a reading may enter Kafka. Pure logic, no I/O.

Order matters for the reasons reported: an envelope that does not parse is
`malformed` before anything else. The replay window is not checked here: the
ingest's instances share the readings subscription, so no one instance sees
all of a device's readings; the one authoritative (device, seq) check is the
dedupe stage's (citygrid.stream.dedupe), which holds each device's window and
only ever sees readings whose signature verified, so forged traffic cannot push
a real device's window forward and get its genuine readings rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

from citygrid.errors import (
    DeviceRevoked,
    DuplicateReading,
    OutOfRange,
    ReadingRejected,
    ReplayedReading,
    TopicMismatch,
)
from citygrid.reading import Reading, SignedReading
from citygrid.signing import DeviceRegistry


class IngestFault(ReadingRejected, reason="ingest_error"):
    """The ingest itself failed on this message (a bug); kept in the dead letters for replay once fixed."""


@dataclass
class ReplayWindow:
    """Per-device sliding window of accepted sequence numbers, IPsec's anti-replay bitmap (RFC 4303
    §3.4.3): the highest seq accepted and one bit for each of the `size` seqs up to it (bit i: seq
    highest - i). A bitmap rather than a set, so a device costs ~600 bytes at most and its state is
    one small record in the dedupe stage's changelog."""

    size: int = 4096
    highest: dict[str, int] = field(default_factory=dict)
    bits: dict[str, int] = field(default_factory=dict)

    def check(self, device: str, seq: int) -> None:
        """Raise if (device, seq) was accepted before or is older than the window."""
        top = self.highest.get(device)
        if top is None or seq > top:
            return
        if seq <= top - self.size:
            raise ReplayedReading(
                f"seq {seq} of {device} is older than the replay window (highest {top})"
            )
        if self.bits[device] >> (top - seq) & 1:
            raise DuplicateReading(f"seq {seq} of {device} was already accepted")

    def accept(self, device: str, seq: int) -> None:
        """Record an accepted reading, sliding the window forward."""
        top = self.highest.get(device)
        if top is None:
            self.highest[device], self.bits[device] = seq, 1
        elif seq > top:
            self.highest[device] = seq
            self.bits[device] = ((self.bits[device] << (seq - top)) | 1) & ((1 << self.size) - 1)
        elif seq > top - self.size:
            self.bits[device] |= 1 << (top - seq)

    def forget(self, device: str, seq: int) -> None:
        """Undo `accept` for a reading that could not be stored, so its redelivery passes."""
        top = self.highest.get(device)
        if top is not None and top - self.size < seq <= top:
            self.bits[device] &= ~(1 << (top - seq))

    def encode(self, device: str) -> bytes:
        """One device's window as a small record: [highest, run of seen seqs ending at it, the rest
        of the bitmap] — a device that reports in order costs a few bytes, not the whole bitmap."""
        bits = self.bits[device]
        run = (~bits & (bits + 1)).bit_length() - 1  # trailing ones: highest, highest - 1, … all seen
        rest = bits >> run
        return msgpack.packb([self.highest[device], run, rest.to_bytes((rest.bit_length() + 7) // 8, "big")])

    def restore(self, device: str, record: bytes) -> None:
        """Take a device's window from `encode`'s record (the one written last wins)."""
        top, run, rest = msgpack.unpackb(record)
        self.highest[device] = int(top)
        self.bits[device] = ((int.from_bytes(rest, "big") << run) | ((1 << run) - 1)) & ((1 << self.size) - 1)

    def drop(self, device: str) -> None:
        """Forget a device altogether (its partition went to another dedupe member)."""
        self.highest.pop(device, None)
        self.bits.pop(device, None)


@dataclass
class IngestValidator:
    """Checks schema, signature, enrolment and timestamp bounds (replays: see ReplayWindow)."""

    registry: DeviceRegistry
    max_future_ms: int = 5 * 60 * 1000
    max_age_ms: int = 30 * 24 * 3600 * 1000

    def check(self, payload: bytes, now_ms: int, district: str | None = None) -> Reading:
        """Return the verified reading or raise a ReadingRejected subclass. `district` is the one
        in the reading's MQTT topic: it must be the device's enrolled district."""
        reading = SignedReading.decode(payload).verify(self.registry)
        self.check_enrolment(reading, district)
        if reading.ts_ms > now_ms + self.max_future_ms:
            raise OutOfRange(f"timestamp {reading.ts_ms} is in the future (now {now_ms})")
        if reading.ts_ms < now_ms - self.max_age_ms:
            raise OutOfRange(f"timestamp {reading.ts_ms} is older than the accepted age")
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
