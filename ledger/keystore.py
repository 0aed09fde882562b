"""Participants' chain keys, from a keystore file or the environment — never from logs or the repository.

The keystore maps a market participant's name to a secret URI (a mnemonic or
`0x…` seed, optionally with a derivation path). The file must be readable by
its owner only; `CITYGRID_KEY_<PARTICIPANT>` environment variables override it,
so a deployment can inject keys from its secret store.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from substrateinterface import Keypair

from citygrid.ledger.errors import KeystoreError

ENV_PREFIX = "CITYGRID_KEY_"


def _env_name(participant: str) -> str:
    return ENV_PREFIX + "".join(c if c.isalnum() else "_" for c in participant).upper()


class Keystore:
    """Secret URIs by participant; the secrets are never part of repr or str."""

    def __init__(self, secrets: dict[str, str] | None = None) -> None:
        self._secrets = dict(secrets or {})
        self._pairs: dict[str, Keypair] = {}

    @classmethod
    def load(cls, path: Path) -> Keystore:
        """Read a keystore file, refusing one that others can read."""
        path = Path(path)
        if not path.exists():
            return cls()
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeystoreError(f"{path} is readable by others; run `chmod 600 {path}`")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise KeystoreError(f"{path} is not JSON ({exc.msg} at line {exc.lineno}); fix or recreate it") \
                from exc
        return cls({str(k): str(v) for k, v in data.items()})

    def save(self, path: Path) -> None:
        """Write the keystore readable by its owner only."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self._secrets, f)

    def add(self, participant: str, secret_uri: str) -> Keypair:
        """Register a participant's secret and return its keypair."""
        self._secrets[participant] = secret_uri
        self._pairs.pop(participant, None)
        return self.keypair(participant)

    def keypair(self, participant: str) -> Keypair:
        """The participant's signing keypair (environment first, then the file)."""
        if participant not in self._pairs:
            secret = os.environ.get(_env_name(participant)) or self._secrets.get(participant)
            if not secret:
                raise KeystoreError(
                    f"no key for participant {participant!r}; add it to the keystore file or set "
                    f"{_env_name(participant)}"
                )
            try:
                self._pairs[participant] = Keypair.create_from_uri(secret)
            except (ValueError, TypeError) as exc:
                # The library's message may echo the secret; do not pass it on.
                raise KeystoreError(f"the key of {participant!r} is not a valid secret URI") from exc
        return self._pairs[participant]

    def public_key(self, participant: str) -> bytes:
        """The participant's public key."""
        return self.keypair(participant).public_key

    def participants(self) -> list[str]:
        """Participants with a key in the file."""
        return sorted(self._secrets)

    def __repr__(self) -> str:
        return f"Keystore({len(self._secrets)} participants)"
