"""A block's header and body, saved so an anchor remark can be checked later without any node.

What is checked offline, in order: the header hashes to the block hash the bundle names; the saved
extrinsics are exactly those the header commits to (extrinsicsRoot); the extrinsic at the bundle's
index is a signed System.remark_with_event carrying the anchor text; and its sr25519 signature by
the anchorer's key verifies over the signing payload (call, extensions, and the "additional signed"
values saved here: spec and transaction versions, genesis hash, era block hash).

What it cannot show: that the block is final or on the canonical chain (that needs a finality proof
or a trusted block hash), and that the remark dispatched successfully (that needs a storage proof of
the block's events, which this dev chain cannot give; remark_with_event has no failure path for a
signed origin that paid its fee).
"""

from __future__ import annotations

from dataclasses import dataclass

import sr25519
from pydantic import BaseModel

from citygrid.hashing import blake2_256
from citygrid.ledger.chain import ChainClient
from citygrid.ledger.errors import ProofInvalid
from citygrid.ledger.substrate_trie import compact, ordered_trie_root, read_compact

# FRAME's System pallet is index 0 in every runtime built with construct_runtime, and
# remark_with_event is its call 7; the signature covers these bytes, so they cannot be swapped.
REMARK_WITH_EVENT = b"\x00\x07"
SIGNED_V4 = 0x84
ADDRESS_ID = 0x00  # MultiAddress::Id(AccountId32)
SR25519 = 0x01  # MultiSignature::Sr25519


class BlockEvidence(BaseModel):
    """The SCALE bytes of one block's header and extrinsics, and what the anchor's signature covers."""

    header: str
    extrinsics: list[str]
    spec_version: int
    transaction_version: int
    genesis_hash: str
    era_block_hash: str
    # Runtimes with CheckMetadataHash append Option<hash> (0x00 when disabled) to the payload.
    payload_suffix: str = ""

    def additional_signed(self) -> bytes:
        """The values the signer committed to without putting them in the extrinsic."""
        return (self.spec_version.to_bytes(4, "little") + self.transaction_version.to_bytes(4, "little")
                + _hex(self.genesis_hash) + _hex(self.era_block_hash) + _hex(self.payload_suffix))


@dataclass(frozen=True)
class Header:
    """The fields of a header this check needs."""

    parent_hash: bytes
    number: int
    state_root: bytes
    extrinsics_root: bytes


@dataclass(frozen=True)
class SignedExtrinsic:
    """A v4 signed extrinsic split into signer, signature and the rest (extensions + call)."""

    signer: bytes
    signature: bytes
    body: bytes


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.removeprefix("0x"))


def encode_header(header: dict) -> bytes:
    """SCALE bytes of a header as the node's JSON-RPC returns it."""
    logs = [_hex(item) for item in header["digest"]["logs"]]
    return (_hex(header["parentHash"]) + compact(int(header["number"], 16)) + _hex(header["stateRoot"])
            + _hex(header["extrinsicsRoot"]) + compact(len(logs)) + b"".join(logs))


def decode_header(data: bytes) -> Header:
    """The fixed fields of a SCALE-encoded header (the digest is left undecoded)."""
    if len(data) < 33:
        raise ProofInvalid("the saved block header is truncated")
    number, pos = read_compact(data, 32)
    if pos + 64 > len(data):
        raise ProofInvalid("the saved block header is truncated")
    return Header(data[:32], number, data[pos:pos + 32], data[pos + 32:pos + 64])


def commitment_scheme(extrinsics_root: bytes, extrinsics: list[bytes]) -> str | None:
    """Which scheme makes the header commit to these extrinsics, or None.

    Real Substrate nodes use the ordered trie (state version 0 or 1, after the runtime); the
    Chopsticks dev chain puts blake2-256 of the concatenated extrinsics there instead. Each is a
    binding commitment to the whole list, because every extrinsic carries its own length prefix.
    """
    for version in (0, 1):
        if ordered_trie_root(extrinsics, version) == extrinsics_root:
            return f"substrate-trie-v{version}"
    if blake2_256(b"".join(extrinsics)) == extrinsics_root:
        return "chopsticks-blake2-concat"
    return None


def split_signed(extrinsic: bytes) -> SignedExtrinsic:
    """The signer, signature and body of a v4 extrinsic signed by an sr25519 account id."""
    try:
        length, pos = read_compact(extrinsic, 0)
    except ValueError as exc:
        raise ProofInvalid("the anchor extrinsic is truncated") from exc
    if length != len(extrinsic) - pos:
        raise ProofInvalid("the anchor extrinsic's length prefix does not match its bytes")
    if len(extrinsic) < pos + 99 or extrinsic[pos] != SIGNED_V4:
        raise ProofInvalid("the anchor extrinsic is not a signed v4 extrinsic")
    if extrinsic[pos + 1] != ADDRESS_ID or extrinsic[pos + 34] != SR25519:
        raise ProofInvalid("the anchor extrinsic is not signed by an sr25519 account id")
    return SignedExtrinsic(extrinsic[pos + 2:pos + 34], extrinsic[pos + 35:pos + 99], extrinsic[pos + 99:])


