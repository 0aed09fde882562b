"""Per-device ed25519 keys and the device registry.

A device's id is derived from its public key, so a reading cannot claim to
come from a device whose key it was not signed with, and ids never collide by
accident between fleets.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, replace
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


@dataclass(frozen=True)
class Enrolment:
    """What the operator enrolled a device as: its key, kind, district and owner, and whether (since
    when) it is revoked. A revoked device keeps its key, so readings anchored before still verify."""

    public_key: bytes
    kind: str | None = None  # None: an entry from before enrolment (key only)
    district: str | None = None
    owner: str | None = None
    revoked_at_ms: int | None = None

    @property
    def revoked(self) -> bool:
        """Whether the device's new readings must be refused."""
        return self.revoked_at_ms is not None

    def to_json(self) -> dict[str, object]:
        """The registry file's entry."""
        return {"key": self.public_key.hex(), "kind": self.kind, "district": self.district,
                "owner": self.owner, "revoked_at_ms": self.revoked_at_ms}

    @classmethod
    def from_json(cls, raw: object) -> Enrolment:
        """An entry of either format: the old bare hex key, or the enrolment object."""
        try:
            if isinstance(raw, str):
                return cls(bytes.fromhex(raw))
            if not isinstance(raw, dict):
                raise TypeError(f"entry is a {type(raw).__name__}")
            revoked = raw.get("revoked_at_ms")
            if revoked is not None and (isinstance(revoked, bool) or not isinstance(revoked, int)):
                raise TypeError("revoked_at_ms is not an integer")
            fields = {n: raw.get(n) for n in ("kind", "district", "owner")}
            if not all(v is None or isinstance(v, str) for v in fields.values()):
                raise TypeError("kind, district and owner must be strings")
            return cls(bytes.fromhex(raw["key"]), **fields, revoked_at_ms=revoked)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"unreadable registry entry: {exc}") from exc


class DeviceRegistry:
    """Known devices, their public keys and enrolments: the ingest's trust anchor.

    Stored as JSON {device_id: {key, kind, district, owner, revoked_at_ms}} (the older
    {device_id: public_key_hex} is still read); an entry whose id does not derive from its key is
    refused at load, so a tampered file is noticed. Revoking keeps the key.
    """

    def __init__(self, keys: dict[str, bytes] | None = None) -> None:
        self._entries: dict[str, Enrolment] = {}
        for device_id, public_key in (keys or {}).items():
            self._check(device_id, public_key)
            self._entries[device_id] = Enrolment(public_key)

    @staticmethod
    def _check(device_id: str, public_key: bytes) -> None:
        if device_id_for(public_key) != device_id:
            raise ConfigError(f"registry entry {device_id} does not match its public key")

    @classmethod
    def load(cls, path: Path) -> DeviceRegistry:
        """Read the registry file; a missing file is an empty registry."""
        path = Path(path)
        registry = cls()
        if not path.exists():
            return registry
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ConfigError(f"device registry {path} is not a JSON object")
        for device_id, entry in raw.items():
            enrolment = Enrolment.from_json(entry)
            cls._check(device_id, enrolment.public_key)
            registry._entries[device_id] = enrolment
        return registry

    def save(self, path: Path) -> None:
        """Write the registry atomically."""
        atomic_write(Path(path), json.dumps(
            {k: v.to_json() for k, v in sorted(self._entries.items())}, indent=1))

    def add(self, public_key: bytes, kind: str | None = None, district: str | None = None,
            owner: str | None = None) -> str:
        """Register (or re-enrol, which lifts a revocation) a public key; return its device id."""
        device_id = device_id_for(public_key)
        self._entries[device_id] = Enrolment(public_key, kind, district, owner)
        return device_id

    def revoke(self, device_id: str, at_ms: int) -> Enrolment:
        """Mark a device revoked from `at_ms` on, keeping its key; an earlier revocation stands."""
        entry = self.enrolment(device_id)
        if not entry.revoked:
            entry = replace(entry, revoked_at_ms=at_ms)
            self._entries[device_id] = entry
        return entry

    def enrolment(self, device_id: str) -> Enrolment:
        """The enrolment of a registered device (revoked ones included), or UnknownDevice."""
        try:
            return self._entries[device_id]
        except KeyError:
            raise UnknownDevice(f"device {device_id} is not registered") from None

    def public_key(self, device_id: str) -> bytes:
        """The key of a registered device (revoked ones included), or UnknownDevice."""
        return self.enrolment(device_id).public_key

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)
