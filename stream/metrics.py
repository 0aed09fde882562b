"""The stream workers' Prometheus metrics: throughput, lag, model error, drift and alerts."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

LEARNED = Counter("citygrid_stream_learned_total", "Readings the online models learned from", ["domain"])
FORECASTS = Counter("citygrid_stream_forecasts_total", "Forecasts written", ["domain"])
ALERTS = Counter("citygrid_stream_alerts_total", "Anomaly alerts written", ["domain"])
DRIFTS = Counter("citygrid_stream_drifts_total", "Concept drifts detected by ADWIN on forecast error",
                 ["domain"])
ABS_ERROR = Histogram(
    "citygrid_stream_forecast_abs_error", "Absolute error of each one-step forecast (kW or vehicles)",
    ["domain"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50),
)
MAE_RATIO = Gauge(
    "citygrid_stream_mae_vs_persistence", "Prequential MAE of the model over persistence's, last device "
    "updated per domain (below 1 means the model wins)", ["domain"],
)
LAG = Gauge("citygrid_stream_consumer_lag", "Readings not yet processed, per partition", ["partition"])
BATCH_SECONDS = Histogram("citygrid_stream_batch_seconds", "Time to learn one batch of readings")
# Each device's state is sealed once per batch: small batches cost a worker more per reading.
BATCH_READINGS = Histogram("citygrid_stream_batch_readings", "Readings in each batch the worker processed",
                           buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000))
STATE_RESETS = Counter("citygrid_stream_state_resets_total",
                       "Device model states that could not be restored or used and were started afresh")
STATE_DECODES = Counter("citygrid_stream_state_decodes_total",
                        "Device model states unpickled from the table (restores and rebalances)")
STATE_REFUSED = Counter("citygrid_stream_state_refused_total",
                        "Table states refused before unpickling: not sealed by the workers' state key",
                        ["table"])
UNVERIFIED = Counter("citygrid_stream_unverified_total",
                     "Readings-topic records the learner skipped because they did not verify", ["reason"])


def start_domains(domains: Iterable[str]) -> None:
    """Create each domain's labelled series at zero when the worker starts: a series that first
    appears with its first observation shows no increase to rate(), so a dashboard would stay empty
    (or miss the first burst) instead of showing 0."""
    for d in domains:
        for metric in (LEARNED, FORECASTS, ALERTS, DRIFTS, ABS_ERROR):
            metric.labels(d)
