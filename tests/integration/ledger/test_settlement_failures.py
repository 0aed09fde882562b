"""Refused or failing settlements raise clear errors and nothing is marked settled (real dev chain)."""

from __future__ import annotations

import pytest
from substrateinterface import Keypair

from citygrid.interval_records import ClearingPrice, IntervalSummary, summarize
from citygrid.ledger.errors import ExtrinsicFailed, InsufficientFunds, SettlementError
from citygrid.ledger.settlement import Settler
from citygrid.ledger.settlement_store import SettlementStore
from citygrid.market import Mechanism, Trade, trade_id
from citygrid.settings import CitygridSettings

pytestmark = [pytest.mark.servers, pytest.mark.timeout(180)]


def _trade(interval: int, wh: int, price: int = 2_000_000) -> Trade:
    bid = f"b{price}"
    return Trade(trade_id=trade_id(interval, bid, "o"), interval_start_ms=interval, buyer="buyer0",
                 seller="seller0", bid_id=bid, offer_id="o", wh=wh, price=price, grid_fee=100_000)


def _summary(trades: list[Trade]) -> IntervalSummary:
    # What these tests settle is taken as judged: the settler's own failures are under test here.
    return summarize(trades[0].interval_start_ms, Mechanism.PAY_AS_BID, [], ClearingPrice(), trades)


def _settler(acc, s: CitygridSettings, settler: Keypair | None = None) -> Settler:
    return Settler(acc.chain, SettlementStore(s.paths.settlement_store), acc.participants,
                   settler or acc.keystore.keypair("settler"), "grid", acc.asset_id)


@pytest.fixture(scope="module")
def accounts(accounts_factory):
    return accounts_factory(buyers=1, sellers=1, pas=50, asset=10)


def test_buyer_without_funds_fails_atomically(accounts, settings: CitygridSettings) -> None:
    before = accounts.balances()
    # 10 units of the asset held against a 2,000,000 Wh x 2,000,000 planck/Wh = 400 units purchase;
    # a second, affordable trade in the same batch must be reverted with it.
    trade = _trade(2_000_001, wh=2_000_000)
    settler = _settler(accounts, settings)
    with pytest.raises(SettlementError, match="Nothing was transferred"):
        both = [_trade(2_000_001, wh=10, price=3_000_000), trade]
        settler.settle(_summary(both), both)
    record = settler.store.get(2_000_001)
    assert record is not None and record.status == "failed" and record.block_hash
    after = accounts.balances()
    for name in ("buyer0", "seller0", "grid"):
        assert after[name] == before[name], name


def test_settler_without_funds_is_refused_and_not_settled(accounts, settings: CitygridSettings) -> None:
    broke = Keypair.create_from_mnemonic(Keypair.generate_mnemonic())
    settler = _settler(accounts, settings, settler=broke)
    with pytest.raises(InsufficientFunds, match="fund the account"):
        settler.settle(_summary([_trade(2_000_002, wh=10)]), [_trade(2_000_002, wh=10)])
    record = settler.store.get(2_000_002)
    assert record is not None and record.status == "prepared" and record.block_hash is None
    assert "cannot pay" in (record.error or "")


class _TamperingChain:
    """The real chain client, except that signatures get one byte flipped after signing."""

    def __init__(self, chain, public_key: bytes) -> None:
        self._chain, self._pk = chain, public_key

    def __getattr__(self, name: str):
        return getattr(self._chain, name)

    def sign_call(self, call, keypair, nonce):
        ext = bytearray(self._chain.sign_call(call, keypair, nonce))
        at = ext.index(self._pk) + len(self._pk) + 1 + 10  # inside the 64-byte signature
        ext[at] ^= 0xFF
        return bytes(ext)


def test_wrongly_signed_settlement_is_refused_and_not_settled(accounts, settings: CitygridSettings) -> None:
    before = accounts.balances()
    kp = accounts.keystore.keypair("settler")
    settler = _settler(accounts, settings)
    settler.chain = _TamperingChain(accounts.chain, kp.public_key)  # type: ignore[assignment]
    with pytest.raises(ExtrinsicFailed, match="bad signature"):
        settler.settle(_summary([_trade(2_000_003, wh=10)]), [_trade(2_000_003, wh=10)])
    record = settler.store.get(2_000_003)
    assert record is not None and record.status == "prepared" and record.block_hash is None
    after = accounts.balances()
    assert after == before
