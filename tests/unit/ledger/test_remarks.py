"""The remark texts citygrid puts on chain, and the hash the chain's events carry for them."""

from __future__ import annotations

import pytest

from citygrid.ledger.remarks import anchor_remark, parse_anchor_remark, remark_hash, settlement_remark


def test_anchor_remark_round_trip() -> None:
    root = bytes(range(32))
    text = anchor_remark(1_790_000_000_000, 42, root)
    assert parse_anchor_remark(text) == (1_790_000_000_000, 42, root)
    with pytest.raises(ValueError, match="not a citygrid anchor remark"):
        parse_anchor_remark(settlement_remark(1_790_000_000_000, ["b", "a"]))


def test_settlement_remark_names_its_trades_in_order() -> None:
    assert settlement_remark(7, ["b", "a"]) == "citygrid:settle:v1:7:2:a,b"


def test_remark_hash_is_substrates_blake2_256() -> None:
    # blake2b-256 of the empty string, as System.Remarked would carry it.
    assert remark_hash("") == "0x0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"
