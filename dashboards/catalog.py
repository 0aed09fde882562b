"""The five citygrid dashboards, one per concern, as grafana-foundation-sdk builders.

Metric names follow the processes' prometheus-client registries; the test
`tests/unit/dashboards/test_dashboard_metrics.py` fails for any query that reads a
metric no process exports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard, stat, timeseries
from grafana_foundation_sdk.models.dashboard import Dashboard

from citygrid.dashboards.panels import RATE, datasource_variable, quantiles, series, single

# What a dashboard lists, top to bottom: a row starts a new band of panels.
Panel = dashboard.Row | stat.Panel | timeseries.Panel


@dataclass(frozen=True)
class Board:
    """One dashboard: what Grafana shows about it, and the function that lists its panels."""

    uid: str
    title: str
    description: str
    panels: Callable[[], list[Panel]]

    def builder(self) -> dashboard.Dashboard:
        """The dashboard's builder, with freshly made panels (building one places it on the grid)."""
        board = (
            dashboard.Dashboard(self.title).uid(self.uid).description(self.description).tags(["citygrid"])
            .refresh("10s").time("now-1h", "now").timezone("utc").editable()
            .with_variable(datasource_variable())
        )
        for panel in self.panels():
            board = board.with_row(panel) if isinstance(panel, dashboard.Row) else board.with_panel(panel)
        return board


def city_overview() -> list[Panel]:
    """What a city operator checks first: data flowing in, market clearing, ledger anchoring."""
    return [
        dashboard.Row("Now"),
        single("Readings/s accepted", f"sum(rate(citygrid_ingest_accepted_total[{RATE}]))", "reqps"),
        single("Devices online", "sum(citygrid_fleet_devices_online)"),
        single("Energy cleared, last interval", "sum(citygrid_market_cleared_volume_kwh)", "kwatth"),
        single("Roots anchored (1h)", "sum(increase(citygrid_anchor_batches_total[1h]))"),
        dashboard.Row("Flow"),
        series("Readings through the platform", {
            "ingest accepted": f"sum(rate(citygrid_ingest_accepted_total[{RATE}]))",
            "ingest rejected": f"sum(rate(citygrid_ingest_rejected_total[{RATE}]))",
            "stream processed": f"sum(rate(citygrid_stream_readings_total[{RATE}]))",
            "anchored": f"sum(rate(citygrid_anchor_readings_total[{RATE}]))",
        }, "reqps", "Each stage's throughput; a gap between two lines is a backlog or a loss."),
        series("Failures", {
            "rejected {{reason}}": f"sum by (reason) (rate(citygrid_ingest_rejected_total[{RATE}]))",
            "anchor failures": f"sum(rate(citygrid_anchor_failures_total[{RATE}]))",
            "settlement failures": f"sum(rate(citygrid_settlement_failures_total[{RATE}]))",
        }, "ops"),
    ]


def edge_fleet() -> list[Panel]:
    """Whether the devices in the field are reporting, backlogged, and on which model."""
    return [
        single("Devices online", "sum(citygrid_fleet_devices_online)"),
        single("Largest outbox", "max(citygrid_edge_outbox_readings)", "short",
               "Readings waiting on the device with the deepest backlog."),
        single("Model versions in use", "count(count by (version) (citygrid_fleet_model_info))"),
        single("Rejected readings/s", f"sum(rate(citygrid_ingest_rejected_total[{RATE}]))", "reqps"),
        series("Devices online", {"online": "sum(citygrid_fleet_devices_online)"}),
        series("Outbox depth (top 10 devices)", {
            "{{instance}}": "topk(10, citygrid_edge_outbox_readings)",
        }, "short", "Readings queued on each device while its link is down."),
        series("Devices per model version", {
            "{{model}} {{version}}": "count by (model, version) (citygrid_fleet_model_info)",
        }),
        series("Rejected readings by reason", {
            "{{reason}}": f"sum by (reason) (rate(citygrid_ingest_rejected_total[{RATE}]))",
        }, "reqps", "Bad signatures, replays and schema errors point at a faulty or hostile device."),
    ]


