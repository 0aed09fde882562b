"""Provision the Prometheus data source, the folder and the dashboards through Grafana's HTTP API.

Every call is an upsert keyed by a fixed uid, so pushing twice leaves Grafana as pushing once.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from citygrid.dashboards.errors import GrafanaError
from citygrid.dashboards.render import as_dicts
from citygrid.settings import GrafanaSettings

log = structlog.get_logger(__name__)

DATASOURCE_UID = "citygrid-prometheus"


@dataclass(frozen=True)
class PushResult:
    """What one push changed: data source and folder created or updated, dashboards saved."""

    datasource: str
    folder: str
    dashboards: list[str]


def datasource_payload(s: GrafanaSettings, is_default: bool) -> dict:
    """The Prometheus data source as Grafana's API takes it."""
    return {
        "uid": DATASOURCE_UID, "name": "citygrid Prometheus", "type": "prometheus",
        "access": "proxy", "url": s.prometheus_url, "isDefault": is_default,
        "jsonData": {"httpMethod": "POST", "timeInterval": "5s"},
    }


def folder_uid(s: GrafanaSettings) -> str:
    """The folder's uid, derived from its title so it is stable across pushes."""
    return "citygrid-" + "".join(c if c.isalnum() else "-" for c in s.folder.lower()).strip("-")


def dashboard_payload(board: dict, folder: str) -> dict:
    """The body of POST /api/dashboards/db: overwrite by uid, into the folder."""
    return {"dashboard": {**board, "id": None}, "folderUid": folder, "overwrite": True,
            "message": "provisioned by citygrid dashboards push"}


def connect(s: GrafanaSettings) -> GrafanaApi:
    """A client for the configured Grafana, authenticated by token or user and password."""
    credential = s.token or ((s.user, s.password) if s.user and s.password else None)
    return GrafanaApi.from_url(s.url, credential=credential, timeout=s.timeout_s)


def push(s: GrafanaSettings, api: GrafanaApi | None = None) -> PushResult:
    """Create or update the data source, folder and every dashboard; raise GrafanaError if Grafana
    is unreachable or refuses."""
    api = api or connect(s)
    try:
        ds = _upsert_datasource(api, s)
        folder = _upsert_folder(api, s)
        saved = []
        for name, board in as_dicts().items():
            api.dashboard.update_dashboard(dashboard_payload(board, folder))
            saved.append(board["uid"])
            log.info("dashboard_pushed", file=name, uid=board["uid"])
    except GrafanaException as exc:
        raise GrafanaError(f"Grafana at {s.url} refused the push ({exc}); check the URL and that "
                           "CITYGRID_GRAFANA__TOKEN has the Editor or Admin role") from exc
    except OSError as exc:  # niquests' connection errors derive from OSError
        raise GrafanaError(f"cannot reach Grafana at {s.url} ({exc}); is it running? "
                           "set CITYGRID_GRAFANA__URL") from exc
    return PushResult(ds, folder, saved)


def _upsert_datasource(api: GrafanaApi, s: GrafanaSettings) -> str:
    others_default = any(d.get("isDefault") and d.get("uid") != DATASOURCE_UID
                         for d in api.datasource.list_datasources())
    body = datasource_payload(s, is_default=not others_default)
    try:
        api.datasource.get_datasource_by_uid(DATASOURCE_UID)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.datasource.create_datasource(body)
        log.info("datasource_created", uid=DATASOURCE_UID, url=s.prometheus_url)
        return "created"
    api.datasource.update_datasource_by_uid(DATASOURCE_UID, body)
    log.info("datasource_updated", uid=DATASOURCE_UID, url=s.prometheus_url)
    return "updated"


def _upsert_folder(api: GrafanaApi, s: GrafanaSettings) -> str:
    uid = folder_uid(s)
    try:
        api.folder.get_folder(uid)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.folder.create_folder(s.folder, uid=uid)
        log.info("folder_created", uid=uid)
    return uid
