"""Live feeder and intersection forecasts: per-district sums per interval, learned like one device.

A feeder is a district's energy devices of one kind (meter load, PV); an intersection is
a district's traffic detectors. The ingest passes each reading's district on as a Kafka
header; `route_batch` re-keys a batch's readings by their group (one record per group per
batch), so one group's state lives on one worker; `aggregate_batch` sums each group's interval
and, once the interval is closed, feeds the total to the same `observe` step the per-device
learner runs.

An interval closes when every member of the group has reported a later one (event time),
because the readings topic is keyed by device and a worker interleaves its partitions;
a member that stays silent for `aggregate_max_lag_steps` intervals stops holding it open.

Group state is sealed like the per-device models (learning.encode_versioned): refused before it is
unpickled unless the workers' state key authenticates it. A member record that does not parse is
listed in `rejected` for the dead letters; a reading that does not verify is never routed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import structlog
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from citygrid.reading import MAX_ABS_VALUE, Reading
from citygrid.reading_check import MAX_INT64
from citygrid.records import Forecast
from citygrid.sealed import StateTampered
from citygrid.settings import StreamSettings
from citygrid.stream import metrics
from citygrid.stream.errors import ModelStateError
from citygrid.stream.forecasting import SeriesState, forecast_fields, observe
from citygrid.stream.learning import (
    decode_versioned,
    domain_of,
    encode_versioned,
    pick_value,
    site_for,
    state_key,
)
from citygrid.topics import DISTRICT_HEADER

log = structlog.get_logger(__name__)

STATE_VERSION = 2  # 2: the series state carries quantiles, scores and the PV site
MEMBERS_PER_RECORD = 1000  # about 200 kB of JSON: one re-keyed record stays far below Kafka's 1 MB
GROUP_AGGREGATES = b"group-aggregates"  # the table (and seal context) of the group states

UNGROUPED = Counter("citygrid_stream_aggregate_ungrouped_total",
                    "Readings not aggregated: no district header, a kind no group sums, or unparseable")
LATE = Counter("citygrid_stream_aggregate_late_total",
               "Readings for an interval their group had already closed (not in its total)", ["scope"])
CLOSED = Counter("citygrid_stream_aggregate_intervals_total", "Group intervals closed and forecast",
                 ["scope"])


Scope = Literal["feeder", "intersection"]


class Member(BaseModel):
    """One reading as its group sees it: the record on the app's internal re-keyed topic."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    scope: Scope
    group: str = Field(max_length=128)  # the district
    kind: str = Field(max_length=32)
    value: str = Field(max_length=64)  # the value name summed (p_kw, vehicles, …)
    device: str = Field(max_length=64)
    seq: int = Field(ge=0, le=MAX_INT64)
    ts_ms: int = Field(ge=0, le=MAX_INT64)
    x: float = Field(ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)  # the reading's value

    def encode(self) -> bytes:
        """The JSON bytes written to the internal topic."""
        return self.model_dump_json().encode()


