"""Participants' chain keys, from a keystore file or the settings — never from logs or the repository.

The keystore maps a market participant's name to a secret URI (a mnemonic or
`0x…` seed, optionally with a derivation path). The file must be readable by
its owner only; keys given in `settlement.participant_keys`
(CITYGRID_SETTLEMENT__PARTICIPANT_KEYS, JSON) override it, so a deployment can
inject keys from its secret store.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

from substrateinterface import Keypair

from citygrid.ledger.errors import KeystoreError
from citygrid.storage import atomic_write


def keypair_from_uri(secret_uri: str, whose: str) -> Keypair:
    """The keypair of a secret URI; a bad one is a KeystoreError naming `whose` key, never the secret."""
    try:
        return Keypair.create_from_uri(secret_uri)
    except (ValueError, TypeError) as exc:
        # The library's message may echo the secret; do not pass it on.
        raise KeystoreError(f"{whose} is not a valid secret URI") from exc


class Keystore:
    """Secret URIs by participant; the secrets are never part of repr or str."""

    def __init__(self, secrets: dict[str, str] | None = None,
                 overrides: dict[str, str] | None = None) -> None:
        self._secrets = dict(secrets or {})
        # Keys from the settings (a deployment's secret store): they win over the file, never saved to it.
        self._overrides = dict(overrides or {})
        self._pairs: dict[str, Keypair] = {}

    @classmethod
    def load(cls, path: Path, overrides: dict[str, str] | None = None) -> Keystore:
        """Read a keystore file, refusing one that others can read; `overrides` win over its keys."""
        path = Path(path)
        if not path.exists():
            return cls(overrides=overrides)
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeystoreError(f"{path} is readable by others; run `chmod 600 {path}`")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise KeystoreError(f"{path} is not JSON ({exc.msg} at line {exc.lineno}); fix or recreate it") \
                from exc
        return cls({str(k): str(v) for k, v in data.items()}, overrides)

    def save(self, path: Path) -> None:
        """Write the keystore's file keys, readable by its owner only."""
        atomic_write(Path(path), json.dumps(self._secrets), mode=0o600)

    def add(self, participant: str, secret_uri: str) -> Keypair:
        """Register a participant's secret and return its keypair."""
        self._secrets[participant] = secret_uri
        self._pairs.pop(participant, None)
        return self.keypair(participant)

    def holds(self, participant: str) -> bool:
        """True if the keystore has a key for the participant (from the settings or the file)."""
        return bool(self._overrides.get(participant) or self._secrets.get(participant))

    def keypair(self, participant: str) -> Keypair:
        """The participant's signing keypair (the settings' key first, then the file's)."""
        if participant not in self._pairs:
            secret = self._overrides.get(participant) or self._secrets.get(participant)
            if not secret:
                raise KeystoreError(
                    f"no key for participant {participant!r}; add it to the keystore file or to "
                    "CITYGRID_SETTLEMENT__PARTICIPANT_KEYS (a JSON object of name → secret URI)"
                )
            self._pairs[participant] = keypair_from_uri(secret, f"the key of {participant!r}")
        return self._pairs[participant]

    def __repr__(self) -> str:
        return f"Keystore({len(self._secrets | self._overrides)} participants)"
