"""Grafana dashboards as code: built with grafana-foundation-sdk, provisioned with grafana-client."""

from citygrid.dashboards.catalog import DASHBOARDS, build_all

__all__ = ["DASHBOARDS", "build_all"]
