"""Settings come from the environment, and `as_env` hands them to child processes unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from citygrid.settings import CitygridSettings, PathSettings


def test_as_env_round_trips_every_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = CitygridSettings(paths=PathSettings.under(tmp_path), metrics_port=9123)
    s = s.model_copy(update={"kafka": s.kafka.model_copy(update={"readings_topic": "r-x"})})
    env = s.as_env(base={})
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert CitygridSettings() == s


@pytest.mark.parametrize("name", ["CITYGRID_DATA_DIR", "CITYGRID_MQTT__HOSTNAME"])
def test_a_misspelt_variable_stops_the_process_at_start(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, "x")
    with pytest.raises(ValidationError, match=r"DATA_DIR|hostname"):
        CitygridSettings()


def test_a_wrong_choice_names_the_allowed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYGRID_STREAM__MODEL", "river_lineer")
    with pytest.raises(ValidationError, match="river_linear"):
        CitygridSettings()


def test_lists_come_as_commas_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYGRID_STREAM__TRAFFIC_KINDS", "traffic, loop")
    assert CitygridSettings().stream.traffic_kinds == ["traffic", "loop"]
    monkeypatch.setenv("CITYGRID_STREAM__TRAFFIC_KINDS", '["a"]')
    assert CitygridSettings().stream.traffic_kinds == ["a"]


def test_state_files_live_under_the_data_dir_unless_set(tmp_path: Path) -> None:
    paths = PathSettings.under(tmp_path / "state")
    assert paths.anchor_store == tmp_path / "state" / "anchors.sqlite"
    assert paths.device_registry.parent == paths.data_dir
    assert PathSettings(data_dir=tmp_path, keystore=tmp_path / "k.json").keystore == tmp_path / "k.json"
