"""The reading schema (version 1) and its signed wire envelope.

A reading's body is canonical msgpack (keys sorted), so the bytes a device
signs are the bytes the ingest verifies and the bytes the ledger hashes into
its Merkle tree; no re-encoding happens between edge and chain. Parsing is
strict: no value is coerced (a string, bool or bytes where a number belongs
is refused), every size is bounded, and bytes that are not exactly the
canonical encoding of what they parse to are refused as `non_canonical`, so
every stored leaf can later be proven.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

import msgpack
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from citygrid.errors import MalformedReading, NonCanonical, OutOfRange, ReadingRejected
from citygrid.signing import DeviceKey, DeviceRegistry, verify_signature

SCHEMA_VERSION = 1
# A sensor value beyond this magnitude is a fault, not a measurement.
MAX_ABS_VALUE = 1e9
# 2020-01-01T00:00:00Z: nothing older was ever measured by a citygrid device.
MIN_TS_MS = 1_577_836_800_000
# 2100-01-01T00:00:00Z: a later timestamp is a broken clock (the ingest's window is far narrower).
MAX_TS_MS = 4_102_444_800_000
# Sequence numbers fit a signed 64-bit integer, as every store downstream (Kafka, SQLite) keeps them.
MAX_SEQ = 2**63 - 1
# A device reports a handful of values; these bounds keep one reading small whatever it claims.
MAX_VALUES = 64
MAX_NAME_LEN = 64

ValueName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LEN)]
# Strict: a number is a number; "1.5", True or b"1" are refused, never coerced.
Values = Annotated[dict[ValueName, float], Field(max_length=MAX_VALUES)]


class ModelOutput(BaseModel):
    """What the edge model said about the reading, and which model said it."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=64)
    outputs: Values

    @field_validator("outputs")
    @classmethod
    def _finite(cls, outputs: dict[str, float]) -> dict[str, float]:
        return _finite_values(outputs)


class Reading(BaseModel):
    """One measurement of one device at one time."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    schema_version: int = SCHEMA_VERSION
    device: str = Field(min_length=1, max_length=64)
    seq: int = Field(ge=0, le=MAX_SEQ)
    ts_ms: int = Field(ge=MIN_TS_MS, le=MAX_TS_MS)
    kind: str = Field(min_length=1, max_length=32)
    values: Values
    model: ModelOutput | None = None

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            raise ValueError(f"schema version {v} is not supported (expected {SCHEMA_VERSION})")
        return v

    @field_validator("values")
    @classmethod
    def _finite(cls, values: dict[str, float]) -> dict[str, float]:
        return _finite_values(values)

    def body(self) -> bytes:
        """Canonical msgpack bytes: what is signed, verified and hashed."""
        return _pack_canonical(self.model_dump(exclude_none=True))

    @classmethod
    def from_body(cls, body: bytes) -> Reading:
        """Parse and validate a body, raising MalformedReading, OutOfRange or NonCanonical."""
        try:
            raw = msgpack.unpackb(body, raw=False, strict_map_key=True)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise MalformedReading(f"body is not msgpack: {exc}") from exc
        if not isinstance(raw, dict):
            raise MalformedReading("body is not a map")
        try:
            reading = cls.model_validate(raw)
        except ValidationError as exc:
            # An OutOfRange raised inside a validator arrives wrapped.
            for err in exc.errors():
                if isinstance(err.get("ctx", {}).get("error"), OutOfRange):
                    raise err["ctx"]["error"] from None
            raise MalformedReading(f"body does not match schema v{SCHEMA_VERSION}: "
                                   f"{_summary(exc)}") from None
        if reading.body() != body:
            raise NonCanonical("body is not canonical msgpack (sorted keys, every field once, floats as "
                               "float64, no nulls); sign Reading.body() exactly")
        return reading


def _finite_values(values: dict[str, float]) -> dict[str, float]:
    for name, v in values.items():
        if not math.isfinite(v) or abs(v) > MAX_ABS_VALUE:
            raise OutOfRange(f"value {name[:MAX_NAME_LEN]}={v} is not a finite measurement")
    return values


def _summary(exc: ValidationError) -> str:
    """What is wrong, without echoing (possibly huge) input back into logs and dead letters."""
    return "; ".join(f"{'.'.join(str(p)[:MAX_NAME_LEN] for p in e['loc'])}: {e['msg']}"
                     for e in exc.errors()[:5])


def _pack_canonical(obj: Any) -> bytes:
    def sort(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: sort(o[k]) for k in sorted(o)}
        return o

    return msgpack.packb(sort(obj), use_bin_type=True)


ENVELOPE_KEYS = frozenset({"v", "b", "s"})


@dataclass(frozen=True, slots=True)
class SignedReading:
    """A reading body with the device's detached signature over it."""

    body: bytes
    signature: bytes

    def encode(self) -> bytes:
        """The wire envelope published over MQTT and stored in Kafka."""
        return msgpack.packb({"v": SCHEMA_VERSION, "b": self.body, "s": self.signature})

    @classmethod
    def decode(cls, payload: bytes) -> SignedReading:
        """Parse an envelope, raising MalformedReading on anything else (NonCanonical for an envelope
        that holds a reading but is not byte for byte what `encode` writes)."""
        try:
            raw = msgpack.unpackb(payload, raw=False)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise MalformedReading(f"envelope is not msgpack: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("v") != SCHEMA_VERSION:
            raise MalformedReading("envelope is not a v1 signed reading")
        if set(raw) != ENVELOPE_KEYS:
            raise MalformedReading(f"envelope keys must be exactly {sorted(ENVELOPE_KEYS)}")
        body, sig = raw.get("b"), raw.get("s")
        if not isinstance(body, bytes) or not isinstance(sig, bytes) or len(sig) != 64:
            raise MalformedReading("envelope lacks a body or a 64-byte signature")
        signed = cls(body, sig)
        if signed.encode() != payload:
            raise NonCanonical("envelope is not canonical (keys v, b, s in that order, binary body and "
                               "signature); send SignedReading.encode() exactly")
        return signed

    def reading(self) -> Reading:
        """The parsed body (no signature check)."""
        return Reading.from_body(self.body)

    def verify(self, registry: DeviceRegistry) -> Reading:
        """Parse the body and check the signature against the registered device key."""
        reading = self.reading()
        verify_signature(registry.public_key(reading.device), self.body, self.signature)
        return reading


def sign_reading(reading: Reading, key: DeviceKey) -> SignedReading:
    """Sign a reading with its device's key."""
    if reading.device != key.device_id:
        raise ValueError(f"reading of {reading.device} cannot be signed with {key.device_id}'s key")
    body = reading.body()
    return SignedReading(body, key.sign(body))


def reading_or_none(envelope: bytes) -> Reading | None:
    """The reading inside an envelope, signature unchecked, or None if the bytes are not one.

    For consumers of records that a verifying writer already checked, which must skip (and count)
    a record they cannot parse rather than stop on it.
    """
    try:
        return SignedReading.decode(envelope).reading()
    except ReadingRejected:
        return None
