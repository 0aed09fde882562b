"""Turn the dashboard builders into the committed JSON files, and tell when those are stale."""

from __future__ import annotations

import json
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from citygrid.dashboards.catalog import build_all
from citygrid.dashboards.errors import StaleDashboards

JSON_DIR = Path(__file__).resolve().parent / "json"
# Helm reads files only from inside the chart, so the chart keeps its own copy for the ConfigMaps.
CHART_DIR = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "citygrid" / "dashboards"
OUTPUTS = (JSON_DIR, CHART_DIR)


def rendered() -> dict[str, str]:
    """File name → the JSON text each dashboard is committed as (stable key order, so diffs are small)."""
    return {f"{name}.json": json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
            for name, board in build_all().items()}


def as_dicts() -> dict[str, dict]:
    """File name → dashboard JSON as plain dicts, as Grafana's API takes them."""
    return {name: json.loads(text) for name, text in rendered().items()}


def write(out_dirs: tuple[Path, ...] = OUTPUTS) -> list[Path]:
    """Regenerate the JSON files (dashboards/json and the chart's copy); return those written."""
    written = []
    for out_dir in out_dirs:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, text in rendered().items():
            path = out_dir / name
            path.write_text(text)
            written.append(path)
    return written


def check(out_dirs: tuple[Path, ...] = OUTPUTS) -> None:
    """Raise StaleDashboards if any committed JSON is missing, differs, or has extra files."""
    for out_dir in out_dirs:
        _check_dir(out_dir, rendered())


def _check_dir(out_dir: Path, want: dict[str, str]) -> None:
    have = {p.name for p in out_dir.glob("*.json")}
    problems = [f"{out_dir.name}/{n}: missing" for n in sorted(set(want) - have)]
    problems += [f"{out_dir.name}/{n}: not built by the code any more" for n in sorted(have - set(want))]
    problems += [f"{out_dir.name}/{n}: differs from the code" for n in sorted(set(want) & have)
                 if (out_dir / n).read_text() != want[n]]
    if problems:
        raise StaleDashboards(
            "dashboard JSON is out of date (" + "; ".join(problems)
            + "); run `citygrid dashboards build` and commit dashboards/json/ and the chart's dashboards/"
        )
