"""What the learning agent does with one reading, as plain functions on picklable state.

Per device: a one-step-ahead forecaster (energy: load/PV kW per 15 min;
traffic: vehicles per interval), an anomaly detector and a drift detector.
The Faust table stores `encode_state(...)` per device and its changelog
restores it, so nothing here knows about Kafka.

The state is a pickle (River models are plain Python objects), and a pickle runs code when it is
loaded, while anyone who can write the changelog topic can put bytes there. So every state is
sealed (citygrid.sealed: HMAC-SHA256 under `stream.state_key`, a secret only the workers hold, bound
to the table and key it belongs to) and its tag is checked before anything is unpickled; state that
is not ours is refused, counted, and the device relearns from scratch.

Readings are re-verified here too (the worker passes a `ReadingChecker`): a record on the readings
topic that is not signed by its registered device is skipped, counted and dead-lettered, never learned.
"""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from citygrid.errors import ConfigError, ReadingRejected
from citygrid.reading import Reading, SignedReading
from citygrid.records import Alert, Forecast
from citygrid.sealed import StateTampered, seal, unseal
from citygrid.settings import StreamSettings
from citygrid.stream import metrics
from citygrid.stream.anomaly import Watch
from citygrid.stream.errors import ModelStateError
from citygrid.stream.forecasting import SeriesState, forecast_fields, observe
from citygrid.stream.solar import Site

log = structlog.get_logger(__name__)
T = TypeVar("T")

STATE_VERSION = 2  # 2: quantiles, scores, day profile and site in the series state


@dataclass
class DeviceState:
    """A device's models and the name of the value they follow."""

    value_name: str
    domain: str  # "energy" or "traffic"
    series: SeriesState
    watch: Watch
    skipped: int = 0
    last_seq: int = -1


@dataclass(frozen=True)
class Outcome:
    """What one reading produced for the output topics and metrics."""

    forecast: Forecast
    alert: Alert | None = None
    drift: bool = False
    error: float | None = None
    domain: str = "energy"


DOMAINS = ("traffic", "energy")  # what domain_of can return: each has its own metric series


def domain_of(kind: str, s: StreamSettings) -> str:
    """'traffic' for the configured traffic kinds, else 'energy'."""
    return "traffic" if kind in s.traffic_kinds else "energy"


def pick_value(reading: Reading) -> str | None:
    """The value a device's forecaster follows: `p_kw` (meters, PV) or `vehicles` (traffic loops,
    which also send the derived `flow_veh_h`), else its first value name in sorted order, so
    every device has exactly one series."""
    for preferred in ("p_kw", "vehicles"):
        if preferred in reading.values:
            return preferred
    return min(reading.values) if reading.values else None


def site_for(kind: str, s: StreamSettings) -> Site | None:
    """The configured site for the PV kinds (their series forecast under its clear sky), else None."""
    return Site(s.site_latitude, s.site_longitude) if kind in s.solar_kinds else None


def new_state(reading: Reading, s: StreamSettings) -> DeviceState | None:
    """Fresh, untrained models for a device seen for the first time (None if it has no values)."""
    name = pick_value(reading)
    if name is None:
        return None
    domain = domain_of(reading.kind, s)
    step, season = ((s.traffic_step_s, s.traffic_season_steps) if domain == "traffic"
                    else (s.energy_step_s, s.energy_season_steps))
    series = SeriesState(step, season, model_name=s.model, site=site_for(reading.kind, s))
    return DeviceState(name, domain, series,
                       Watch(s.anomaly_detector, s.anomaly_threshold, s.anomaly_warmup))


def process(state: DeviceState, reading: Reading) -> Outcome | None:
    """Score, learn and forecast on one reading; None if it lacks the device's value or is stale.

    A reading at or below the last learned seq is skipped: after a crash Kafka redelivers
    what was learned but not yet committed, and learning it twice would skew the series.
    """
    value = reading.values.get(state.value_name)
    if value is None or reading.seq <= state.last_seq:
        state.skipped += 1
        return None
    state.last_seq = reading.seq
    step = observe(state.series, value, reading.ts_ms)
    score = state.watch.score(value, step.error)
    drift = state.watch.drifted(step.error)
    forecast = Forecast(scope="device", device=reading.device, kind=reading.kind, value=state.value_name,
                        based_on_seq=reading.seq, drifts=state.watch.drifts,
                        **forecast_fields(state.series, step))
    alert = None
    if state.watch.is_anomaly(score):
        alert = Alert(device=reading.device, kind=reading.kind, seq=reading.seq, ts_ms=reading.ts_ms,
                      value=value, score=score,
                      expected=value - step.error if step.error is not None else None)
    return Outcome(forecast, alert, drift, step.error, state.domain)


