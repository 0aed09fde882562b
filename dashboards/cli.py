"""`citygrid dashboards …`: build the dashboard JSON, check it is current, push it to Grafana."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from citygrid.dashboards.errors import DashboardsError
from citygrid.settings import get_settings

app = typer.Typer(help="Grafana dashboards as code.", no_args_is_help=True)
console = Console()


@app.command()
def build() -> None:
    """Regenerate dashboards/json/ from the code."""
    from citygrid.dashboards.render import write

    for path in write():
        console.print(f"wrote {path}")


@app.command()
def check() -> None:
    """Fail if the committed JSON is stale or a panel queries a metric no process exports."""
    from citygrid.dashboards.queries import exported_metric_names, metric_names, panel_exprs
    from citygrid.dashboards.render import as_dicts, check

    try:
        check()
    except DashboardsError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    exported = exported_metric_names()
    table = Table("dashboard", "panel", "metric nothing exports")
    for name, board in as_dicts().items():
        for title, expr in panel_exprs(board):
            for metric in sorted(metric_names(expr) - exported):
                table.add_row(name, title, metric)
    if table.row_count:
        console.print(table)
        raise typer.Exit(1)
    console.print("[green]dashboards current; every queried metric is exported[/]")


@app.command()
def push() -> None:
    """Provision the Prometheus data source and every dashboard in Grafana (idempotent)."""
    from citygrid.dashboards.provision import push

    s = get_settings().grafana
    try:
        result = push(s)
    except DashboardsError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"data source {result.datasource}; folder {result.folder}; "
                  f"{len(result.dashboards)} dashboards saved to {s.url}")
