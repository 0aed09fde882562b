"""Merkle trees: every leaf's proof verifies, nothing else does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citygrid.merkle import (
    MerkleTree,
    ProofStep,
    leaf_hash,
    node_hash,
    root_from_proof,
    verify_proof,
)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_every_leaf_proves_into_the_root(n: int) -> None:
    leaves = [f"reading-{i}".encode() for i in range(n)]
    tree = MerkleTree(leaves)
    for i, leaf in enumerate(leaves):
        assert verify_proof(leaf, tree.proof(i), tree.root)


def test_single_leaf_root_is_its_leaf_hash() -> None:
    assert MerkleTree([b"x"]).root == leaf_hash(b"x")


def test_tampered_leaf_or_path_fails() -> None:
    leaves = [bytes([i]) * 10 for i in range(6)]
    tree = MerkleTree(leaves)
    proof = tree.proof(3)
    assert not verify_proof(b"forged", proof, tree.root)
    bad = [ProofStep(bytes(32), s.sibling_is_left) if k == 0 else s for k, s in enumerate(proof)]
    assert not verify_proof(leaves[3], bad, tree.root)
    flipped = [ProofStep(s.sibling, not s.sibling_is_left) for s in proof]
    assert not verify_proof(leaves[3], flipped, tree.root)


def test_an_inner_node_cannot_pass_as_a_leaf() -> None:
    # Without domain separation, left||right of a level-1 node would be a valid "leaf".
    leaves = [b"a", b"b", b"c", b"d"]
    tree = MerkleTree(leaves)
    inner = leaf_hash(b"a") + leaf_hash(b"b")
    right = ProofStep(node_hash(leaf_hash(b"c"), leaf_hash(b"d")), False)
    assert root_from_proof(inner, [right]) != tree.root


def test_odd_leaf_is_not_duplicated() -> None:
    # Bitcoin's tree gives [a, b, c] and [a, b, c, c] the same root; ours must not.
    assert MerkleTree([b"a", b"b", b"c"]).root != MerkleTree([b"a", b"b", b"c", b"c"]).root


def test_empty_tree_and_bad_index_are_refused() -> None:
    with pytest.raises(ValueError):
        MerkleTree([])
    with pytest.raises(IndexError):
        MerkleTree([b"a"]).proof(1)


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=70), st.data())
def test_property_proofs_verify_and_do_not_transfer(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    assert verify_proof(leaves[i], tree.proof(i), tree.root)
    other = data.draw(st.binary(max_size=40))
    if other != leaves[i]:
        assert not verify_proof(other, tree.proof(i), tree.root)