DEVICE_MODELS = b"device-models"  # the table (and seal context) of the per-device models


def state_key(s: StreamSettings) -> bytes:
    """The workers' state key; ConfigError if none is set (a worker refuses to start without it)."""
    if not s.state_key:
        raise ConfigError("no stream.state_key: set CITYGRID_STREAM__STATE_KEY (at least 32 characters, "
                          "e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`), the secret "
                          "that authenticates the workers' table state; only the workers may hold it")
    return s.state_key.encode()


def encode_versioned(state: object, key: bytes, context: bytes, version: int = STATE_VERSION) -> bytes:
    """Bytes for a Faust table: the state pickled with the version of its layout (so a worker can tell
    a state it cannot use), sealed under the workers' `key` for `context` (table and table key)."""
    return seal(key, context, pickle.dumps((version, state), protocol=pickle.HIGHEST_PROTOCOL))


def decode_versioned(raw: bytes, kind: type[T], what: str, changelog: str, key: bytes, context: bytes,
                     version_now: int = STATE_VERSION) -> T:
    """The state `encode_versioned` wrote; StateTampered if its seal does not hold (checked before
    anything is unpickled), ModelStateError (saying what to do) if it cannot be restored. `what` names
    the state in messages, `changelog` the topic to delete."""
    payload = unseal(key, context, raw)  # raises before pickle ever sees bytes we did not write
    try:
        version, state = pickle.loads(payload)  # authenticated: written by a worker holding the key
    except Exception as exc:
        raise ModelStateError(
            f"{what} in the changelog cannot be read ({exc}); delete {changelog} to start from scratch"
        ) from exc
    if version != version_now or not isinstance(state, kind):
        raise ModelStateError(
            f"{what} version {version} is not {version_now}; "
            "use a new CITYGRID_KAFKA__STREAM_APP_ID to start from scratch"
        )
    return state


def encode_state(state: DeviceState, key: bytes, device: bytes) -> bytes:
    """Bytes for the device-models table, sealed for `device` (the table key)."""
    return encode_versioned(state, key, DEVICE_MODELS + b"/" + device)


def decode_state(raw: bytes, key: bytes, device: bytes) -> DeviceState:
    """The state `encode_state` wrote for `device`; StateTampered or ModelStateError if it cannot be
    restored."""
    return decode_versioned(raw, DeviceState, "a device's model state", "the app's changelog topic",
                            key, DEVICE_MODELS + b"/" + device)


@dataclass
class Batch:
    """A batch's results: each touched device's new state once, and the records to send."""

    states: dict[bytes, bytes] = field(default_factory=dict)
    forecasts: list[tuple[bytes, bytes]] = field(default_factory=list)
    alerts: list[tuple[bytes, bytes]] = field(default_factory=list)
    skipped: int = 0
    # Records that did not verify: (their index in the batch, reason, error), for the dead letters.
    rejected: list[tuple[int, str, str]] = field(default_factory=list)


def parse_only(envelope: bytes) -> Reading:
    """The reading in an envelope, signature unchecked: for offline runs on data already verified.
    The worker checks signatures (`citygrid.reading_check.ReadingChecker.check`)."""
    return SignedReading.decode(envelope).reading()


class LiveStates:
    """The worker's unpickled states, valid only while the table still holds the bytes they were
    saved as (same object): after a rebalance or restore the table's bytes differ and we decode."""

    def __init__(self) -> None:
        self._live: dict[bytes, tuple[bytes, DeviceState]] = {}

    def get(self, key: bytes, raw: bytes, secret: bytes) -> DeviceState:
        """The state stored as `raw`, unsealed and unpickled only if this worker did not write it."""
        hit = self._live.get(key)
        if hit is not None and hit[0] is raw:
            return hit[1]
        metrics.STATE_DECODES.inc()
        return decode_state(raw, secret, key)

    def put(self, key: bytes, raw: bytes, state: DeviceState) -> None:
        """Remember the state just saved as `raw`."""
        self._live[key] = (raw, state)


