"""A local Prometheus (Debian's `prometheus`) that scrapes the local platform's processes.

Targets are file_sd JSON files, one per process, so the demo can add and remove processes while
Prometheus runs (it re-reads them without a restart). Built on citygrid.devtools.server.Server
so `citygrid servers up` can start it like the other local servers.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from citygrid.devtools.server import Server, ServerError
from citygrid.settings import CitygridSettings
from citygrid.storage import atomic_write

TARGETS_DIR = "targets"


def config_text(s: CitygridSettings, targets_dir: Path) -> str:
    """prometheus.yml scraping every process registered in `targets_dir`."""
    interval = f"{s.prometheus.scrape_interval_s}s"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{
            "job_name": "citygrid",
            "file_sd_configs": [{"files": [str(targets_dir / "*.json")], "refresh_interval": interval}],
        }],
    }
    return json.dumps(config, indent=1)  # JSON is YAML


def register_target(d: Path, process: str, port: int, host: str = "127.0.0.1") -> Path:
    """Tell the Prometheus whose server dir is `d` to scrape `process` on host:port."""
    targets = d / TARGETS_DIR
    targets.mkdir(parents=True, exist_ok=True)
    path = targets / f"{process}.json"
    # Atomic, so Prometheus never reads half a file.
    atomic_write(path, json.dumps([{"targets": [f"{host}:{port}"], "labels": {"process": process}}]))
    return path


def scraped(s: CitygridSettings, processes: Iterable[str]) -> bool:
    """True once the local Prometheus has scraped every one of `processes` successfully: from then on
    their counters have a sample before whatever they count next, so rate() sees it."""
    query = urllib.parse.urlencode({"query": "up == 1"})
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{s.prometheus.port}/api/v1/query?{query}",
                                    timeout=5) as resp:
            body = json.load(resp)
    except OSError:
        return False
    seen = {r["metric"].get("process") for r in body.get("data", {}).get("result", [])}
    return set(processes) <= seen


def server(s: CitygridSettings, name: str = "prometheus") -> Server:
    """The local Prometheus as a citygrid Server (data and targets under <data_dir>/servers/<name>)."""
    binary = shutil.which("prometheus")

    def prepare(d: Path) -> None:
        if binary is None:
            raise ServerError("prometheus not installed; run scripts/setup/prometheus.sh")
        (d / TARGETS_DIR).mkdir(exist_ok=True)
        (d / "prometheus.yml").write_text(config_text(s, d / TARGETS_DIR))

    def command(d: Path) -> list[str]:
        return [binary or "prometheus", f"--config.file={d / 'prometheus.yml'}",
                f"--storage.tsdb.path={d / 'data'}", f"--web.listen-address=127.0.0.1:{s.prometheus.port}",
                "--storage.tsdb.retention.time=2d", "--log.level=warn"]

    return Server(name, s.prometheus.port, s.paths.servers_dir / name, command, prepare, lambda: True, 60)
