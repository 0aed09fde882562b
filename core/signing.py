"""Per-device ed25519 keys and the device registry.

A device's id is derived from its public key, so a reading cannot claim to
come from a device whose key it was not signed with, and ids never collide by
accident between fleets.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from citygrid.errors import BadSignature, ConfigError, UnknownDevice
from citygrid.storage import atomic_write


def device_id_for(public_key: bytes) -> str:
    """Derive the device id: 'd' + base32 of a 10-byte BLAKE2b digest of the key."""
    digest = hashlib.blake2b(public_key, digest_size=10).digest()
    return "d" + base64.b32encode(digest).decode().lower()


@dataclass(frozen=True)
class DeviceKey:
    """A device's signing key; the secret never leaves this object except to its key file."""

    signing_key: SigningKey

    @classmethod
    def generate(cls) -> DeviceKey:
        """A fresh random key."""
        return cls(SigningKey.generate())

    @classmethod
    def load(cls, path: Path) -> DeviceKey:
        """Read a key file written by `save` (hex seed)."""
        try:
            seed = bytes.fromhex(Path(path).read_text().strip())
            return cls(SigningKey(seed))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read device key {path}: {exc}") from exc

    def save(self, path: Path) -> None:
        """Write the seed readable by the owner only."""
        atomic_write(Path(path), bytes(self.signing_key).hex(), mode=0o600)

    @property
    def public_key(self) -> bytes:
        """The 32-byte ed25519 public key."""
        return bytes(self.signing_key.verify_key)

    @property
    def device_id(self) -> str:
        """The id derived from the public key."""
        return device_id_for(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """A detached 64-byte signature."""
        return self.signing_key.sign(message).signature

    def __repr__(self) -> str:
        return f"DeviceKey(device_id={self.device_id!r})"


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise BadSignature unless `signature` signs `message` under `public_key`."""
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError) as exc:
        raise BadSignature("signature does not match the device's registered key") from exc


class DeviceRegistry:
    """Known devices and their public keys: the ingest's trust anchor.

    Stored as JSON {device_id: public_key_hex}; an entry whose id does not
    derive from its key is refused at load, so a tampered file is noticed.
    """

    def __init__(self, keys: dict[str, bytes] | None = None) -> None:
        self._keys: dict[str, bytes] = {}
        for device_id, public_key in (keys or {}).items():
            self._check(device_id, public_key)
            self._keys[device_id] = public_key

    @staticmethod
    def _check(device_id: str, public_key: bytes) -> None:
        if device_id_for(public_key) != device_id:
            raise ConfigError(f"registry entry {device_id} does not match its public key")

    @classmethod
    def load(cls, path: Path) -> DeviceRegistry:
        """Read the registry file; a missing file is an empty registry."""
        path = Path(path)
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        return cls({k: bytes.fromhex(v) for k, v in raw.items()})

    def save(self, path: Path) -> None:
        """Write the registry atomically."""
        atomic_write(Path(path), json.dumps({k: v.hex() for k, v in sorted(self._keys.items())}, indent=1))

    def add(self, public_key: bytes) -> str:
        """Register a public key and return its device id."""
        device_id = device_id_for(public_key)
        self._keys[device_id] = public_key
        return device_id

    def public_key(self, device_id: str) -> bytes:
        """The key of a registered device, or UnknownDevice."""
        try:
            return self._keys[device_id]
        except KeyError:
            raise UnknownDevice(f"device {device_id} is not registered") from None

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)
