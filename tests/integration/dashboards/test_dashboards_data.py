"""Dashboards proven by data: after the demo, every query of every panel of every dashboard, run
through a real Prometheus's HTTP API over the demo's own time range, returns data.

The demo runs as `citygrid demo` runs it (citygrid.devtools.demo.run_demo) on the servers already up,
with its own data directory, topics and MQTT roots. Its ingest, worker and anchorer are scraped by a
Prometheus of this test's own (Debian's, as `citygrid servers up` runs it, on a free port), scraping
every second with their targets registered before they start, so the test's range queries have a
sample every second; changing the shared server's 5 s interval would change it for everyone. The demo
waits for one scrape of each of its processes before it replays its burst of readings, so every
counter has a sample before the burst, and the worker creates its per-domain series at zero.

Queries are those Grafana sends, with $__rate_interval as Grafana sets it for a short range (four
scrape intervals), evaluated as a range query (Grafana's time series) over the demo's run: the
processes stop when the demo ends, so an instant query afterwards would see only stale series. A value
is data when it is a number (NaN, what histogram_quantile gives without observations, is not).

A query whose every metric has a reason in NO_DATA may stay empty; every other query must return data,
and a metric listed in NO_DATA that does return data fails too (remove it from the list).
"""

from __future__ import annotations

import io
import json
import math
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from rich.console import Console
from support import free_port, isolated_settings, wait_until

from citygrid.dashboards.queries import metric_names, panel_exprs
from citygrid.dashboards.render import as_dicts
from citygrid.devtools import prometheus
from citygrid.devtools.demo import DEMO_METRICS_PORT, PROCESSES, run_demo
from citygrid.devtools.server import port_open
from citygrid.ops.kafka_access import apply
from citygrid.settings import CitygridSettings, PathSettings

pytestmark = pytest.mark.timeout(600)

# Metrics no process of the demo can export, and why. A panel reading only these stays empty.
NO_DATA = {
    "citygrid_edge_outbox_readings": "the demo's devices are simulated inside the demo process, which "
                                     "Prometheus does not scrape; a deployed agent exports it",
    "citygrid_fleet_model_info": "the demo's simulated devices publish unscored readings (no edge model), "
                                 "and the gauge is set per device only for readings a model scored",
    "citygrid_market_orders_refused_total": "the demo sends no order that the market refuses (a labelled "
                                            "counter has no series before its first refusal)",
    "citygrid_market_clear_seconds_bucket": "the demo runs no participant bidders, so no order reaches the "
                                            "market and no interval is cleared",
    "citygrid_settled_trades_total": "the demo runs no settler (settlement has its own tests and benchmark)",
    "citygrid_settlement_failures_total": "the demo runs no settler",
    "citygrid_settle_submit_seconds_bucket": "the demo runs no settler",
}

def _range(port: int, promql: str, start: float, end: float, step_s: int) -> list[dict]:
    query = urllib.parse.urlencode({"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                    "step": f"{step_s}s"})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query_range?{query}", timeout=30) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def _has_data(series: list[dict]) -> bool:
    return any(math.isfinite(float(v)) for s in series for _, v in s["values"])


def _demo_settings(tmp_path: Path, prometheus_port: int) -> CitygridSettings:
    """The demo's own data dir, topics and roots, on the servers already running, and this test's own
    Prometheus (scraping every second) in place of the shared one."""
    base = CitygridSettings()
    # The local platform's PKI (its CA, the broker's admin identity) and servers (their pid files, the
    # Kafka principals), shared; the rest its own.
    (tmp_path / "pki").symlink_to(base.paths.data_dir / "pki")
    (tmp_path / "servers").mkdir()
    for name in ("mosquitto", "kafka", "chain"):
        (tmp_path / "servers" / name).symlink_to(base.paths.servers_dir / name)
    s = isolated_settings(tmp_path)
    s = s.model_copy(update={
        "paths": PathSettings(data_dir=tmp_path, cache_dir=base.paths.cache_dir),
        "prometheus": s.prometheus.model_copy(update={"port": prometheus_port, "scrape_interval_s": 1}),
    })
    apply(s)  # the services' Kafka ACLs on this run's own topics and groups
    return s


def test_every_dashboard_panel_has_data_after_the_demo(servers: CitygridSettings, tmp_path: Path) -> None:
    s = _demo_settings(tmp_path, free_port())
    # The demo's processes take fixed metrics ports: another demo running on this machine holds them.
    ports = range(DEMO_METRICS_PORT, DEMO_METRICS_PORT + len(PROCESSES))
    wait_until(lambda: not any(port_open("127.0.0.1", p) for p in ports), 300,
               f"the demo's metrics ports {ports.start}-{ports.stop - 1} to be free (another demo runs)")
    prom = prometheus.server(s)
    prom.start()
    try:
        # Scraped from their first second: the targets exist before the processes do.
        for port, (name, _args) in enumerate(PROCESSES, start=DEMO_METRICS_PORT):
            prometheus.register_target(prom.dir, name, port)
        out = io.StringIO()
        start = time.time()
        try:
            code = run_demo(s, devices=6, steps=16, keep_servers=True, console=Console(file=out, width=200))
        except Exception as exc:  # the demo's own report says where it stopped
            raise AssertionError(f"the demo failed: {exc!r}\n{out.getvalue()[-3000:]}") from exc
        end = time.time()
        assert code == 0, out.getvalue()[-3000:]
        empty, listed_with_data = _run_every_query(s, start, end)
    finally:
        prom.stop()
    assert not empty, "panels with no data after the demo:\n  " + "\n  ".join(empty)
    assert not listed_with_data, ("panels with data whose metrics NO_DATA says cannot have any (remove them "
                                  "from NO_DATA):\n  " + "\n  ".join(listed_with_data))


def _run_every_query(s: CitygridSettings, start: float, end: float) -> tuple[list[str], list[str]]:
    """(queries without data and not excused, queries with data that NO_DATA excuses)."""
    step = s.prometheus.scrape_interval_s
    empty, listed_with_data = [], []
    for board, dashboard in sorted(as_dicts().items()):
        for title, expr in panel_exprs(dashboard):
            promql = expr.replace("$__rate_interval", f"{4 * step}s")
            data = _has_data(_range(s.prometheus.port, promql, start, end + 2 * step, step))
            names = metric_names(expr)
            if not data and not names <= NO_DATA.keys():
                empty.append(f"{board} / {title}: {expr}")
            if data and names & NO_DATA.keys():
                listed_with_data.append(f"{board} / {title}: {sorted(names & NO_DATA.keys())}")
    return empty, listed_with_data
