"""The local Prometheus really scrapes a real citygrid process, and sees the metrics the dashboards read."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from support import free_port, wait_until

from citygrid.dashboards.queries import metric_names, panel_exprs
from citygrid.dashboards.render import as_dicts
from citygrid.devtools.processes import spawn, stop
from citygrid.devtools.prometheus import register_target, server
from citygrid.settings import CitygridSettings, PathSettings


def query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)["data"]["result"]


@pytest.mark.timeout(120)
def test_prometheus_scrapes_the_ingest(live: CitygridSettings, tmp_path: Path) -> None:
    s = live.model_copy(update={
        "metrics_port": free_port(),
        "prometheus": live.prometheus.model_copy(update={"port": free_port(), "scrape_interval_s": 1}),
    })
    # This Prometheus keeps its data and targets under the test's tmp dir, apart from the shared servers.
    prom = server(s.model_copy(update={"paths": PathSettings.under(tmp_path.resolve(), s.paths.cache_dir)}),
                  name="prometheus-test")
    prom.start()
    ingest = spawn(["stream", "ingest"], s.as_env(), tmp_path / "ingest.log")
    try:
        register_target(prom.dir, "ingest", s.metrics_port)
        wait_until(lambda: bool(query(s.prometheus.port, 'citygrid_ingest_accepted_total{process="ingest"}')),
                   60, "Prometheus to scrape the ingest's citygrid_ingest_accepted_total; see "
                   f"{tmp_path / 'ingest.log'} and {prom.dir / 'log'}")
        assert query(s.prometheus.port, 'up{process="ingest"} == 1')
        scraped = query(s.prometheus.port, '{process="ingest", __name__=~"citygrid_.*"}')
        names = {r["metric"]["__name__"] for r in scraped}
        wanted = {m for b in as_dicts().values() for _, e in panel_exprs(b)
                  for m in metric_names(e)
                  if m.startswith("citygrid_ingest_") and not m.endswith("rejected_total")}
        # rejected_total has no series until a first rejection; the rest must be scraped.
        assert wanted and wanted <= names, wanted - names
    finally:
        stop(ingest)
        prom.stop()
