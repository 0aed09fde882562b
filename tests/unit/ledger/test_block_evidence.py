"""Offline checks of a real anchor extrinsic saved from the dev chain, and of forgeries of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citygrid.hashing import blake2_256
from citygrid.ledger.block_evidence import (
    BlockEvidence,
    check_anchor_extrinsic,
    check_block,
    era_birth,
    remark_call,
)
from citygrid.ledger.errors import ProofInvalid
from citygrid.ledger.substrate_trie import compact

BLOCK = json.loads((Path(__file__).parent / "data" / "substrate_trie_vectors.json").read_text())[
    "chopsticks_block"]
ANCHOR = BLOCK["anchor"]
BOB = bytes.fromhex("8eaf04151687736326c9fea17e25fc5287613693c912909cb226aa4794f26a48")


def evidence() -> BlockEvidence:
    return BlockEvidence(**ANCHOR["evidence"])


def anchorer() -> bytes:
    return bytes.fromhex(ANCHOR["anchorer"][2:])


def reseal(ev: BlockEvidence, extrinsics: list[bytes]) -> tuple[BlockEvidence, str]:
    """A self-consistent block around forged extrinsics: new extrinsicsRoot, header and hash."""
    header = bytes.fromhex(ev.header[2:])
    root = blake2_256(b"".join(extrinsics))
    pos = 32 + len(compact(ANCHOR["number"])) + 32
    header = header[:pos] + root + header[pos + 32:]
    forged = ev.model_copy(update={"header": "0x" + header.hex(),
                                   "extrinsics": ["0x" + x.hex() for x in extrinsics]})
    return forged, "0x" + blake2_256(header).hex()


def test_the_real_anchor_checks_out() -> None:
    ev = evidence()
    _, scheme = check_block(ev, BLOCK["hash"], ANCHOR["number"])
    assert scheme == "chopsticks-blake2-concat"
    check_anchor_extrinsic(ev, ANCHOR["extrinsic_index"], ANCHOR["remark"], anchorer())


def test_a_changed_header_no_longer_hashes_to_the_block() -> None:
    ev = evidence()
    tampered = ev.model_copy(update={"header": ev.header[:-2] + ("00" if ev.header[-2:] != "00" else "01")})
    with pytest.raises(ProofInvalid, match="does not hash to block"):
        check_block(tampered, BLOCK["hash"], ANCHOR["number"])
    with pytest.raises(ProofInvalid, match="not #"):
        check_block(ev, BLOCK["hash"], ANCHOR["number"] + 1)


def test_a_changed_extrinsic_list_is_not_the_committed_one() -> None:
    ev = evidence()
    with pytest.raises(ProofInvalid, match="not the ones the block header commits to"):
        check_block(ev.model_copy(update={"extrinsics": ev.extrinsics[:-1]}), BLOCK["hash"], ANCHOR["number"])


def test_another_remark_or_signer_is_refused() -> None:
    ev = evidence()
    other = ANCHOR["remark"][:-1] + ("0" if ANCHOR["remark"][-1] != "0" else "1")
    with pytest.raises(ProofInvalid, match="not the anchor remark"):
        check_anchor_extrinsic(ev, ANCHOR["extrinsic_index"], other, anchorer())
    with pytest.raises(ProofInvalid, match="not the anchorer"):
        check_anchor_extrinsic(ev, ANCHOR["extrinsic_index"], ANCHOR["remark"], BOB)
    with pytest.raises(ProofInvalid, match="no extrinsic"):
        check_anchor_extrinsic(ev, 99, ANCHOR["remark"], anchorer())
    with pytest.raises(ProofInvalid, match="not a signed v4"):
        check_anchor_extrinsic(ev, 0, ANCHOR["remark"], anchorer())  # the unsigned timestamp inherent


def test_a_forged_signature_fails_even_in_a_consistent_block() -> None:
    # Without the signature check a forger could build a whole block around a remark naming the
    # anchorer: the header and commitment would check out.
    ev = evidence()
    exts = [bytes.fromhex(x[2:]) for x in ev.extrinsics]
    idx = ANCHOR["extrinsic_index"]
    remark = exts[idx]
    sig_at = remark.index(anchorer()) + 33
    exts[idx] = remark[:sig_at] + bytes([remark[sig_at] ^ 1]) + remark[sig_at + 1:]
    forged, block_hash = reseal(ev, exts)
    check_block(forged, block_hash, ANCHOR["number"])
    with pytest.raises(ProofInvalid, match="signature does not verify"):
        check_anchor_extrinsic(forged, idx, ANCHOR["remark"], anchorer())


def test_a_remark_rewritten_under_the_same_signature_fails() -> None:
    ev = evidence()
    exts = [bytes.fromhex(x[2:]) for x in ev.extrinsics]
    idx = ANCHOR["extrinsic_index"]
    other = ANCHOR["remark"][:-1] + ("0" if ANCHOR["remark"][-1] != "0" else "1")
    exts[idx] = exts[idx].replace(remark_call(ANCHOR["remark"]), remark_call(other))
    forged, block_hash = reseal(ev, exts)
    check_block(forged, block_hash, ANCHOR["number"])
    with pytest.raises(ProofInvalid, match="signature does not verify"):
        check_anchor_extrinsic(forged, idx, other, anchorer())


def test_signed_parameters_of_another_chain_fail() -> None:
    ev = evidence().model_copy(update={"genesis_hash": "0x" + "11" * 32})
    with pytest.raises(ProofInvalid, match="signature does not verify"):
        check_anchor_extrinsic(ev, ANCHOR["extrinsic_index"], ANCHOR["remark"], anchorer())


def test_era_birth() -> None:
    assert era_birth(b"\x00", 1234) is None
    # period 64, phase 10 (encoded as in Substrate's Era::mortal(64, 10)).
    encoded = (10 << 4 | 5).to_bytes(2, "little")
    assert era_birth(encoded, 80) == 74
    assert era_birth(encoded, 74) == 74