class MemberBatch(BaseModel):
    """A batch's members of one group, in reading order: one record on the re-keyed topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    members: list[Member] = Field(min_length=1, max_length=MEMBERS_PER_RECORD)

    def encode(self) -> bytes:
        """The JSON bytes written to the internal topic."""
        return self.model_dump_json().encode()


def scope_of(kind: str, s: StreamSettings) -> Scope | None:
    """'feeder' for the aggregated energy kinds, 'intersection' for traffic kinds, else None."""
    if domain_of(kind, s) == "traffic":
        return "intersection"
    return "feeder" if kind in s.aggregate_energy_kinds else None


def group_key(scope: str, district: str, kind: str) -> bytes:
    """The Kafka key (and table key) of one group."""
    return f"{scope}/{district}/{kind}".encode()


def route(envelope: bytes, headers: Mapping[str, bytes] | None, s: StreamSettings,
          verified: Callable[[bytes], Reading | None]) -> tuple[bytes, Member] | None:
    """(group key, member) for a readings-topic record, or None if it belongs to no group or
    `verified` (the worker's signature check) refuses it."""
    district = (headers or {}).get(DISTRICT_HEADER)
    if not district:
        return None
    reading = verified(envelope)
    if reading is None:
        return None
    scope, name = scope_of(reading.kind, s), pick_value(reading)
    if scope is None or name is None:
        return None
    d = district.decode() if isinstance(district, bytes) else str(district)
    member = Member(scope=scope, group=d, kind=reading.kind, value=name, device=reading.device,
                    seq=reading.seq, ts_ms=reading.ts_ms, x=reading.values[name])
    return group_key(scope, d, reading.kind), member


def route_batch(records: Iterable[tuple[bytes, Mapping[str, bytes] | None]], s: StreamSettings,
                verified: Callable[[bytes], Reading | None]) -> list[tuple[bytes, bytes]]:
    """The re-keyed records of a batch of readings-topic records (envelope, headers): one per group
    (at most MEMBERS_PER_RECORD members each), its members in reading order.

    Why one per group rather than one per reading: a worker's CPU went mostly to producing and consuming
    Kafka records, and a batch holds many readings of few groups (a district's feeder or intersection).
    """
    groups: dict[bytes, list[Member]] = {}
    for envelope, headers in records:
        routed = route(envelope, headers, s, verified)
        if routed is None:
            UNGROUPED.inc()
            continue
        groups.setdefault(routed[0], []).append(routed[1])
    return [(key, MemberBatch(members=members[i:i + MEMBERS_PER_RECORD]).encode())
            for key, members in groups.items() for i in range(0, len(members), MEMBERS_PER_RECORD)]


def parse_members(raw: bytes) -> list[Member]:
    """The members in a re-keyed record: a MemberBatch, or one Member as workers before batching
    wrote them (still on the topic while a deployment upgrades); ValidationError if it is neither."""
    try:
        return list(MemberBatch.model_validate_json(raw).members)
    except ValidationError:
        return [Member.model_validate_json(raw)]


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


def new_group(member: Member, s: StreamSettings) -> GroupState:
    """Fresh state for a group seen for the first time."""
    traffic = member.scope == "intersection"
    step, season = ((s.traffic_step_s, s.traffic_season_steps) if traffic
                    else (s.energy_step_s, s.energy_season_steps))
    return GroupState(member.scope, member.group, member.kind, member.value, step,
                      SeriesState(step, season, model_name=s.model, site=site_for(member.kind, s)))


def add(state: GroupState, member: Member, max_lag_steps: int) -> list[Forecast]:
    """Count one member reading; the forecasts of the intervals this closes, oldest first."""
    device, seq = member.device, member.seq
    if seq <= state.last_seq.get(device, -1):
        return []  # redelivered after a crash: already in its interval's sum
    state.last_seq[device] = seq
    interval = member.ts_ms // (state.step_s * 1000)
    if interval <= state.closed_through:
        state.late += 1
        LATE.labels(state.scope).inc()
        return []
    acc = state.open.setdefault(interval, {}).setdefault(device, [0.0, 0])
    acc[0] += member.x
    acc[1] += 1
    state.latest[device] = max(state.latest.get(device, interval), interval)
    return _close_ready(state, max_lag_steps)


def _close_ready(state: GroupState, max_lag_steps: int) -> list[Forecast]:
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


def _close(state: GroupState, interval: int) -> Forecast:
    members = state.open.pop(interval)
    total = state.total(members)
    start_ms = interval * state.step_s * 1000
    step = observe(state.series, total, start_ms)
    state.closed_through = interval
    CLOSED.labels(state.scope).inc()
    return Forecast(scope=state.scope, group=state.group, kind=state.kind, value=state.value_name,
                    interval_ms=start_ms, total=total, members=len(members),
                    **forecast_fields(state.series, step))


def encode_group(state: GroupState, key: bytes, group: bytes) -> bytes:
    """Bytes for the group-aggregates table, sealed for `group` (the table key)."""
    return encode_versioned(state, key, GROUP_AGGREGATES + b"/" + group, STATE_VERSION)


def decode_group(raw: bytes, key: bytes, group: bytes) -> GroupState:
    """The state `encode_group` wrote for `group`; StateTampered or ModelStateError if it cannot be
    restored."""
    return decode_versioned(raw, GroupState, "a group's aggregate state",
                            "the app's group-aggregates changelog topic", key,
                            GROUP_AGGREGATES + b"/" + group, STATE_VERSION)


@dataclass
class AggregateBatch:
    """A batch's results: each touched group's new state once, and the forecasts to send."""

    states: dict[bytes, bytes] = field(default_factory=dict)
    forecasts: list[tuple[bytes, bytes]] = field(default_factory=list)
    # Records that could not be processed: (their index in the batch, reason, error).
    rejected: list[tuple[int, str, str]] = field(default_factory=list)


def aggregate_batch(records: list[tuple[bytes, bytes]], stored: Callable[[bytes], bytes | None],
                    s: StreamSettings) -> AggregateBatch:
    """Add a batch of re-keyed (group key, members record) records, in order; forecast closed intervals."""
    secret = state_key(s)
    live: dict[bytes, GroupState] = {}
    out = AggregateBatch()
    for i, (key, raw) in enumerate(records):
        try:
            members = parse_members(raw)
        except ValidationError as exc:
            UNGROUPED.inc()  # only `route_batch` writes these, but a bad record must not stop the group
            out.rejected.append((i, "malformed", f"not a group member record: {str(exc)[:300]}"))
            continue
        for member in members:
            try:
                state = live.get(key)
                if state is None:
                    live[key] = state = _restore(key, stored(key), member, s, secret)
                for forecast in add(state, member, s.aggregate_max_lag_steps):
                    out.forecasts.append((key, forecast.encode()))
            except Exception as exc:  # one member must never stop its group's later ones
                out.rejected.append((i, "unprocessable", repr(exc)[:500]))
    for key, state in live.items():
        out.states[key] = encode_group(state, secret, key)
    return out


def _restore(key: bytes, raw: bytes | None, member: Member, s: StreamSettings, secret: bytes) -> GroupState:
    """The group's saved state, or a fresh one if it has none or it cannot be restored."""
    if raw is None:
        return new_group(member, s)
    try:
        return decode_group(raw, secret, key)
    except StateTampered as exc:
        metrics.STATE_REFUSED.labels(GROUP_AGGREGATES.decode()).inc()
        metrics.STATE_RESETS.inc()
        log.error("aggregate_state_refused", group=key.decode(errors="replace"), error=str(exc))
        return new_group(member, s)
    except ModelStateError as exc:
        log.error("aggregate_state_reset", group=key.decode(errors="replace"), error=str(exc))
        return new_group(member, s)
