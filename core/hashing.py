"""The hash functions citygrid shares with Substrate: BLAKE2b-256 (block, extrinsic and remark hashes)."""

from __future__ import annotations

import hashlib


def blake2_256(data: bytes) -> bytes:
    """BLAKE2b with a 32-byte digest, Substrate's `blake2_256`."""
    return hashlib.blake2b(data, digest_size=32).digest()


def blake2_256_hex(data: bytes) -> str:
    """`blake2_256` as 0x-prefixed hex, the form Substrate RPCs use for hashes."""
    return "0x" + blake2_256(data).hex()