def signing_payload(call: bytes, extensions: bytes, additional: bytes) -> bytes:
    """What an account signs for an extrinsic; long payloads are signed by their hash."""
    payload = call + extensions + additional
    return blake2_256(payload) if len(payload) > 256 else payload


def remark_call(text: str) -> bytes:
    """The encoded System.remark_with_event call carrying `text`."""
    raw = text.encode()
    return REMARK_WITH_EVENT + compact(len(raw)) + raw


def check_block(evidence: BlockEvidence, block_hash: str, block_number: int) -> tuple[Header, str]:
    """Header and scheme, after checking the header's hash and its commitment to the extrinsics."""
    header_bytes = _hex(evidence.header)
    if "0x" + blake2_256(header_bytes).hex() != block_hash.lower():
        raise ProofInvalid(f"the saved header does not hash to block {block_hash}")
    header = decode_header(header_bytes)
    if header.number != block_number:
        raise ProofInvalid(f"the saved header is of block #{header.number}, not #{block_number}")
    extrinsics = [_hex(x) for x in evidence.extrinsics]
    for i, x in enumerate(extrinsics):
        try:
            length, pos = read_compact(x, 0)
        except ValueError as exc:
            raise ProofInvalid(f"saved extrinsic {i} is truncated") from exc
        if length != len(x) - pos:
            raise ProofInvalid(f"saved extrinsic {i} does not match its length prefix")
    scheme = commitment_scheme(header.extrinsics_root, extrinsics)
    if scheme is None:
        raise ProofInvalid("the saved extrinsics are not the ones the block header commits to")
    return header, scheme


def check_anchor_extrinsic(evidence: BlockEvidence, index: int, remark: str, anchorer: bytes) -> None:
    """Raise ProofInvalid unless extrinsic `index` is `remark`, signed by `anchorer`."""
    if not 0 <= index < len(evidence.extrinsics):
        raise ProofInvalid(f"the block has no extrinsic {index}")
    ext = split_signed(_hex(evidence.extrinsics[index]))
    call = remark_call(remark)
    if not ext.body.endswith(call):
        raise ProofInvalid(f"extrinsic {index} is not the anchor remark of this bundle's root and count")
    if ext.signer != anchorer:
        raise ProofInvalid(f"the root was put on chain by 0x{ext.signer.hex()}, not the anchorer "
                           f"0x{anchorer.hex()}")
    payload = signing_payload(call, ext.body[:-len(call)], evidence.additional_signed())
    try:
        valid = sr25519.verify(ext.signature, payload, ext.signer)
    except ValueError as exc:
        raise ProofInvalid(f"the anchor extrinsic's signature is malformed: {exc}") from exc
    if not valid:
        raise ProofInvalid("the anchor extrinsic's signature does not verify over its call, extensions "
                           "and the saved chain parameters")


def era_birth(era: bytes, block_number: int) -> int | None:
    """The block a mortal era's hash is taken from, or None for an immortal extrinsic."""
    if era[:1] == b"\x00":
        return None
    encoded = int.from_bytes(era[:2], "little")
    period = 2 << (encoded % 16)
    phase = (encoded >> 4) * max(period >> 12, 1)
    return (max(block_number, phase) - phase) // period * period + phase


def fetch_evidence(chain: ChainClient, block_hash: str, block_number: int, index: int,
                   remark: str) -> BlockEvidence:
    """Save what an offline check of the anchor at (block, index) needs, and check it once now."""
    block = chain.rpc("chain_getBlock", [block_hash])
    if block is None:
        raise ProofInvalid(f"block {block_hash} is not known to the chain at {chain.url}")
    version = chain.rpc("state_getRuntimeVersion", [block_hash])
    genesis = chain.rpc("chain_getBlockHash", [0])
    exts = block["block"]["extrinsics"]
    if not 0 <= index < len(exts):
        raise ProofInvalid(f"block {block_hash} has no extrinsic {index}")
    signed = split_signed(_hex(exts[index]))
    birth = era_birth(signed.body, block_number)
    era_hash = genesis if birth is None else chain.rpc("chain_getBlockHash", [birth])
    for suffix in ("", "00"):
        evidence = BlockEvidence(
            header="0x" + encode_header(block["block"]["header"]).hex(), extrinsics=exts,
            spec_version=version["specVersion"], transaction_version=version["transactionVersion"],
            genesis_hash=genesis, era_block_hash=era_hash, payload_suffix=suffix,
        )
        check_block(evidence, block_hash, block_number)
        try:
            check_anchor_extrinsic(evidence, index, remark, signed.signer)
        except ProofInvalid:
            continue
        return evidence
    raise ProofInvalid(f"cannot rebuild the signing payload of extrinsic {index} in {block_hash}; this "
                       "runtime's signed extensions are not supported for offline proofs")
