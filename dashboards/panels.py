"""The few panel shapes every citygrid dashboard uses, all querying the `datasource` variable."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.models.dashboard import DataSourceRef

# Panels point at the dashboard's datasource variable, so the same JSON works with the
# Prometheus data source `citygrid dashboards push` creates and with a cluster's own.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Grafana's rate window: at least four scrape intervals, whatever the data source scrapes at.
RATE = "$__rate_interval"


def datasource_variable() -> dashboard.DatasourceVariable:
    """The variable that lets a viewer pick which Prometheus the dashboard reads."""
    return dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")


def query(expr: str, legend: str = "", ref: str = "A") -> prometheus.Dataquery:
    """One PromQL query; every project metric it reads must start with `citygrid_`."""
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    return q.legend_format(legend) if legend else q


def series(title: str, exprs: dict[str, str], unit: str = "short", description: str = "",
           width: int = 12) -> timeseries.Panel:
    """A time series of one or more queries, keyed by legend."""
    panel = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).span(width).height(8)
    if description:
        panel = panel.description(description)
    for i, (legend, expr) in enumerate(exprs.items()):
        panel = panel.with_target(query(expr, legend, chr(ord("A") + i)))
    return panel


def single(title: str, expr: str, unit: str = "short", description: str = "", width: int = 6) -> stat.Panel:
    """One big number (the latest value of a query)."""
    panel = stat.Panel().title(title).unit(unit).datasource(DATASOURCE).span(width).height(4)
    if description:
        panel = panel.description(description)
    return panel.with_target(query(expr))


def quantiles(histogram: str, *qs: float) -> dict[str, str]:
    """Legend ("p95") → PromQL of each quantile of a prometheus-client histogram, over all its series."""
    return {f"p{round(q * 100)}": f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket[{RATE}])))"
            for q in qs}
