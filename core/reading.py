"""The reading schema (version 1) and its signed wire envelope.

A reading's body is canonical msgpack (keys sorted), so the bytes a device
signs are the bytes the ingest verifies and the bytes the ledger hashes into
its Merkle tree; no re-encoding happens between edge and chain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from citygrid.errors import MalformedReading, OutOfRange, ReadingRejected
from citygrid.signing import DeviceKey, DeviceRegistry, verify_signature

SCHEMA_VERSION = 1
# A sensor value beyond this magnitude is a fault, not a measurement.
MAX_ABS_VALUE = 1e9
# 2020-01-01T00:00:00Z: nothing older was ever measured by a citygrid device.
MIN_TS_MS = 1_577_836_800_000


class ModelOutput(BaseModel):
    """What the edge model said about the reading, and which model said it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=64)
    outputs: dict[str, float]


class Reading(BaseModel):
    """One measurement of one device at one time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    device: str = Field(min_length=1, max_length=64)
    seq: int = Field(ge=0)
    ts_ms: int = Field(ge=MIN_TS_MS)
    kind: str = Field(min_length=1, max_length=32)
    values: dict[str, float]
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
        for name, v in values.items():
            if not math.isfinite(v) or abs(v) > MAX_ABS_VALUE:
                raise OutOfRange(f"value {name}={v} is not a finite measurement")
        return values

    def body(self) -> bytes:
        """Canonical msgpack bytes: what is signed, verified and hashed."""
        return _pack_canonical(self.model_dump(exclude_none=True))

    @classmethod
    def from_body(cls, body: bytes) -> Reading:
        """Parse and validate a body, raising MalformedReading or OutOfRange."""
        try:
            raw = msgpack.unpackb(body, raw=False, strict_map_key=True)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise MalformedReading(f"body is not msgpack: {exc}") from exc
        if not isinstance(raw, dict):
            raise MalformedReading("body is not a map")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            # An OutOfRange raised inside a validator arrives wrapped.
            for err in exc.errors():
                if isinstance(err.get("ctx", {}).get("error"), OutOfRange):
                    raise err["ctx"]["error"] from None
            raise MalformedReading(f"body does not match schema v{SCHEMA_VERSION}: {exc}") from None


def _pack_canonical(obj: Any) -> bytes:
    def sort(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: sort(o[k]) for k in sorted(o)}
        return o

    return msgpack.packb(sort(obj), use_bin_type=True)


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
        """Parse an envelope, raising MalformedReading on anything else."""
        try:
            raw = msgpack.unpackb(payload, raw=False)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise MalformedReading(f"envelope is not msgpack: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("v") != SCHEMA_VERSION:
            raise MalformedReading("envelope is not a v1 signed reading")
        body, sig = raw.get("b"), raw.get("s")
        if not isinstance(body, bytes) or not isinstance(sig, bytes) or len(sig) != 64:
            raise MalformedReading("envelope lacks a body or a 64-byte signature")
        return cls(body, sig)

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
