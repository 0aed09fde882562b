"""No panel queries a metric that no citygrid process exports (names read from the real registries)."""

from __future__ import annotations

import pytest

from citygrid.dashboards.queries import exported_metric_names, metric_names, panel_exprs
from citygrid.dashboards.render import as_dicts

BOARDS = as_dicts()


@pytest.fixture(scope="module")
def exported() -> set[str]:
    names = exported_metric_names()
    # Sanity: the registries were really read (the ingest's counter is the oldest metric).
    assert "citygrid_ingest_accepted_total" in names
    return names


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_every_queried_metric_is_exported(board: str, exported: set[str]) -> None:
    missing = sorted({f"{m} (panel {title!r})" for title, expr in panel_exprs(BOARDS[board])
                      for m in metric_names(expr) - exported})
    assert not missing, f"{board} queries metrics no process exports: {missing}"
