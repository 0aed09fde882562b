"""Inclusion proofs for single readings, as self-contained JSON bundles.

A bundle carries the signed reading, the device's public key, the Merkle
path and where the root was anchored, so anyone with a connection to the
chain (and no access to citygrid's servers) can check that the reading was
signed by that device and anchored, unchanged, in that block. A bundle that
also carries the block's header and body (block_evidence) can be checked with
no network at all, given the anchorer's public key.
"""

from __future__ import annotations

from pydantic import BaseModel

from citygrid.errors import ReadingRejected
from citygrid.ledger.anchor_store import AnchorStore
from citygrid.ledger.block_evidence import BlockEvidence, check_anchor_extrinsic, check_block, fetch_evidence
from citygrid.ledger.chain import ChainClient
from citygrid.ledger.errors import ExtrinsicFailed, ProofInvalid
from citygrid.ledger.remarks import anchor_remark, parse_anchor_remark
from citygrid.merkle import MerkleTree, ProofStep, root_from_proof
from citygrid.reading import Reading, SignedReading
from citygrid.signing import device_id_for, verify_signature


class PathStep(BaseModel):
    """One sibling on the way to the root."""

    sibling: str
    left: bool


class ProofBundle(BaseModel):
    """Everything needed to verify one reading against the chain."""

    version: int = 1
    envelope: str
    device_public_key: str
    leaf_index: int
    leaf_count: int
    path: list[PathStep]
    root: str
    interval_start_ms: int
    block_hash: str
    block_number: int
    extrinsic_index: int
    block: BlockEvidence | None = None

    def signed(self) -> SignedReading:
        """The signed reading this bundle is about."""
        return SignedReading.decode(bytes.fromhex(self.envelope))

    def steps(self) -> list[ProofStep]:
        """The path as merkle.ProofStep values."""
        return [ProofStep(bytes.fromhex(p.sibling), p.left) for p in self.path]


def build_bundle(store: AnchorStore, device: str, seq: int, public_key: bytes,
                 chain: ChainClient | None = None, trees: dict[int, MerkleTree] | None = None) -> ProofBundle:
    """Cut the proof of one anchored reading out of the anchor store; with a chain, add the block
    evidence that lets it be verified offline. `trees` keeps each batch's tree between calls, so
    proving many readings of one batch (the delivery check) builds its tree once."""
    batch, index = store.locate(device, seq)
    if not batch.anchored:
        raise ProofInvalid(f"reading {device}/{seq} is batched but its root is not on chain yet")
    trees = {} if trees is None else trees
    if batch.id not in trees:
        trees[batch.id] = MerkleTree(store.leaves(batch.id))
    tree = trees[batch.id]
    envelope = store.envelope(device, seq)
    evidence = None
    if chain is not None:
        evidence = fetch_evidence(chain, batch.block_hash, batch.block_number, batch.extrinsic_index,
                                  batch.remark)
    return ProofBundle(
        envelope=envelope.hex(), device_public_key=public_key.hex(),
        leaf_index=index, leaf_count=len(tree),
        path=[PathStep(sibling=s.sibling.hex(), left=s.sibling_is_left) for s in tree.proof(index)],
        root=tree.root.hex(), interval_start_ms=batch.interval_start_ms,
        block_hash=batch.block_hash, block_number=batch.block_number,
        extrinsic_index=batch.extrinsic_index, block=evidence,
    )


def check_offline(bundle: ProofBundle) -> Reading:
    """The checks that need no chain: signature, device id, Merkle path to the stated root."""
    try:
        signed = bundle.signed()
        reading = signed.reading()
        public_key = bytes.fromhex(bundle.device_public_key)
        if device_id_for(public_key) != reading.device:
            raise ProofInvalid(f"public key does not belong to device {reading.device}")
        verify_signature(public_key, signed.body, signed.signature)
    except ReadingRejected as exc:
        raise ProofInvalid(f"the reading itself is not valid: {exc}") from exc
    if root_from_proof(signed.encode(), bundle.steps()) != bytes.fromhex(bundle.root):
        raise ProofInvalid("the Merkle path does not lead to the anchored root")
    return reading


def verify_on_chain(bundle: ProofBundle, chain: ChainClient, anchor_public_key: str) -> Reading:
    """Check a bundle fully: offline checks, then that the root is on chain, signed by the anchorer."""
    reading = check_offline(bundle)
    if not chain.is_canonical(bundle.block_hash, bundle.block_number):
        raise ProofInvalid(f"block {bundle.block_hash} is not on the chain at #{bundle.block_number}")
    try:
        remark = chain.read_remark(bundle.block_hash, bundle.extrinsic_index)
    except ExtrinsicFailed as exc:
        raise ProofInvalid(str(exc)) from exc
    if remark.signer_public_key.lower() != anchor_public_key.lower():
        raise ProofInvalid(
            f"the root was put on chain by {remark.signer_public_key}, not the anchorer "
            f"{anchor_public_key}"
        )
    try:
        _, count, root = parse_anchor_remark(remark.text)
    except ValueError as exc:
        raise ProofInvalid(str(exc)) from exc
    if root.hex() != bundle.root or count != bundle.leaf_count:
        raise ProofInvalid("the on-chain root differs from the bundle's root")
    return reading


def verify_offline(bundle: ProofBundle, anchor_public_key: str, genesis_hash: str | None = None) -> tuple[
        Reading, str]:
    """Check a bundle with no network: reading, Merkle path, then the saved block and the anchor's
    signature; returns the reading and how the header commits to the extrinsics."""
    reading = check_offline(bundle)
    if bundle.block is None:
        raise ProofInvalid("this bundle carries no block evidence; export it again with "
                           "`citygrid ledger proof` while the chain is reachable, or verify it online")
    if genesis_hash and bundle.block.genesis_hash.lower() != genesis_hash.lower():
        raise ProofInvalid(f"the anchor was signed for chain {bundle.block.genesis_hash}, not {genesis_hash}")
    _, scheme = check_block(bundle.block, bundle.block_hash, bundle.block_number)
    text = anchor_remark(bundle.interval_start_ms, bundle.leaf_count, bytes.fromhex(bundle.root))
    try:
        anchorer = bytes.fromhex(anchor_public_key.removeprefix("0x"))
    except ValueError as exc:
        raise ProofInvalid(f"the anchorer key {anchor_public_key!r} is not hex") from exc
    check_anchor_extrinsic(bundle.block, bundle.extrinsic_index, text, anchorer)
    return reading, scheme
