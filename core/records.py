"""The records the stream layer writes to Kafka for others to read: forecasts, alerts, device
statistics and dead letters. One typed model each, JSON on the wire.

A forecast says what it forecasts in `scope` ("device", "feeder" or "intersection"),
so consumers never guess from which keys happen to be present.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from citygrid.errors import CitygridError

MAX_RECORD_BYTES = 64 * 1024
# Every integer on the wire fits a signed 64-bit field; more is refused at parse.
MAX_INT64 = 2**63 - 1


class RecordRejected(CitygridError, reason="malformed"):
    """A record on a Kafka topic (forecast, alert, order, trade) that does not match its schema."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    def encode(self) -> bytes:
        """The JSON bytes written to Kafka."""
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        """Parse a record, raising RecordRejected (with what is wrong) for anything else."""
        if len(raw) > MAX_RECORD_BYTES:
            raise RecordRejected(f"{cls.__name__} record of {len(raw)} bytes exceeds {MAX_RECORD_BYTES}")
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise RecordRejected(f"not a {cls.__name__} record: {str(exc)[:300]}") from None


class Forecast(_Record):
    """A one-step-ahead forecast of one device's or one group's value, with its running skill."""

    scope: Literal["device", "feeder", "intersection"]
    device: str | None = Field(default=None, max_length=64)  # scope "device"
    group: str | None = Field(default=None, max_length=128)  # the district, for feeder/intersection
    kind: str = Field(max_length=32)
    value: str = Field(max_length=128)  # the value name forecast (p_kw, vehicles, …)
    ts_ms: int = Field(ge=0, le=MAX_INT64)  # the time the forecast is for
    forecast: float
    n: int = Field(ge=0, le=MAX_INT64)  # values learned so far
    mae: float | None = None
    mae_persistence: float | None = None
    mae_seasonal_naive: float | None = None
    # PV: the smart-persistence baseline's MAE; for PV every MAE is over daylight steps only.
    mae_smart_persistence: float | None = None
    # Quantiles of the forecast interval's value (P10 ≤ P50 ≤ P90), for bids that respect uncertainty,
    # and the running share of scored values that fell inside P10-P90 (0.8 when calibrated).
    p10: float | None = None
    p50: float | None = None
    p90: float | None = None
    coverage_p10_p90: float | None = Field(default=None, ge=0, le=1)
    scored: int | None = Field(default=None, ge=0, le=MAX_INT64)  # steps the MAEs are over
    based_on_seq: int | None = Field(default=None, ge=0, le=MAX_INT64)  # device: the reading it follows
    drifts: int | None = Field(default=None, ge=0, le=MAX_INT64)  # device: concept drifts so far
    interval_ms: int | None = Field(default=None, ge=0, le=MAX_INT64)  # group: start of the interval closed
    total: float | None = None  # group: that interval's value
    members: int | None = Field(default=None, ge=0, le=MAX_INT64)  # group: devices that reported in it


class Alert(_Record):
    """A reading the device's anomaly detector found unlikely."""

    device: str = Field(max_length=64)
    kind: str = Field(max_length=32)
    seq: int = Field(ge=0, le=MAX_INT64)
    ts_ms: int = Field(ge=0, le=MAX_INT64)
    value: float
    score: float
    reason: str = "anomaly"
    expected: float | None = None


class DeviceStats(_Record):
    """Running statistics of one device: what the stats topic and table hold."""

    device: str = Field(max_length=64)
    kind: str = Field(max_length=32)
    count: int = Field(ge=0, le=MAX_INT64)
    mean: dict[str, float]
    last: dict[str, float]
    last_ts_ms: int = Field(ge=0, le=MAX_INT64)
    last_seq: int = Field(ge=0, le=MAX_INT64)


class DeadLetter(_Record):
    """Something refused, kept with why and the bytes themselves (base64), so it can be inspected
    and replayed once its cause is fixed."""

    reason: str = Field(max_length=64)
    error: str = Field(max_length=2000)
    source: str = Field(max_length=512)  # the MQTT topic or Kafka topic it came from
    received_ms: int = Field(ge=0, le=MAX_INT64)
    payload_b64: str
    # Set when only the first bytes are kept (an oversized message): the whole one's length and hash.
    payload_len: int | None = Field(default=None, ge=0, le=MAX_INT64)
    payload_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @classmethod
    def of(cls, payload: bytes, source: str, reason: str, error: str, now_ms: int,
           keep: int | None = None) -> DeadLetter:
        """The dead letter for `payload`, refused for `reason`; with `keep`, only its first `keep` bytes
        plus the whole payload's length and SHA-256."""
        cut = keep is not None and len(payload) > keep
        return cls(reason=reason, error=error[:2000], source=source[:512], received_ms=now_ms,
                   payload_b64=base64.b64encode(payload[:keep] if cut else payload).decode(),
                   payload_len=len(payload) if cut else None,
                   payload_sha256=hashlib.sha256(payload).hexdigest() if cut else None)

    def payload(self) -> bytes:
        """The refused bytes."""
        return base64.b64decode(self.payload_b64)
