"""The ordered trie root against roots computed by smoldot's independent trie code, and the header
encoding against a real block of the dev chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citygrid.hashing import blake2_256
from citygrid.ledger.block_evidence import commitment_scheme, decode_header, encode_header
from citygrid.ledger.substrate_trie import compact, ordered_trie_root, read_compact, trie_root

VECTORS = json.loads((Path(__file__).parent / "data" / "substrate_trie_vectors.json").read_text())


def _b(x: str) -> bytes:
    return bytes.fromhex(x[2:])


@pytest.mark.parametrize("name", sorted(VECTORS["cases"]))
@pytest.mark.parametrize("version", [0, 1])
def test_ordered_root_matches_smoldot(name: str, version: int) -> None:
    case = VECTORS["cases"][name]
    values = [_b(v) for v in case["values"]]
    assert "0x" + ordered_trie_root(values, version).hex() == case[f"root_v{version}"]


def test_the_versions_differ_only_when_a_value_reaches_33_bytes() -> None:
    short = [b"\x01" * 32, b"\x02"]
    assert ordered_trie_root(short, 0) == ordered_trie_root(short, 1)
    long = [b"\x01" * 33, b"\x02"]
    assert ordered_trie_root(long, 0) != ordered_trie_root(long, 1)


def test_empty_trie_root_is_substrates() -> None:
    # The extrinsicsRoot of every genesis header.
    assert ordered_trie_root([]).hex() == "03170a2e7597b7b7e3d84c05391d139a62b157e78786d8c082f29dcf4c111314"


def test_root_does_not_depend_on_input_order_but_on_content() -> None:
    pairs = [(b"\x00", b"a"), (b"\x04", b"b"), (b"\x01\x01", b"c")]
    assert trie_root(pairs) == trie_root(list(reversed(pairs)))
    assert trie_root(pairs) != trie_root([*pairs[:2], (b"\x01\x01", b"d")])
    with pytest.raises(ValueError):
        trie_root(pairs, 2)


@pytest.mark.parametrize("n", [0, 1, 63, 64, 16383, 16384, 2**30 - 1, 2**30, 2**64])
def test_compact_round_trips(n: int) -> None:
    encoded = compact(n)
    assert read_compact(encoded + b"\xff", 0) == (n, len(encoded))


def test_compact_known_encodings() -> None:
    assert compact(1) == b"\x04"
    assert compact(64) == b"\x01\x01"
    assert compact(2**30) == b"\x03\x00\x00\x00\x40"
    with pytest.raises(ValueError):
        read_compact(b"\x01", 0)


def test_real_header_encodes_to_its_block_hash() -> None:
    block = VECTORS["chopsticks_block"]
    raw = encode_header(block["header"])
    assert "0x" + blake2_256(raw).hex() == block["hash"]
    header = decode_header(raw)
    assert header.number == int(block["header"]["number"], 16)
    assert "0x" + header.extrinsics_root.hex() == block["header"]["extrinsicsRoot"]


def test_chopsticks_header_commits_to_concatenated_extrinsics() -> None:
    # Chopsticks' block builder writes blake2-256(concat(extrinsics)) as extrinsicsRoot.
    block = VECTORS["chopsticks_block"]
    exts = [_b(x) for x in block["extrinsics"]]
    root = _b(block["header"]["extrinsicsRoot"])
    assert commitment_scheme(root, exts) == "chopsticks-blake2-concat"
    assert commitment_scheme(root, exts[:-1]) is None
    assert commitment_scheme(ordered_trie_root(exts, 1), exts) == "substrate-trie-v1"
    assert commitment_scheme(ordered_trie_root(exts, 0), exts) == "substrate-trie-v0"
