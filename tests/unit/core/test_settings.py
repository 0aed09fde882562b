"""Settings come from the environment, and `as_env` hands them to child processes unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from citygrid.settings import CitygridSettings, PathSettings


def test_as_env_round_trips_every_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = CitygridSettings(paths=PathSettings.under(tmp_path), metrics_port=9123)
    s = s.model_copy(update={"kafka": s.kafka.model_copy(update={"readings_topic": "r-x"})})
    env = s.as_env(base={})
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert CitygridSettings() == s
