"""Fixtures of the operator tooling's integration tests: the project's wheel, a small real model, a real
Modbus meter, and agents started by a deploy stopped again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import wait_until

from citygrid.ops.release import Release, build_wheel, project_root
from citygrid.settings import CitygridSettings


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built once per session from this checkout (as `citygrid edge deploy` does)."""
    project = project_root()
    assert project is not None, "the tests run from a source checkout (PYTHONPATH=.dev)"
    return build_wheel(project, tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def release(wheel: Path) -> Release:
    """A release of the project's wheel alone (no model)."""
    return Release.from_files(wheel)


@pytest.fixture
def device_roots() -> Iterator[list[Path]]:
    """Device roots a test deploys to on this host; the agents deploys started there are stopped after."""
    roots: list[Path] = []
    yield roots
    for root in roots:
        stop_agent_under(root)


def stop_agent_under(root: Path) -> None:
    """Stop the agent a deploy started with run-unit.py under `root` (no systemd here), if it runs."""
    import os
    import signal

    pid_file = root / "run" / "agent.pid"
    if pid_file.exists() and (pid := int(pid_file.read_text() or 0)):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        wait_until(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 20, "the agent to stop",
                   every_s=0.1)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real load nowcast (few trees, few profiles), version "2", trained once per session."""
    from citygrid.sim.train_models import train

    out = tmp_path_factory.mktemp("models")
    models = train(CitygridSettings().paths.cache_dir, out, version="2", trees=4, max_profiles=2)
    return models["load_nowcast"]


