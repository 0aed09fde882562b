"""Participants' keys: the owner-only file, keys from the settings over it, whom the settler signs as."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from substrateinterface import Keypair

from citygrid.ledger.errors import KeystoreError, SettlementError
from citygrid.ledger.keystore import Keystore
from citygrid.ledger.settlement import Settler, settler_keypair
from citygrid.settings import CitygridSettings


def _public(uri: str) -> bytes:
    return Keypair.create_from_uri(uri).public_key


def test_saved_keystore_is_owner_only_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "keystore.json"
    ks = Keystore()
    ks.add("alice", "//Alice")
    ks.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keystore.load(path).keypair("alice").public_key == _public("//Alice")
    path.chmod(0o644)
    with pytest.raises(KeystoreError, match="chmod 600"):
        Keystore.load(path)


def test_keys_from_the_settings_win_over_the_file_and_are_never_saved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keystore.json"
    ks = Keystore()
    ks.add("alice", "//Alice")
    ks.save(path)
    keys = {"alice": "//Bob", "carol": "//Charlie"}
    monkeypatch.setenv("CITYGRID_SETTLEMENT__PARTICIPANT_KEYS", json.dumps(keys))
    overrides = CitygridSettings().settlement.participant_keys
    loaded = Keystore.load(path, overrides)
    assert loaded.keypair("alice").public_key == _public("//Bob")
    assert loaded.keypair("carol").public_key == _public("//Charlie")
    assert "Bob" not in repr(loaded) and "Charlie" not in repr(loaded)
    loaded.save(path)
    assert json.loads(path.read_text()) == {"alice": "//Alice"}


def test_a_missing_or_bad_key_says_where_to_put_it() -> None:
    ks = Keystore({"bad": "not a secret uri"})
    with pytest.raises(KeystoreError, match="PARTICIPANT_KEYS"):
        ks.keypair("nobody")
    with pytest.raises(KeystoreError, match="not a valid secret URI") as err:
        ks.keypair("bad")
    assert "not a secret uri" not in str(err.value)


def test_settler_signs_as_its_keystore_entry_else_as_the_chain_signer() -> None:
    # The Helm chart gives the settler only CITYGRID_CHAIN__SIGNER_URI; a keystore entry wins if present.
    assert settler_keypair(Keystore(), "//Eve").public_key == _public("//Eve")
    assert settler_keypair(Keystore({"settler": "//Ferdie"}), "//Eve").public_key == _public("//Ferdie")
    assert settler_keypair(Keystore(overrides={"settler": "//Dave"}), "//Eve").public_key == _public("//Dave")
    with pytest.raises(KeystoreError, match="CITYGRID_CHAIN__SIGNER_URI"):
        settler_keypair(Keystore(), "not a secret uri")


def test_an_unknown_crash_step_is_refused() -> None:
    with pytest.raises(SettlementError, match="crash_at"):
        Settler(None, None, Keystore(), Keypair.create_from_uri("//Eve"), "grid", 1,  # type: ignore[arg-type]
                crash_at="sigend")
