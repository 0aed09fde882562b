"""The ledger processes' own chain keys (the anchorer's, the settler's), from a keystore file, never
from logs or the repository.

The keystore maps a role ("anchorer", "settler") or a participant's own name to a secret URI (a
mnemonic or `0x…` seed, optionally with a derivation path). The file must be readable by its owner
only. The settler holds no participant's key: participants authorise it with their own key file
(`citygrid ledger authorize --key-file`).
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
    """Secret URIs by name; the secrets are never part of repr or str."""

    def __init__(self, secrets: dict[str, str] | None = None) -> None:
        self._secrets = dict(secrets or {})
        self._pairs: dict[str, Keypair] = {}

    @classmethod
    def load(cls, path: Path) -> Keystore:
        """Read a keystore file, refusing one that others can read; a missing file is an empty keystore."""
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
        if not isinstance(data, dict):
            raise KeystoreError(f"{path} is not a JSON object of name → secret URI")
        return cls({str(k): str(v) for k, v in data.items()})

    def save(self, path: Path) -> None:
        """Write the keystore, readable by its owner only."""
        atomic_write(Path(path), json.dumps(self._secrets), mode=0o600)

    def add(self, name: str, secret_uri: str) -> Keypair:
        """Register a secret and return its keypair."""
        self._secrets[name] = secret_uri
        self._pairs.pop(name, None)
        return self.keypair(name)

    def holds(self, name: str) -> bool:
        """True if the keystore has a key for `name`."""
        return bool(self._secrets.get(name))

    def secret(self, name: str) -> str:
        """The secret URI of `name` (for the dev-key rule; never logged)."""
        if not self.holds(name):
            raise KeystoreError(f"no key for {name!r} in the keystore")
        return self._secrets[name]

    def only(self, *names: str) -> Keystore:
        """A keystore holding just these entries (what one process may hold of a test's keys)."""
        return Keystore({n: self._secrets[n] for n in names if n in self._secrets})

    def keypair(self, name: str) -> Keypair:
        """The signing keypair of `name`."""
        if name not in self._pairs:
            self._pairs[name] = keypair_from_uri(self.secret(name), f"the key of {name!r}")
        return self._pairs[name]

    def __repr__(self) -> str:
        return f"Keystore({len(self._secrets)} keys)"