def learn_batch(records: list[tuple[bytes | None, bytes]], stored: Callable[[bytes], bytes | None],
                s: StreamSettings, cache: LiveStates | None = None,
                check: Callable[[bytes], Reading] = parse_only) -> Batch:
    """Learn from a batch of readings topic records (key, envelope), in order.

    `check` turns an envelope into its reading or raises ReadingRejected (the worker's verifies the
    signature); a rejected record is skipped and listed in `rejected`. Each device's state is encoded
    once per batch (and decoded only when another worker wrote it), which keeps checkpointing cheap
    next to the learning itself.
    """
    cache = cache or LiveStates()
    secret = state_key(s)
    live: dict[bytes, DeviceState] = {}
    tally: Counter[tuple[str, str]] = Counter()
    out = Batch()
    for i, (_key, envelope) in enumerate(records):
        try:
            reading = check(envelope)
            outcome = _learn_one(reading, live, stored, cache, s, secret)
        except ReadingRejected as exc:
            metrics.UNVERIFIED.labels(exc.reason).inc()
            out.rejected.append((i, exc.reason, str(exc)))
            outcome = None
        except Exception as exc:  # one record must never stop learning for every later one
            out.rejected.append((i, "unprocessable", repr(exc)))
            outcome = None
        if outcome is None:
            out.skipped += 1
            continue
        key = reading.device.encode()
        _count(outcome, tally)
        out.forecasts.append((key, outcome.forecast.encode()))
        if outcome.alert is not None:
            out.alerts.append((key, outcome.alert.encode()))
    _publish_tally(tally, live)
    for device, state in live.items():
        out.states[device] = raw = encode_state(state, secret, device)
        cache.put(device, raw, state)
    return out


def _learn_one(reading: Reading, live: dict[bytes, DeviceState], stored: Callable[[bytes], bytes | None],
               cache: LiveStates, s: StreamSettings, secret: bytes) -> Outcome | None:
    """Process one reading with its device's state, restored (or started) when first seen in the batch."""
    key = reading.device.encode()
    state = live.get(key)
    if state is None:
        raw = stored(key)
        try:
            state = cache.get(key, raw, secret) if raw is not None else new_state(reading, s)
        except StateTampered as exc:
            metrics.STATE_REFUSED.labels(DEVICE_MODELS.decode()).inc()
            state = _reset(reading, s, exc)
        except ModelStateError as exc:
            state = _reset(reading, s, exc)
        if state is None:
            return None
        live[key] = state
    try:
        return process(state, reading)
    except Exception as exc:  # a bad saved model must not stop learning for every device
        fresh = _reset(reading, s, exc)
        if fresh is None:
            return None
        live[key] = fresh
        return process(fresh, reading)


def _reset(reading: Reading, s: StreamSettings, exc: Exception) -> DeviceState | None:
    """Fresh models for a device whose saved state cannot be restored or used (e.g. written by an
    incompatible version): it relearns, instead of the worker's agent crashing for every device."""
    log.error("model_state_reset", device=reading.device, error=repr(exc))
    metrics.STATE_RESETS.inc()
    return new_state(reading, s)


def _count(outcome: Outcome, tally: Counter[tuple[str, str]]) -> None:
    d = outcome.domain
    tally[("learned", d)] += 1
    if outcome.error is not None:
        metrics.ABS_ERROR.labels(d).observe(abs(outcome.error))
    if outcome.alert is not None:
        tally[("alerts", d)] += 1
    if outcome.drift:
        tally[("drifts", d)] += 1


def _publish_tally(tally: Counter[tuple[str, str]], live: dict[bytes, DeviceState]) -> None:
    # Once per batch: labelled metric lookups cost as much as a River update.
    for (what, d), n in tally.items():
        if what == "learned":
            metrics.LEARNED.labels(d).inc(n)
            metrics.FORECASTS.labels(d).inc(n)
        else:
            {"alerts": metrics.ALERTS, "drifts": metrics.DRIFTS}[what].labels(d).inc(n)
    for state in live.values():
        mae = state.series.mae()
        if mae["persistence"] > 0:
            metrics.MAE_RATIO.labels(state.domain).set(mae["model"] / mae["persistence"])
