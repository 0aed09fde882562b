"""Putting an extrinsic on chain at most once, across crashes and takeovers.

The signed bytes and their nonce are stored before they leave the process. Whoever resumes (the same
process after a restart, or the standby after a takeover) looks for those bytes on chain first; if
the account's nonce has not moved past them, it hands the *same bytes* to the pool again, which the
chain can include at most once (an immortal extrinsic with a fixed nonce). Only when the nonce was
used by something else are the bytes dead, and the caller signs afresh. Signing anew on every
attempt would be the mistake: a crash between submission and the store's update would then put the
same anchor or payment on chain twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from substrateinterface import Keypair

from citygrid.ledger.chain import ChainClient, Inclusion, extrinsic_hash

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SignedExtrinsic:
    """Signed bytes as stored before submission, with where to start looking for them."""

    nonce: int
    extrinsic: bytes
    ext_hash: str
    from_block: int


def sign(chain: ChainClient, call: Any, keypair: Keypair, nonce: int) -> SignedExtrinsic:
    """Sign `call` with an explicit nonce; the caller stores the result before submitting it."""
    from_block = chain.head_number()
    ext = chain.sign_call(call, keypair, nonce)
    return SignedExtrinsic(nonce, ext, extrinsic_hash(ext), from_block)


def include(chain: ChainClient, signed: SignedExtrinsic, what: str, timeout_s: float = 60.0) -> Inclusion:
    """Hand the bytes to the pool (again, harmlessly, if they are there) and wait for their block."""
    chain.submit_raw(signed.extrinsic, what)
    return chain.wait_included(signed.ext_hash, signed.from_block, timeout_s)


def recover(chain: ChainClient, signed: SignedExtrinsic, address: str,
            resubmit: Callable[[], Inclusion]) -> Inclusion | None:
    """Where stored bytes landed, or `resubmit()` (the same bytes again: `include`) if they may still
    land; None if they never can (their nonce went to another extrinsic): then sign afresh."""
    chain_nonce = chain.next_nonce(address)  # read before searching, so an inclusion in between is found
    found = chain.find_extrinsic(signed.ext_hash, signed.from_block)
    if found is not None:
        log.info("extrinsic_found_on_chain", extrinsic=signed.ext_hash, block=found.block_hash)
        return found
    if chain_nonce > signed.nonce:
        log.warning("extrinsic_nonce_taken", extrinsic=signed.ext_hash, nonce=signed.nonce)
        return None
    log.info("extrinsic_resubmitted", extrinsic=signed.ext_hash, nonce=signed.nonce)
    return resubmit()
