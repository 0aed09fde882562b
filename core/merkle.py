"""Binary Merkle trees over reading bodies, with inclusion proofs anyone can check.

Leaves and inner nodes are hashed under different prefixes (0x00 / 0x01) so an
inner node can never be passed off as a leaf (second-preimage attack). An odd
node at the end of a level is promoted unchanged rather than paired with a copy
of itself, so two different leaf lists can never share a root (the duplicated-
leaf ambiguity of Bitcoin's tree, CVE-2012-2459).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """The hash of one leaf's bytes."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an inner node."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


@dataclass(frozen=True)
class ProofStep:
    """A sibling hash and whether it sits left of the running hash."""

    sibling: bytes
    sibling_is_left: bool


class MerkleTree:
    """All levels of a tree, kept so that proofs for any leaf are cheap."""

    def __init__(self, leaves: list[bytes]) -> None:
        """Build from leaf *data* (each is hashed with the leaf prefix)."""
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        level = [leaf_hash(x) for x in leaves]
        self.levels: list[list[bytes]] = [level]
        while len(level) > 1:
            nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            self.levels.append(nxt)
            level = nxt

    @property
    def root(self) -> bytes:
        """The 32-byte root."""
        return self.levels[-1][0]

    def __len__(self) -> int:
        return len(self.levels[0])

    def proof(self, index: int) -> list[ProofStep]:
        """The sibling path from leaf `index` up to the root."""
        if not 0 <= index < len(self):
            raise IndexError(f"leaf {index} is not in a tree of {len(self)}")
        steps: list[ProofStep] = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                steps.append(ProofStep(level[sibling], sibling_is_left=sibling < index))
            index //= 2
        return steps


def root_from_proof(leaf_data: bytes, proof: list[ProofStep]) -> bytes:
    """Recompute the root a proof leads to from a leaf's data."""
    h = leaf_hash(leaf_data)
    for step in proof:
        h = node_hash(step.sibling, h) if step.sibling_is_left else node_hash(h, step.sibling)
    return h


def verify_proof(leaf_data: bytes, proof: list[ProofStep], root: bytes) -> bool:
    """True if `leaf_data` is included under `root`."""
    return root_from_proof(leaf_data, proof) == root
