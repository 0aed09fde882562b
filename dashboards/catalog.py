"""The five citygrid dashboards, one per concern, as grafana-foundation-sdk builders.

Metric names follow the processes' prometheus-client registries; the test
`tests/unit/deploy/test_dashboard_metrics.py` fails for any query that reads a
metric no process exports.
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models.dashboard import Dashboard

from citygrid.dashboards.panels import datasource_variable, series, single

RATE = "$__rate_interval"


def _board(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title).uid(uid).description(description).tags(["citygrid"])
        .refresh("10s").time("now-1h", "now").timezone("utc").editable()
        .with_variable(datasource_variable())
    )


def city_overview() -> dashboard.Dashboard:
    """What a city operator checks first: data flowing in, market clearing, ledger anchoring."""
    return (
        _board("citygrid-overview", "citygrid / city overview",
               "Readings in, devices online, energy cleared and roots anchored, across the platform.")
        .with_row(dashboard.Row("Now"))
        .with_panel(single("Readings/s accepted", f"sum(rate(citygrid_ingest_accepted_total[{RATE}]))",
                           "reqps"))
        .with_panel(single("Devices online", "sum(citygrid_fleet_devices_online)"))
        .with_panel(single("Energy cleared, last interval", "sum(citygrid_market_cleared_volume_kwh)",
                           "kwatth"))
        .with_panel(single("Roots anchored (1h)", "sum(increase(citygrid_anchor_batches_total[1h]))"))
        .with_row(dashboard.Row("Flow"))
        .with_panel(series("Readings through the platform", {
            "ingest accepted": f"sum(rate(citygrid_ingest_accepted_total[{RATE}]))",
            "ingest rejected": f"sum(rate(citygrid_ingest_rejected_total[{RATE}]))",
            "stream processed": f"sum(rate(citygrid_stream_readings_total[{RATE}]))",
            "anchored": f"sum(rate(citygrid_anchor_readings_total[{RATE}]))",
        }, "reqps", "Each stage's throughput; a gap between two lines is a backlog or a loss."))
        .with_panel(series("Failures", {
            "rejected {{reason}}": f"sum by (reason) (rate(citygrid_ingest_rejected_total[{RATE}]))",
            "anchor failures": f"sum(rate(citygrid_anchor_failures_total[{RATE}]))",
            "settlement failures": f"sum(rate(citygrid_settlement_failures_total[{RATE}]))",
        }, "ops"))
    )


def edge_fleet() -> dashboard.Dashboard:
    """Whether the devices in the field are reporting, backlogged, and on which model."""
    return (
        _board("citygrid-edge-fleet", "citygrid / edge fleet",
               "Devices online, store-and-forward outbox depth and deployed model versions.")
        .with_panel(single("Devices online", "sum(citygrid_fleet_devices_online)"))
        .with_panel(single("Largest outbox", "max(citygrid_edge_outbox_readings)", "short",
                           "Readings waiting on the device with the deepest backlog."))
        .with_panel(single("Model versions in use", "count(count by (version) (citygrid_fleet_model_info))"))
        .with_panel(single("Rejected readings/s", f"sum(rate(citygrid_ingest_rejected_total[{RATE}]))",
                           "reqps"))
        .with_panel(series("Devices online", {"online": "sum(citygrid_fleet_devices_online)"}))
        .with_panel(series("Outbox depth (top 10 devices)", {
            "{{instance}}": "topk(10, citygrid_edge_outbox_readings)",
        }, "short", "Readings queued on each device while its link is down."))
        .with_panel(series("Devices per model version", {
            "{{model}} {{version}}": "count by (model, version) (citygrid_fleet_model_info)",
        }))
        .with_panel(series("Rejected readings by reason", {
            "{{reason}}": f"sum by (reason) (rate(citygrid_ingest_rejected_total[{RATE}]))",
        }, "reqps", "Bad signatures, replays and schema errors point at a faulty or hostile device."))
    )


def stream() -> dashboard.Dashboard:
    """Whether the Faust workers keep up and their online models stay accurate."""
    return (
        _board("citygrid-stream", "citygrid / stream",
               "Kafka consumer lag, throughput, online model error and concept drift.")
        .with_panel(series("Consumer lag by partition", {
            "partition {{partition}}": "sum by (partition) (citygrid_stream_consumer_lag)",
        }, "short", "Records on the readings topic not yet processed; rising lag needs more workers."))
        .with_panel(series("Throughput", {
            "processed": f"sum(rate(citygrid_stream_readings_total[{RATE}]))",
            "skipped": f"sum(rate(citygrid_stream_skipped_total[{RATE}]))",
            "ingested": f"sum(rate(citygrid_ingest_accepted_total[{RATE}]))",
        }, "reqps"))
        .with_panel(series("Ingest latency (MQTT → Kafka ack)", {
            "p50": "histogram_quantile(0.5, sum by (le) "
                   f"(rate(citygrid_ingest_latency_seconds_bucket[{RATE}])))",
            "p99": "histogram_quantile(0.99, sum by (le) "
                   f"(rate(citygrid_ingest_latency_seconds_bucket[{RATE}])))",
        }, "s"))
        .with_panel(series("Model error (mean absolute error per forecast)", {
            "{{domain}}": f"sum by (domain) (rate(citygrid_stream_forecast_abs_error_sum[{RATE}])) / "
                          f"sum by (domain) (rate(citygrid_stream_forecast_abs_error_count[{RATE}]))",
        }, "short", "Mean absolute error of the online forecasters on the readings they have just seen."))
        .with_panel(series("Model MAE over persistence", {
            "{{domain}}": "avg by (domain) (citygrid_stream_mae_vs_persistence)",
        }, "short", "Prequential MAE of the model divided by persistence's: below 1 the model wins."))
        .with_panel(series("Drift detections", {
            "{{domain}}": f"sum by (domain) (increase(citygrid_stream_drifts_total[{RATE}]))",
        }, "short", "A drift detector firing means a model is re-learning a changed pattern."))
    )


def energy_market() -> dashboard.Dashboard:
    """What the peer-to-peer market cleared, and at what price, per interval."""
    return (
        _board("citygrid-energy-market", "citygrid / energy market",
               "Cleared volume and clearing price per market interval, and the trades behind them.")
        .with_panel(single("Cleared volume, last interval", "sum(citygrid_market_cleared_volume_kwh)",
                           "kwatth"))
        .with_panel(single("Clearing price, last interval", "avg(citygrid_market_clearing_price)"))
        .with_panel(single("Trades (1h)", "sum(increase(citygrid_market_trades_total[1h]))"))
        .with_panel(single("Trades settled (1h)", "sum(increase(citygrid_settled_trades_total[1h]))"))
        .with_panel(series("Cleared volume per interval", {
            "cleared kWh": "sum(citygrid_market_cleared_volume_kwh)",
        }, "kwatth"))
        .with_panel(series("Clearing price per interval", {
            "price (planck/Wh)": "avg(citygrid_market_clearing_price)",
        }, "short", "Price per kWh in the ledger's token."))
        .with_panel(series("Order flow", {
            "orders accepted": f"sum(rate(citygrid_market_orders_total[{RATE}]))",
            "orders refused": f"sum(rate(citygrid_market_orders_refused_total[{RATE}]))",
            "trades": f"sum(rate(citygrid_market_trades_total[{RATE}]))",
        }, "ops"))
        .with_panel(series("Clearing time per interval", {
            "p95": "histogram_quantile(0.95, sum by (le) "
                   f"(rate(citygrid_market_clear_seconds_bucket[{RATE}])))",
        }, "s", "Time to clear one interval's order book."))
    )


def ledger() -> dashboard.Dashboard:
    """Whether readings are anchored and trades settled on the parachain, and how fast."""
    return (
        _board("citygrid-ledger", "citygrid / ledger",
               "Merkle roots anchored, readings covered, settlement latency and failures.")
        .with_panel(single("Roots anchored (1h)", "sum(increase(citygrid_anchor_batches_total[1h]))"))
        .with_panel(single("Readings anchored (1h)", "sum(increase(citygrid_anchor_readings_total[1h]))"))
        .with_panel(single("Anchor failures (1h)", "sum(increase(citygrid_anchor_failures_total[1h]))"))
        .with_panel(single("Settlement failures (1h)",
                           "sum(increase(citygrid_settlement_failures_total[1h]))"))
        .with_panel(series("Anchored roots", {
            "roots": f"sum(increase(citygrid_anchor_batches_total[{RATE}]))",
            "failures": f"sum(increase(citygrid_anchor_failures_total[{RATE}]))",
        }))
        .with_panel(series("Anchor submit → inclusion", {
            "p50": "histogram_quantile(0.5, sum by (le) "
                   f"(rate(citygrid_anchor_submit_seconds_bucket[{RATE}])))",
            "p95": "histogram_quantile(0.95, sum by (le) "
                   f"(rate(citygrid_anchor_submit_seconds_bucket[{RATE}])))",
        }, "s"))
        .with_panel(series("Settlement latency (submitted → included)", {
            "p50": "histogram_quantile(0.5, sum by (le) "
                   f"(rate(citygrid_settle_submit_seconds_bucket[{RATE}])))",
            "p95": "histogram_quantile(0.95, sum by (le) "
                   f"(rate(citygrid_settle_submit_seconds_bucket[{RATE}])))",
        }, "s"))
        .with_panel(series("Settlements", {
            "settled": f"sum(rate(citygrid_settled_trades_total[{RATE}]))",
            "failed": f"sum(rate(citygrid_settlement_failures_total[{RATE}]))",
        }, "ops"))
    )


# File name (without .json) → builder; the order is the order dashboards are pushed in.
DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "city-overview": city_overview,
    "edge-fleet": edge_fleet,
    "stream": stream,
    "energy-market": energy_market,
    "ledger": ledger,
}


def build_all() -> dict[str, Dashboard]:
    """Every dashboard, built."""
    return {name: make().build() for name, make in DASHBOARDS.items()}
