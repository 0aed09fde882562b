"""Live feeder and intersection forecasts: per-district sums per interval, learned like one device.

A feeder is a district's energy devices of one kind (meter load, PV); an intersection is
a district's traffic detectors. The ingest passes each reading's district on as a Kafka
header; `route` re-keys the reading by its group, so one group's state lives on one
worker; `aggregate_batch` sums each group's interval and, once the interval is closed,
feeds the total to the same `observe` step the per-device learner runs.

An interval closes when every member of the group has reported a later one (event time),
because the readings topic is keyed by device and a worker interleaves its partitions;
a member that stays silent for `aggregate_max_lag_steps` intervals stops holding it open.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog
from prometheus_client import Counter

from citygrid.errors import ReadingRejected
from citygrid.reading import SignedReading
from citygrid.settings import StreamSettings
from citygrid.stream.errors import ModelStateError
from citygrid.stream.forecasting import MODELS, SeriesState, observe
from citygrid.stream.learning import decode_versioned, domain_of, encode_versioned, pick_value
from citygrid.topics import DISTRICT_HEADER

log = structlog.get_logger(__name__)

STATE_VERSION = 1

UNGROUPED = Counter("citygrid_stream_aggregate_ungrouped_total",
                    "Readings not aggregated: no district header, or a kind no group sums")
LATE = Counter("citygrid_stream_aggregate_late_total",
               "Readings for an interval their group had already closed (not in its total)", ["scope"])
CLOSED = Counter("citygrid_stream_aggregate_intervals_total", "Group intervals closed and forecast",
                 ["scope"])


def scope_of(kind: str, s: StreamSettings) -> str | None:
    """'feeder' for the aggregated energy kinds, 'intersection' for traffic kinds, else None."""
    if domain_of(kind, s) == "traffic":
        return "intersection"
    return "feeder" if kind in s.aggregate_energy_kinds else None


def group_key(scope: str, district: str, kind: str) -> bytes:
    """The Kafka key (and table key) of one group."""
    return f"{scope}/{district}/{kind}".encode()


def route(envelope: bytes, headers: Mapping[str, bytes] | None,
          s: StreamSettings) -> tuple[bytes, bytes] | None:
    """(group key, member record) for a readings-topic record, or None if it belongs to no group."""
    district = (headers or {}).get(DISTRICT_HEADER)
    if not district:
        return None
    try:
        reading = SignedReading.decode(envelope).reading()
    except ReadingRejected:
        return None
    scope, name = scope_of(reading.kind, s), pick_value(reading)
    if scope is None or name is None:
        return None
    d = district.decode() if isinstance(district, bytes) else str(district)
    record = {"scope": scope, "group": d, "kind": reading.kind, "value": name, "device": reading.device,
              "seq": reading.seq, "ts_ms": reading.ts_ms, "x": reading.values[name]}
    return group_key(scope, d, reading.kind), json.dumps(record).encode()


@dataclass
class GroupState:
    """One group's open intervals, its members' progress and its forecaster (picklable)."""

    scope: str
    group: str
    kind: str
    value_name: str
    step_s: int
    series: SeriesState
    open: dict[int, dict[str, list[float]]] = field(default_factory=dict)  # interval → device → [sum, n]
    latest: dict[str, int] = field(default_factory=dict)  # member → newest interval it reported
    last_seq: dict[str, int] = field(default_factory=dict)
    closed_through: int = -1
    late: int = 0

    def total(self, members: dict[str, list[float]]) -> float:
        """The interval's group value: counts add up; power (kW) is each device's mean, summed."""
        if self.scope == "intersection":
            return sum(acc[0] for acc in members.values())
        return sum(acc[0] / acc[1] for acc in members.values())


def new_group(record: dict, s: StreamSettings) -> GroupState:
    """Fresh state for a group seen for the first time."""
    if s.model not in MODELS:
        raise ModelStateError(
            f"unknown model {s.model!r}; set CITYGRID_STREAM__MODEL to one of {sorted(MODELS)}")
    traffic = record["scope"] == "intersection"
    step, season = ((s.traffic_step_s, s.traffic_season_steps) if traffic
                    else (s.energy_step_s, s.energy_season_steps))
    return GroupState(record["scope"], record["group"], record["kind"], record["value"], step,
                      SeriesState(step, season, model_name=s.model))


def add(state: GroupState, record: dict, max_lag_steps: int) -> list[dict]:
    """Count one member reading; the forecasts of the intervals this closes, oldest first."""
    device, seq = record["device"], int(record["seq"])
    if seq <= state.last_seq.get(device, -1):
        return []  # redelivered after a crash: already in its interval's sum
    state.last_seq[device] = seq
    interval = int(record["ts_ms"]) // (state.step_s * 1000)
    if interval <= state.closed_through:
        state.late += 1
        LATE.labels(state.scope).inc()
        return []
    acc = state.open.setdefault(interval, {}).setdefault(device, [0.0, 0])
    acc[0] += float(record["x"])
    acc[1] += 1
    state.latest[device] = max(state.latest.get(device, interval), interval)
    return _close_ready(state, max_lag_steps)


def _close_ready(state: GroupState, max_lag_steps: int) -> list[dict]:
    horizon = max(state.latest.values()) - max(1, max_lag_steps)
    # A member silent for the whole lag must stop holding the group's intervals open.
    for device in [d for d, last in state.latest.items() if last <= horizon]:
        del state.latest[device]
    watermark = min(state.latest.values())
    out = []
    for interval in sorted(state.open):
        if interval >= watermark and interval > horizon:
            break
        out.append(_close(state, interval))
    return out


def _close(state: GroupState, interval: int) -> dict:
    members = state.open.pop(interval)
    total = state.total(members)
    start_ms = interval * state.step_s * 1000
    step = observe(state.series, total, start_ms)
    state.closed_through = interval
    CLOSED.labels(state.scope).inc()
    mae = state.series.mae()
    return {"scope": state.scope, "group": state.group, "kind": state.kind, "value": state.value_name,
            "interval_ms": start_ms, "total": total, "members": len(members), "ts_ms": step.target_ts_ms,
            "forecast": step.forecast, "n": state.series.n, "mae": mae["model"],
            "mae_persistence": mae["persistence"], "mae_seasonal_naive": mae["seasonal_naive"]}


def encode_group(state: GroupState) -> bytes:
    """Bytes for the group-aggregates table."""
    return encode_versioned(state, STATE_VERSION)


def decode_group(raw: bytes) -> GroupState:
    """The state `encode_group` wrote; ModelStateError if it cannot be restored."""
    return decode_versioned(raw, GroupState, "a group's aggregate state",
                            "the app's group-aggregates changelog topic", STATE_VERSION)


@dataclass
class AggregateBatch:
    """A batch's results: each touched group's new state once, and the forecasts to send."""

    states: dict[bytes, bytes] = field(default_factory=dict)
    forecasts: list[tuple[bytes, bytes]] = field(default_factory=list)


def aggregate_batch(records: list[tuple[bytes, bytes]], stored: Callable[[bytes], bytes | None],
                    s: StreamSettings) -> AggregateBatch:
    """Add a batch of routed (group key, member record) records, in order; forecast closed intervals."""
    live: dict[bytes, GroupState] = {}
    out = AggregateBatch()
    for key, raw_record in records:
        record = json.loads(raw_record)
        state = live.get(key)
        if state is None:
            raw = stored(key)
            try:
                state = decode_group(raw) if raw is not None else new_group(record, s)
            except ModelStateError as exc:
                log.error("aggregate_state_reset", group=key.decode(errors="replace"), error=str(exc))
                state = new_group(record, s)
            live[key] = state
        for forecast in add(state, record, s.aggregate_max_lag_steps):
            out.forecasts.append((key, json.dumps(forecast).encode()))
    for key, state in live.items():
        out.states[key] = encode_group(state)
    return out
