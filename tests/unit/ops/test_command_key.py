"""`citygrid edge command-key`: the command authority's key, made once (0600), its public half printed."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from citygrid.ops.cli import edge
from citygrid.signing import DeviceKey


def test_makes_the_key_once_and_prints_its_public_half(tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(edge, ["command-key", str(tmp_path / "command.key")])
    assert first.exit_code == 0, first.output
    key = DeviceKey.load(tmp_path / "command.key")
    assert first.output.strip() == key.public_key.hex()
    assert (tmp_path / "command.key").stat().st_mode & 0o777 == 0o600
    again = runner.invoke(edge, ["command-key", str(tmp_path / "command.key")])
    assert again.output == first.output  # an existing key is read, never replaced
