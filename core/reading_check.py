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
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import NamedTuple

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


def envelope_verdict(envelope: bytes, registry: DeviceRegistry) -> Reading | ReadingRejected:
    """`check_envelope` with the refusal returned rather than raised (anything the bytes provoke is
    malformed), so a batch of verdicts can be computed away from the records they belong to."""
    try:
        return check_envelope(envelope, registry)
    except ReadingRejected as exc:
        return exc
    except (ValueError, TypeError) as exc:
        return MalformedReading(f"cannot parse the envelope: {exc}")


class BatchChecks:
    """Verdicts on whole polled batches, computed in verifier processes while the caller polls the next.

    Why processes: a reading's check (ed25519 in libsodium, then the canonical re-encode and bounds in
    Python) costs several times its parse, and on threads the Python part holds the GIL the consumer
    needs; in `workers` processes the whole check runs on other cores. Only the envelopes go out, and
    only each refusal or each verified reading's (device, seq, ts_ms) comes back: pickling a Reading,
    or parsing it again here, would cost the caller more than the check saves.
    A batch is split across the processes; verdicts come back in record order. Each verifier reads
    the registry file itself, re-reading it when it changes, as `RegistryFile` does.
    """

    def __init__(self, registry: RegistryFile, workers: int = 2) -> None:
        self.registry = registry
        self.workers = max(1, workers)
        # spawn, not fork: the caller has Kafka and chain client threads a forked child must not inherit.
        self._verifiers = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                              initializer=_open_registry, initargs=(registry.path,))
        self._parser = ThreadPoolExecutor(1, thread_name_prefix="reading-verdicts")

    def submit(self, envelopes: Sequence[bytes]) -> PendingChecks:
        """Start checking `envelopes`; `.result()` gives one verdict per envelope, in order."""
        size = max(1, -(-len(envelopes) // self.workers))
        refusals = [self._verifiers.submit(_refusals, list(envelopes[i:i + size]))
                    for i in range(0, len(envelopes), size)]
        return PendingChecks(self._parser.submit(_verdicts, refusals))

    def close(self) -> None:
        """Stop the verifiers and the parser (pending checks finish first)."""
        self._verifiers.shutdown(wait=True)
        self._parser.shutdown(wait=True)


_VERIFIER_REGISTRY: RegistryFile | None = None  # a verifier process's registry (set by _open_registry)


def _open_registry(path: Path) -> None:
    global _VERIFIER_REGISTRY
    _VERIFIER_REGISTRY = RegistryFile(path)


class Verified(NamedTuple):
    """What a consumer that places readings by device, seq and time needs of a verified one."""

    device: str
    seq: int
    ts_ms: int


def _refusals(envelopes: list[bytes]) -> list[ReadingRejected | tuple[str, int, int]]:
    """In a verifier process: each envelope's refusal, or its (device, seq, ts_ms) where it checks out."""
    assert _VERIFIER_REGISTRY is not None
    registry = _VERIFIER_REGISTRY.current()
    out: list[ReadingRejected | tuple[str, int, int]] = []
    for e in envelopes:
        v = envelope_verdict(e, registry)
        out.append(v if isinstance(v, ReadingRejected) else (v.device, v.seq, v.ts_ms))
    return out


def _verdicts(refusals: list[Future[list[ReadingRejected | tuple[str, int, int]]]]
              ) -> list[Verified | ReadingRejected]:
    """The batch's verdicts, in record order."""
    return [v if isinstance(v, ReadingRejected) else Verified(*v) for part in refusals for v in part.result()]


class PendingChecks:
    """The verdicts of one submitted batch."""

    def __init__(self, verdicts: Future[list[Verified | ReadingRejected]]) -> None:
        self._verdicts = verdicts

    def result(self) -> list[Verified | ReadingRejected]:
        """Every verdict of the batch, in record order (waits for the checks still running)."""
        return self._verdicts.result()


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
            verdict = envelope_verdict(envelope, self.registry.current())
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