def stream() -> list[Panel]:
    """Whether the Faust workers keep up and their online models stay accurate."""
    return [
        series("Consumer lag by partition", {
            "partition {{partition}}": "sum by (partition) (citygrid_stream_consumer_lag)",
        }, "short", "Records on the readings topic not yet processed; rising lag needs more workers."),
        series("Throughput", {
            "processed": f"sum(rate(citygrid_stream_readings_total[{RATE}]))",
            "skipped": f"sum(rate(citygrid_stream_skipped_total[{RATE}]))",
            "ingested": f"sum(rate(citygrid_ingest_accepted_total[{RATE}]))",
        }, "reqps"),
        series("Ingest latency (MQTT → Kafka ack)",
               quantiles("citygrid_ingest_latency_seconds", 0.5, 0.99), "s"),
        series("Model error (mean absolute error per forecast)", {
            "{{domain}}": f"sum by (domain) (rate(citygrid_stream_forecast_abs_error_sum[{RATE}])) / "
                          f"sum by (domain) (rate(citygrid_stream_forecast_abs_error_count[{RATE}]))",
        }, "short", "Mean absolute error of the online forecasters on the readings they have just seen."),
        series("Model MAE over persistence", {
            "{{domain}}": "avg by (domain) (citygrid_stream_mae_vs_persistence)",
        }, "short", "Prequential MAE of the model divided by persistence's: below 1 the model wins."),
        series("Drift detections", {
            "{{domain}}": f"sum by (domain) (increase(citygrid_stream_drifts_total[{RATE}]))",
        }, "short", "A drift detector firing means a model is re-learning a changed pattern."),
    ]


def energy_market() -> list[Panel]:
    """What the peer-to-peer market cleared, and at what price, per interval."""
    return [
        single("Cleared volume, last interval", "sum(citygrid_market_cleared_volume_kwh)", "kwatth"),
        single("Clearing price, last interval", "avg(citygrid_market_clearing_price)"),
        single("Trades (1h)", "sum(increase(citygrid_market_trades_total[1h]))"),
        single("Trades settled (1h)", "sum(increase(citygrid_settled_trades_total[1h]))"),
        series("Cleared volume per interval", {
            "cleared kWh": "sum(citygrid_market_cleared_volume_kwh)",
        }, "kwatth"),
        series("Clearing price per interval", {
            "price (planck/Wh)": "avg(citygrid_market_clearing_price)",
        }, "short", "Price per kWh in the ledger's token."),
        series("Order flow", {
            "orders accepted": f"sum(rate(citygrid_market_orders_total[{RATE}]))",
            "refused ({{reason}})": f"sum by (reason) (rate(citygrid_market_orders_refused_total[{RATE}]))",
            "trades": f"sum(rate(citygrid_market_trades_total[{RATE}]))",
        }, "ops"),
        series("Clearing time per interval", quantiles("citygrid_market_clear_seconds", 0.95),
               "s", "Time to clear one interval's order book."),
    ]


def ledger() -> list[Panel]:
    """Whether readings are anchored and trades settled on the parachain, and how fast."""
    return [
        single("Roots anchored (1h)", "sum(increase(citygrid_anchor_batches_total[1h]))"),
        single("Readings anchored (1h)", "sum(increase(citygrid_anchor_readings_total[1h]))"),
        single("Anchor failures (1h)", "sum(increase(citygrid_anchor_failures_total[1h]))"),
        single("Settlement failures (1h)", "sum(increase(citygrid_settlement_failures_total[1h]))"),
        series("Anchored roots", {
            "roots": f"sum(increase(citygrid_anchor_batches_total[{RATE}]))",
            "failures": f"sum(increase(citygrid_anchor_failures_total[{RATE}]))",
        }),
        series("Anchor submit → inclusion", quantiles("citygrid_anchor_submit_seconds", 0.5, 0.95), "s"),
        series("Settlement latency (submitted → included)",
               quantiles("citygrid_settle_submit_seconds", 0.5, 0.95), "s"),
        series("Settlements", {
            "settled": f"sum(rate(citygrid_settled_trades_total[{RATE}]))",
            "failed": f"sum(rate(citygrid_settlement_failures_total[{RATE}]))",
        }, "ops"),
    ]


# File name (without .json) → dashboard; the order is the order dashboards are pushed in.
DASHBOARDS: dict[str, Board] = {
    "city-overview": Board(
        "citygrid-overview", "citygrid / city overview",
        "Readings in, devices online, energy cleared and roots anchored, across the platform.",
        city_overview),
    "edge-fleet": Board(
        "citygrid-edge-fleet", "citygrid / edge fleet",
        "Devices online, store-and-forward outbox depth and deployed model versions.",
        edge_fleet),
    "stream": Board(
        "citygrid-stream", "citygrid / stream",
        "Kafka consumer lag, throughput, online model error and concept drift.",
        stream),
    "energy-market": Board(
        "citygrid-energy-market", "citygrid / energy market",
        "Cleared volume and clearing price per market interval, and the trades behind them.",
        energy_market),
    "ledger": Board(
        "citygrid-ledger", "citygrid / ledger",
        "Merkle roots anchored, readings covered, settlement latency and failures.",
        ledger),
}


def build_all() -> dict[str, Dashboard]:
    """Every dashboard, built."""
    return {name: board.builder().build() for name, board in DASHBOARDS.items()}
