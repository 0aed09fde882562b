"""Real load and PV profiles from SimBench, cached as a small .npz.

SimBench ships a year (2016, UTC quarter-hours) of profiles per grid; loading a grid takes seconds,
so the columns citygrid replays are extracted once and cached, with each device's SimBench profile
name (many devices share one profile, scaled) and the grid's site (the mean of its bus coordinates).
Besides the small rural grid, `GRIDS` names two with over 100 households and PV.

Two facts about the data matter for forecasting: SimBench's PV profiles are hourly values linearly
interpolated to 15 minutes (within each hour three of four steps continue a straight line), and the
household (H0-*) profiles number five per grid, so a 111-home feeder has five distinct homes, scaled.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citygrid.storage import atomic_write

DEFAULT_GRID = "1-LV-rural1--0-sw"
# The grids the prequential report covers: rural (13 loads, 4 PV), semi-urban (104 loads, 9 PV) and
# urban (111 loads, 5 PV).
GRIDS = (DEFAULT_GRID, "1-LV-semiurb5--0-sw", "1-LV-urban6--0-sw")
STEP_S = 900  # SimBench profiles are quarter-hourly
T0_MS = 1_451_606_400_000  # 2016-01-01T00:00Z: the first SimBench quarter-hour


@dataclass(frozen=True)
class Profile:
    """One device's power series in kW at 15-minute steps."""

    name: str
    kind: str  # "meter" (consumption) or "pv" (generation)
    kw: np.ndarray
    profile: str = ""  # SimBench's profile name (H0-A household, G1-A commercial, L1-A farm, PV5 …)


def _extract(grid: str) -> dict[str, np.ndarray]:
    import simbench  # heavy; only needed to (re)build the cache

    net = simbench.get_simbench_net(grid)
    loads = net.profiles["load"]
    gens = net.profiles["renewables"]
    out: dict[str, np.ndarray] = {}
    for _, row in net.load.iterrows():
        col = f"{row['profile']}_pload"
        if col in loads:
            out[f"meter:{row['name']}:{row['profile']}"] = loads[col].to_numpy(float) * row["p_mw"] * 1000
    for _, row in net.sgen.iterrows():
        if row["profile"] in gens and str(row["type"]).startswith("PV"):
            kw = gens[row["profile"]].to_numpy(float) * row["p_mw"] * 1000
            out[f"pv:{row['name']}:{row['profile']}"] = kw
    coords = [json.loads(g)["coordinates"] for g in net.bus["geo"].dropna()]
    out["site"] = np.array(coords, float).mean(axis=0)[::-1] if coords else np.array([53.64, 11.41])
    return out


def _cached(cache_dir: Path, grid: str) -> Path:
    path = Path(cache_dir) / f"simbench2-{grid}.npz"  # 2: profile names and the site inside
    if not path.exists():
        buf = io.BytesIO()
        np.savez_compressed(buf, **_extract(grid))
        atomic_write(path, buf.getvalue())
    return path


def load_profiles(cache_dir: Path, grid: str = DEFAULT_GRID) -> list[Profile]:
    """All household meter and PV profiles of a SimBench grid (from the cache when present)."""
    with np.load(_cached(cache_dir, grid)) as npz:
        keys = sorted((k for k in npz.files if k != "site"), key=lambda k: k.rsplit(":", 1)[0])  # as before
        return [Profile(k.split(":")[1], k.split(":")[0], npz[k], k.split(":")[2]) for k in keys]


def grid_site(cache_dir: Path, grid: str = DEFAULT_GRID) -> tuple[float, float]:
    """(latitude, longitude) of the grid: the mean of its buses' coordinates."""
    with np.load(_cached(cache_dir, grid)) as npz:
        lat, lon = npz["site"]
        return round(float(lat), 2), round(float(lon), 2)


@dataclass
class ProfileReplay:
    """Replays a SimBench profile from `start_step`, stamping readings on a clock that
    begins at `start_ms` and advances one profile step (15 min) per reading."""

    profile: Profile
    start_ms: int
    start_step: int = 0
    steps: int | None = None

    @property
    def kind(self) -> str:
        """The replayed device's kind: a meter or a PV inverter, as the profile says."""
        return self.profile.kind

    def measurements(self) -> Iterator[tuple[int, dict[str, float]]]:
        """The profile's power, one quarter-hour per reading, wrapping round the year."""
        n = len(self.profile.kw) - self.start_step if self.steps is None else self.steps
        for i in range(n):
            kw = float(self.profile.kw[(self.start_step + i) % len(self.profile.kw)])
            yield self.start_ms + i * STEP_S * 1000, {"p_kw": round(kw, 4)}
