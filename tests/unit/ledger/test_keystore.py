"""The ledger processes' own keys: the owner-only file, whom the anchorer and settler sign as, and
that the settler's settings hold no participant's key."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from substrateinterface import Keypair

from citygrid.ledger.errors import KeystoreError, SettlementError
from citygrid.ledger.keystore import Keystore
from citygrid.ledger.participants import Participants
from citygrid.ledger.settlement import Settler
from citygrid.ledger.signer import role_keypair
from citygrid.settings import CitygridSettings, SettlementSettings


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


def test_the_settler_settings_have_no_place_for_participants_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "participant_keys" not in SettlementSettings.model_fields
    monkeypatch.setenv("CITYGRID_SETTLEMENT__PARTICIPANT_KEYS", json.dumps({"alice": "//Bob"}))
    with pytest.raises(ValueError, match="participant_keys"):
        CitygridSettings()


def test_a_missing_or_bad_key_is_named_and_the_secret_never_echoed() -> None:
    ks = Keystore({"bad": "not a secret uri"})
    with pytest.raises(KeystoreError, match="nobody"):
        ks.keypair("nobody")
    with pytest.raises(KeystoreError, match="not a valid secret URI") as err:
        ks.keypair("bad")
    assert "not a secret uri" not in str(err.value)
    assert "not a secret uri" not in repr(ks)


def test_each_role_signs_as_its_keystore_entry_else_as_the_chain_signer(tmp_path: Path) -> None:
    # The Helm chart gives a process CITYGRID_CHAIN__SIGNER_URI from a Secret; a keystore entry wins.
    s = CitygridSettings().model_copy(update={
        "paths": CitygridSettings().paths.model_copy(update={"keystore": tmp_path / "keystore.json"}),
        "chain": CitygridSettings().chain.model_copy(update={"signer_uri": "//Eve"})})
    assert role_keypair(s, "settler", "Development").public_key == _public("//Eve")
    Keystore({"settler": "//Ferdie"}).save(tmp_path / "keystore.json")
    assert role_keypair(s, "settler", "Development").public_key == _public("//Ferdie")
    assert role_keypair(s, "anchorer", "Development").public_key == _public("//Eve")
    bad = s.model_copy(update={"chain": s.chain.model_copy(update={"signer_uri": "not a secret uri"})})
    with pytest.raises(KeystoreError, match="CITYGRID_CHAIN__SIGNER_URI"):
        role_keypair(bad, "anchorer", "Development")


def test_an_unknown_crash_step_is_refused() -> None:
    with pytest.raises(SettlementError, match="crash_at"):
        Settler(None, None, Participants(), Keypair.create_from_uri("//Eve"), "grid", 1,  # type: ignore[arg-type]
                crash_at="sigend")
