"""`citygrid ledger authorize`, run by a participant with its own key file on the real dev chain: the
approval lands on chain for exactly the amount asked, and an amount above the operator's cap is
refused before anything is signed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from citygrid.settings import CitygridSettings

pytestmark = [pytest.mark.servers, pytest.mark.timeout(120)]


def _approved(acc, owner: str, delegate: str) -> int:
    found = acc.chain.substrate.query("Assets", "Approvals", [acc.asset_id, owner, delegate])
    return 0 if found.value is None else found.value["amount"]


def test_a_participant_approves_its_own_bounded_allowance(
        accounts_factory, live: CitygridSettings, child_env, tmp_path: Path) -> None:
    acc = accounts_factory(buyers=1, sellers=0)
    key_file = tmp_path / "my.key"
    mnemonic = acc.keystore.secret("buyer0")
    key_file.write_text(mnemonic)
    key_file.chmod(0o600)
    settler = acc.address("settler")
    s = live.model_copy(update={"settlement": live.settlement.model_copy(update={
        "asset_id": acc.asset_id, "allowance_cap": 5_000})})

    def authorize(amount: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "citygrid", "ledger", "authorize", str(amount),
                               "--key-file", str(key_file), "--settler", settler],
                              env=child_env(s), capture_output=True, text=True, timeout=60)

    owner = acc.address("buyer0")
    before = _approved(acc, owner, settler)
    refused = authorize(5_001)
    assert refused.returncode == 1 and "cap" in refused.stdout, refused.stdout + refused.stderr
    assert _approved(acc, owner, settler) == before
    done = authorize(1_234)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _approved(acc, owner, settler) == before + 1_234  # approvals add up on Asset Hub
    assert mnemonic not in done.stdout + done.stderr
    key_file.chmod(0o644)
    exposed = authorize(1)
    assert exposed.returncode == 1 and "chmod 600" in exposed.stdout
