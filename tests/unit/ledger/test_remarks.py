"""The remark texts citygrid puts on chain, and the hash the chain's events carry for them."""

from __future__ import annotations

import pytest

from citygrid.interval_records import ClearingPrice, IntervalSummary
from citygrid.ledger.remarks import anchor_remark, parse_anchor_remark, remark_hash, settlement_remark
from citygrid.market import Mechanism

SUMMARY = IntervalSummary(interval_start_ms=7, mechanism=Mechanism.PAY_AS_CLEAR, order_count=3,
                          orders_root="ab" * 32, price=ClearingPrice(uniform=1_900_000), trade_count=2,
                          trades_hash="cd" * 32)


def test_anchor_remark_round_trip() -> None:
    root = bytes(range(32))
    text = anchor_remark(1_790_000_000_000, 42, root)
    assert parse_anchor_remark(text) == (1_790_000_000_000, 42, root)
    with pytest.raises(ValueError, match="not a citygrid anchor remark"):
        parse_anchor_remark(settlement_remark(SUMMARY))


def test_settlement_remark_commits_the_orders_root_the_price_and_the_trades_hash() -> None:
    price = SUMMARY.price.digest()
    assert settlement_remark(SUMMARY) == f"citygrid:settle:v2:7:2:{'ab' * 32}:{price}:{'cd' * 32}"
    # A different price is a different commitment.
    assert SUMMARY.price.model_copy(update={"uniform": 1_900_001}).digest() != price


def test_remark_hash_is_substrates_blake2_256() -> None:
    # blake2b-256 of the empty string, as System.Remarked would carry it.
    assert remark_hash("") == "0x0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"
