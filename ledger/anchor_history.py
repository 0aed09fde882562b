"""Reading anchored roots back from the chain's events, so what the anchor store says can be checked."""

from __future__ import annotations

from citygrid.ledger.anchor_store import Batch
from citygrid.ledger.chain import ChainClient, Inclusion
from citygrid.ledger.remarks import parse_anchor_remark, remark_hash


def anchor_problem(chain: ChainClient, batch: Batch, anchor_public_key: str) -> str | None:
    """What the chain's events contradict about an anchored batch, or None if they confirm it."""
    if not batch.anchored:
        return "the batch is not anchored yet"
    try:
        _, count, root = parse_anchor_remark(batch.remark)
    except ValueError as exc:
        return f"the stored remark is not an anchor remark: {exc}"
    if root != batch.root or count != batch.count:
        return "the stored remark names a different root or count than the batch"
    if not chain.is_canonical(batch.block_hash, batch.block_number):
        return f"block {batch.block_hash} is not on the chain at #{batch.block_number}"
    remarked = [(sender, h) for idx, sender, h in chain.remarked(batch.block_hash)
                if idx == batch.extrinsic_index]
    if not remarked:
        return f"no System.Remarked event from extrinsic {batch.extrinsic_index} of {batch.block_hash}"
    sender, got = remarked[0]
    if sender.lower() != anchor_public_key.lower():
        return f"the remark was made by {sender}, not the anchorer {anchor_public_key}"
    if got != remark_hash(batch.remark):
        return "the remark on chain is not this batch's (its hash differs)"
    error = chain.dispatch_error(Inclusion(batch.block_hash, batch.block_number, batch.extrinsic_index))
    return f"the anchor extrinsic failed: {error}" if error else None
