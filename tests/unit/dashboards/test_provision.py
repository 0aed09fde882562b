"""Provisioning payloads, and what `dashboards push` says when Grafana is not there.

No Grafana server can be built on this machine (see deploy/helm/citygrid/README.md), so the
API round trip is not tested here; the payloads are, and the error path uses a real refused
connection, not a fake server.
"""

from __future__ import annotations

import socket

import pytest

from citygrid.dashboards.errors import GrafanaError
from citygrid.dashboards.provision import (
    DATASOURCE_UID,
    dashboard_payload,
    datasource_payload,
    folder_uid,
    push,
)
from citygrid.dashboards.render import as_dicts
from citygrid.settings import GrafanaSettings


def test_datasource_payload_points_at_the_configured_prometheus() -> None:
    s = GrafanaSettings(prometheus_url="http://prom:9090")
    body = datasource_payload(s, is_default=True)
    assert body["uid"] == DATASOURCE_UID and body["type"] == "prometheus"
    assert body["url"] == "http://prom:9090" and body["isDefault"] is True


def test_dashboard_payload_overwrites_by_uid_in_the_folder() -> None:
    board = as_dicts()["stream.json"]
    body = dashboard_payload(board, folder_uid(GrafanaSettings(folder="City Ops")))
    assert body["overwrite"] is True and body["folderUid"] == "citygrid-city-ops"
    assert body["dashboard"]["uid"] == "citygrid-stream" and body["dashboard"]["id"] is None


@pytest.mark.timeout(30)
def test_push_to_an_absent_grafana_says_what_to_do() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = GrafanaSettings(url=f"http://127.0.0.1:{port}", token="t", timeout_s=2)
    with pytest.raises(GrafanaError, match=r"CITYGRID_GRAFANA__URL|refused the push"):
        push(s)
