"""The dev-key rule: a well-known development key signs only on a development chain.

The node's answer to `system_chainType` is the input; the real dev chain's answer is checked in
tests/integration/ledger/test_signer_rule.py.
"""

from __future__ import annotations

import pytest
from substrateinterface import Keypair

from citygrid.ledger.signer import DEV_PHRASE, DevKeyOnLiveChain, check_signer, is_dev_chain, is_dev_key


@pytest.mark.parametrize("uri", ["//Alice", "//Bob", "//Alice//stash", "//Ferdie", DEV_PHRASE,
                                 f"{DEV_PHRASE}//Charlie"])
def test_the_development_accounts_are_dev_keys(uri: str) -> None:
    assert is_dev_key(uri, Keypair.create_from_uri(uri))


def test_a_dev_key_given_as_its_raw_seed_is_still_a_dev_key() -> None:
    # //Alice's well-known sr25519 mini-secret, as an operator might paste it from the docs.
    alice = Keypair.create_from_uri("//Alice")
    seed = "0xe5be9a5092b81bca64be81d212e7f2f9eba183bb7a90954f7b76361f6edb5c0a"
    assert Keypair.create_from_seed(seed).public_key == alice.public_key
    assert is_dev_key(seed, Keypair.create_from_seed(seed))


def test_a_key_of_its_own_is_not_a_dev_key() -> None:
    mnemonic = Keypair.generate_mnemonic()
    assert not is_dev_key(mnemonic, Keypair.create_from_uri(mnemonic))
    assert not is_dev_key(f"{mnemonic}//settler", Keypair.create_from_uri(f"{mnemonic}//settler"))


@pytest.mark.parametrize(("chain_type", "dev"), [("Development", True), ("Local", True), ("Live", False),
                                                 (None, False), ("", False), ("development", False)])
def test_only_a_node_that_says_development_or_local_is_a_dev_chain(chain_type: str | None, dev: bool) -> None:
    assert is_dev_chain(chain_type) is dev


def test_alice_is_refused_against_a_live_chain_and_accepted_on_a_dev_chain() -> None:
    alice = Keypair.create_from_uri("//Alice")
    with pytest.raises(DevKeyOnLiveChain, match="development key"):
        check_signer("//Alice", alice, "Live", "settler")
    with pytest.raises(DevKeyOnLiveChain, match="unknown"):
        check_signer("//Alice", alice, None, "anchorer")  # a node that does not say counts as live
    check_signer("//Alice", alice, "Development", "settler")
    own = Keypair.generate_mnemonic()
    check_signer(own, Keypair.create_from_uri(own), "Live", "settler")
