"""Real load and PV profiles from SimBench, cached as a small .npz.

SimBench ships a year of 15-minute profiles per grid; loading a grid takes
seconds, so the columns citygrid replays are extracted once and cached.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citygrid.storage import atomic_write

DEFAULT_GRID = "1-LV-rural1--0-sw"
STEP_S = 900  # SimBench profiles are quarter-hourly


@dataclass(frozen=True)
class Profile:
    """One device's power series in kW at 15-minute steps."""

    name: str
    kind: str  # "meter" (consumption) or "pv" (generation)
    kw: np.ndarray


def _extract(grid: str) -> dict[str, np.ndarray]:
    import simbench  # heavy; only needed to (re)build the cache

    net = simbench.get_simbench_net(grid)
    loads = net.profiles["load"]
    gens = net.profiles["renewables"]
    out: dict[str, np.ndarray] = {}
    for _, row in net.load.iterrows():
        col = f"{row['profile']}_pload"
        if col in loads:
            out[f"meter:{row['name']}"] = loads[col].to_numpy(float) * row["p_mw"] * 1000
    for _, row in net.sgen.iterrows():
        if row["profile"] in gens and str(row["type"]).startswith("PV"):
            out[f"pv:{row['name']}"] = gens[row["profile"]].to_numpy(float) * row["p_mw"] * 1000
    return out


def load_profiles(cache_dir: Path, grid: str = DEFAULT_GRID) -> list[Profile]:
    """All household meter and PV profiles of a SimBench grid (from the cache when present)."""
    path = Path(cache_dir) / f"simbench-{grid}.npz"
    if not path.exists():
        buf = io.BytesIO()
        np.savez_compressed(buf, **_extract(grid))
        atomic_write(path, buf.getvalue())
    with np.load(path) as npz:
        return [Profile(k.split(":", 1)[1], k.split(":", 1)[0], npz[k]) for k in sorted(npz.files)]


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
