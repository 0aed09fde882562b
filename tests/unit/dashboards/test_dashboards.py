"""Dashboards as code: the committed JSON is current, well formed, and its queries parse to metrics."""

from __future__ import annotations

import json

import pytest

from citygrid.dashboards.catalog import DASHBOARDS
from citygrid.dashboards.errors import StaleDashboards
from citygrid.dashboards.queries import metric_names, panel_exprs
from citygrid.dashboards.render import JSON_DIR, as_dicts, check, write


def test_committed_json_is_current() -> None:
    check()


def test_check_names_a_stale_file(tmp_path) -> None:
    write((tmp_path,))
    check((tmp_path,))
    (tmp_path / "stream.json").write_text("{}")
    (tmp_path / "old.json").write_text("{}")
    with pytest.raises(StaleDashboards, match=r"stream\.json: differs.*|old\.json: not built"):
        check((tmp_path,))


def test_one_dashboard_per_concern() -> None:
    boards = as_dicts()
    assert set(boards) == {f"{n}.json" for n in DASHBOARDS} == {p.name for p in JSON_DIR.glob("*.json")}
    assert len({b["uid"] for b in boards.values()}) == len(boards)
    for name, board in boards.items():
        assert board["title"].startswith("citygrid / "), name
        assert [v["name"] for v in board["templating"]["list"]] == ["datasource"], name
        exprs = list(panel_exprs(board))
        assert len(exprs) >= 4, name
        for title, expr in exprs:
            assert metric_names(expr), f"{name}/{title}: {expr} reads no citygrid metric"


def test_panels_use_the_datasource_variable() -> None:
    for name, board in as_dicts().items():
        for panel in board["panels"]:
            for target in panel.get("targets") or []:
                assert target["datasource"]["uid"] == "${datasource}", name


@pytest.mark.parametrize(("expr", "names"), [
    ("sum(rate(citygrid_a_total[$__rate_interval]))", {"citygrid_a_total"}),
    ('histogram_quantile(0.9, sum by (le) (rate(citygrid_b_seconds_bucket{job="citygrid_x"}[5m])))',
     {"citygrid_b_seconds_bucket"}),
    ("citygrid_c / on(instance) citygrid_d:ratio", {"citygrid_c", "citygrid_d:ratio"}),
    ("up{process='ingest'}", set()),
])
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_json_is_plain_grafana_json() -> None:
    board = json.loads((JSON_DIR / "ledger.json").read_text())
    assert board["uid"] == "citygrid-ledger" and "id" not in board
    assert all(p["type"] in ("timeseries", "stat", "row") for p in board["panels"])
