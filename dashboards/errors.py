"""What can go wrong building or provisioning dashboards."""

from __future__ import annotations

from citygrid.errors import CitygridError


class DashboardsError(CitygridError):
    """Base of the dashboards part's errors."""


class StaleDashboards(DashboardsError):
    """The committed dashboard JSON differs from what the code builds."""


class GrafanaError(DashboardsError):
    """Grafana could not be reached or refused a provisioning call."""
