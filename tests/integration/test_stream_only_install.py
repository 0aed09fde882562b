"""A cluster node installs only `citygrid[stream]`: its commands must work without the edge's packages.

The test builds the project's wheel, installs it with the [stream] extra alone into a fresh virtual
environment (cached for the session under pytest's tmp dir), and runs the stream side's commands there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIP_CACHE = ROOT / ".cache" / "pip"


def _clean_env() -> dict[str, str]:
    # Nothing of this checkout may leak in: no PYTHONPATH to its sources, no CITYGRID_* settings.
    keep = {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("CITYGRID_")}
    return {**keep, "PIP_CACHE_DIR": str(PIP_CACHE), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _run(*args: str | Path, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=_clean_env(), capture_output=True,
                          text=True, timeout=timeout)


def _listed(command: str, help_text: str) -> bool:
    return re.search(rf"\b{command}\s{{2,}}\S", help_text) is not None


@pytest.fixture(scope="session")
def stream_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with only citygrid[stream] installed, from a wheel of this checkout."""
    base = tmp_path_factory.mktemp("stream-only")
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", base / "dist", ROOT, cwd=base)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (base / "dist").glob("citygrid-*.whl")
    venv = base / "venv"
    made = _run(sys.executable, "-m", "venv", venv, cwd=base)
    assert made.returncode == 0, made.stderr
    installed = _run(venv / "bin" / "python", "-m", "pip", "install", f"citygrid[stream] @ {wheel.as_uri()}",
                     cwd=base, timeout=900)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv


@pytest.mark.timeout(900)
def test_stream_commands_work_with_only_the_stream_extra(stream_venv: Path, tmp_path: Path) -> None:
    # First: the environment really lacks the edge's packages, so the commands below prove something.
    edge = _run(stream_venv / "bin" / "python", "-c", "import onnxruntime", cwd=tmp_path)
    assert edge.returncode != 0 and "onnxruntime" in edge.stderr, edge.stdout + edge.stderr

    citygrid = stream_venv / "bin" / "citygrid"
    stream = _run(citygrid, "stream", "--help", cwd=tmp_path)
    assert stream.returncode == 0, stream.stdout + stream.stderr
    assert "Usage: citygrid stream" in stream.stdout
    # The commands are listed (name, two spaces, help), not only named in the group's help.
    assert _listed("ingest", stream.stdout) and _listed("worker", stream.stdout), stream.stdout

    advisor = _run(citygrid, "traffic", "advisor", "--help", cwd=tmp_path)
    assert advisor.returncode == 0, advisor.stdout + advisor.stderr
    assert "Usage: citygrid traffic advisor" in advisor.stdout, advisor.stdout
