"""The anchorer's and the settler's own chain keys, and the rule that keeps dev keys off real chains.

A signer comes from the keystore file (its "anchorer" or "settler" entry, the file readable by its
owner only) or, failing that, from CITYGRID_CHAIN__SIGNER_URI (in Kubernetes, a Secret's key `uri`).

The rule: a process refuses to start when its signer is a well-known development key and the node
it talks to is not a development chain. A development key is any key derived from Substrate's public
development phrase (//Alice, //Bob, //Alice//stash, …: a secret URI with no phrase of its own, or
that phrase spelt out), or whose public key is one of those. A development chain is one whose node
answers `system_chainType` with "Development" or "Local" (the local Chopsticks chain answers
"Development"); a live network answers "Live", and a node that does not answer counts as live.
"""

from __future__ import annotations

from functools import lru_cache

from substrateinterface import Keypair

from citygrid.ledger.errors import LedgerError
from citygrid.ledger.keystore import Keystore, keypair_from_uri
from citygrid.settings import CitygridSettings

DEV_PHRASE = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
DEV_ACCOUNTS = ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie", "One", "Two")
DEV_CHAIN_TYPES = frozenset({"Development", "Local"})


class DevKeyOnLiveChain(LedgerError, reason="dev_key"):
    """A well-known development key would sign on a chain that is not a development chain."""


@lru_cache(maxsize=1)
def dev_public_keys() -> frozenset[bytes]:
    """The public keys of the development accounts (each plain and //stash, sr25519)."""
    uris = [f"//{n}" for n in DEV_ACCOUNTS] + [f"//{n}//stash" for n in DEV_ACCOUNTS] + [DEV_PHRASE]
    return frozenset(Keypair.create_from_uri(u).public_key for u in uris)


def is_dev_key(secret_uri: str, keypair: Keypair) -> bool:
    """True if the key is derived from the public development phrase, or is a development account's."""
    phrase = secret_uri.strip().split("/", 1)[0].strip()
    return phrase in ("", DEV_PHRASE) or keypair.public_key in dev_public_keys()


def is_dev_chain(chain_type: str | None) -> bool:
    """True if the node's `system_chainType` answer names a development chain."""
    return chain_type in DEV_CHAIN_TYPES


def check_signer(secret_uri: str, keypair: Keypair, chain_type: str | None, role: str) -> None:
    """Raise DevKeyOnLiveChain if a development key would sign on a chain that is not a dev chain."""
    if is_dev_key(secret_uri, keypair) and not is_dev_chain(chain_type):
        raise DevKeyOnLiveChain(
            f"the {role}'s signer is a well-known development key and the chain's type is "
            f"{chain_type or 'unknown'}, not Development or Local: anyone could sign as it. Give the "
            f"{role} its own key (the keystore's {role!r} entry, or CITYGRID_CHAIN__SIGNER_URI from a "
            "Secret)")


def signer_uri(s: CitygridSettings, role: str) -> str:
    """The secret URI the `role` ("anchorer" or "settler") signs with: keystore first, then settings."""
    keystore = Keystore.load(s.paths.keystore)
    if keystore.holds(role):
        return keystore.secret(role)
    return s.chain.signer_uri


def role_keypair(s: CitygridSettings, role: str, chain_type: str | None) -> Keypair:
    """The `role`'s keypair; DevKeyOnLiveChain if it is a dev key and the chain is not a dev chain."""
    uri = signer_uri(s, role)
    where = f"the keystore's {role!r} entry" if Keystore.load(s.paths.keystore).holds(role) \
        else "CITYGRID_CHAIN__SIGNER_URI"
    keypair = keypair_from_uri(uri, where)
    check_signer(uri, keypair, chain_type, role)
    return keypair
