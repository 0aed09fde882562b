"""Re-checking a reading taken from Kafka: what every consumer that acts on readings does first.

The readings topic is written by the ingest, but a consumer trusts nothing it has not checked
itself (the trust model): the anchorer and the learner verify each envelope's device signature
against the device registry, that the body is canonical (re-encoding gives the same bytes, so the
leaf that is anchored is the only encoding of that reading), and that every integer fits the
64-bit columns and fields downstream. The registry file is re-read when it changes, so a device
enrolled after the process started is recognised without a restart.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from citygrid.errors import MalformedReading, OutOfRange, ReadingRejected
from citygrid.reading import Reading, SignedReading
from citygrid.signing import DeviceRegistry

# SQLite INTEGER, Kafka, Substrate's u64 and every other 64-bit signed field downstream.
MAX_INT64 = 2**63 - 1


class NotCanonical(ReadingRejected, reason="not_canonical"):
    """The body decodes, but is not the one canonical encoding of the reading it holds."""


class RegistryFile:
    """The device registry at a path, re-read when the file's modification time or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._registry = DeviceRegistry()

    def current(self) -> DeviceRegistry:
        """The registry as the file holds it now (the last good one if the file is being replaced)."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp != self._stamp:
            try:
                self._registry = DeviceRegistry.load(self.path)
                self._stamp = stamp
            except (ValueError, OSError):
                pass  # a half-written file: keep the last good registry, read again next time
        return self._registry


def check_envelope(envelope: bytes, registry: DeviceRegistry) -> Reading:
    """The reading in `envelope` if it is signed by its registered device, canonical and in bounds;
    else ReadingRejected (MalformedReading, UnknownDevice, BadSignature, NotCanonical, OutOfRange)."""
    signed = SignedReading.decode(envelope)
    reading = signed.verify(registry)
    if reading.body() != signed.body:
        raise NotCanonical(f"reading {reading.device}/{reading.seq} is not canonically encoded")
    for name in ("seq", "ts_ms"):
        if getattr(reading, name) > MAX_INT64:
            raise OutOfRange(f"reading {reading.device}: {name} {getattr(reading, name)} exceeds 2^63-1")
    return reading


class ReadingChecker:
    """`check_envelope` against a registry file, with the verdicts of recent envelopes remembered:
    several agents of one worker see the same record and need verify it once."""

    def __init__(self, registry_path: Path, remember: int = 20_000) -> None:
        self.registry = RegistryFile(registry_path)
        self._recent: OrderedDict[bytes, Reading | ReadingRejected] = OrderedDict()
        self._remember = remember

    def check(self, envelope: bytes) -> Reading:
        """The verified reading of `envelope`, or ReadingRejected saying why not."""
        verdict = self._recent.get(envelope)
        if verdict is None:
            try:
                verdict = check_envelope(envelope, self.registry.current())
            except ReadingRejected as exc:
                verdict = exc
            except (ValueError, TypeError) as exc:  # anything else the bytes provoke is malformed
                verdict = MalformedReading(f"cannot parse the envelope: {exc}")
            if not isinstance(verdict, ReadingRejected) or verdict.reason != "unknown_device":
                # An unknown device may be enrolled a moment later: never remember that verdict.
                self._recent[envelope] = verdict
                if len(self._recent) > self._remember:
                    self._recent.popitem(last=False)
        if isinstance(verdict, ReadingRejected):
            raise verdict
        return verdict

    def reading_or_none(self, envelope: bytes) -> Reading | None:
        """The verified reading, or None if it does not verify."""
        try:
            return self.check(envelope)
        except ReadingRejected:
            return None
