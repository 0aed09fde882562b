"""What the settler refuses before anything is signed: trade records that do not parse, and trades not
backed by both parties' signed orders (unknown party, no orders, outside limits, over an order's Wh,
or not what the market's summary committed to); and allowances above the operator's cap."""

from __future__ import annotations

import json

import pytest
from market_support import backed_interval
from substrateinterface import Keypair

from citygrid.interval_records import PublishedInterval
from citygrid.ledger.errors import SettlementError
from citygrid.ledger.participants import ParticipantsFileError, checked
from citygrid.ledger.settlement import authorize
from citygrid.ledger.settlement_feed import checked_trade
from citygrid.ledger.trade_backing import Evidence, judge
from citygrid.market import Trade, trade_id
from citygrid.participants import Participant, Participants
from citygrid.signing import DeviceKey


def _address(uri: str) -> str:
    return Keypair.create_from_uri(uri).ss58_address


NAMES = {"buyer0": "//Bob", "buyer1": "//Ferdie", "seller0": "//Charlie", "grid": "//Dave"}
KEYS = {n: DeviceKey.generate() for n in NAMES}
ENROLLED = Participants({n: Participant(address=_address(uri), order_key=KEYS[n].public_key.hex())
                         for n, uri in NAMES.items()})
INTERVAL = 3_000_000


def _book() -> PublishedInterval:
    return backed_interval(INTERVAL, [("buyer0", "seller0", 500), ("buyer1", "seller0", 200)], KEYS,
                           2_000_000, 100_000)


def _judge(published: PublishedInterval,
           extra: list[Trade] = ()) -> tuple[list[Trade], list[str], str | None]:
    ev = Evidence(summary=published.summary, orders={o.encode(): o for o in published.orders})
    for t in [*published.trades, *extra]:
        ev.add_trade(t, t.trade_id)
    verdict = judge(ev, ENROLLED, "grid")
    return verdict.pay, [reason for _, reason, _ in verdict.refused], verdict.problem


def _trade(**changes: object) -> Trade:
    fields = {"interval_start_ms": INTERVAL, "buyer": "buyer0", "seller": "seller0",
              "bid_id": f"buyer0:{INTERVAL}:bid", "offer_id": f"seller0:{INTERVAL}:offer", "wh": 10,
              "price": 2_000_000, "grid_fee": 100_000} | changes
    return Trade(trade_id=trade_id(fields["interval_start_ms"], fields["bid_id"], fields["offer_id"]),
                 **fields)


def test_trades_backed_by_both_signed_orders_and_the_summary_are_paid() -> None:
    published = _book()
    pay, refused, problem = _judge(published)
    assert pay == sorted(published.trades, key=lambda t: t.trade_id) and refused == [] and problem is None
    # The same trade published twice (a worker took over and re-published) is paid once.
    assert _judge(published, [published.trades[0]])[0] == pay


@pytest.mark.parametrize(("changes", "reason"), [
    ({"seller": _address("//Eve")}, "unknown_participant"),  # an attacker's own address
    ({"buyer": "seller0"}, "self_trade"),
    ({"bid_id": f"buyer1:{INTERVAL}:x"}, "unbacked"),  # no such signed order
    ({"buyer": "buyer1"}, "unbacked"),  # buyer0's bid, but buyer1 named as buyer
    ({"price": 2_000_001}, "outside_limits"),  # more than the bid allows
    ({"grid_fee": 100_001}, "outside_limits"),  # the seller gets less than its offer asks
    ({"wh": 501}, "over_order"),
])
def test_a_trade_not_backed_by_its_parties_signed_orders_is_refused_and_the_rest_is_not_paid(
        changes: dict, reason: str) -> None:
    published = _book()
    forged = _trade(**changes)
    pay, refused, problem = _judge(published, [forged])
    assert reason in refused
    if forged.trade_id not in {t.trade_id for t in published.trades}:
        assert problem is None and pay == sorted(published.trades, key=lambda t: t.trade_id)


def test_a_backed_trade_the_summary_does_not_commit_to_stops_the_whole_interval() -> None:
    published = _book()
    smaller = published.trades[0].model_copy(update={"wh": 400})  # within its orders, but not what cleared
    extra = PublishedInterval(summary=published.summary, orders=published.orders,
                              trades=[smaller, published.trades[1]])
    pay, refused, problem = _judge(extra)
    assert pay == [] and problem is not None and refused == ["trades_hash_mismatch"] * 2


def test_malformed_unbounded_garbage_and_oversized_trade_records_are_refused() -> None:
    good = json.loads(_trade().model_dump_json())
    assert isinstance(checked_trade(json.dumps(good).encode()), Trade)
    for changes in ({"wh": 2**63}, {"price": 2**64}, {"grid_fee": -1}, {"interval_start_ms": 2**63},
                    {"wh": 0}, {"grid_fee": 3_000_000}, {"trade_id": "not-derived"}, {"wh": "lots"}):
        assert checked_trade(json.dumps(good | changes).encode())[0] == "malformed", changes
    assert checked_trade(b"\xff{")[0] == "malformed"
    assert checked_trade(b" " * 70_000)[0] == "too_large"


def test_the_settler_refuses_a_registry_address_that_is_not_ss58() -> None:
    bad = Participants({"x": Participant(address="1" * 40, order_key="00" * 32)})
    with pytest.raises(ParticipantsFileError, match="SS58"):
        checked(bad)
    assert checked(ENROLLED) is ENROLLED


def test_an_allowance_above_the_operators_cap_is_refused_before_signing() -> None:
    grid = ENROLLED.address("grid")
    with pytest.raises(SettlementError, match="cap"):
        authorize(None, Keypair.create_from_uri("//Bob"), grid, 1, 10**18, 10**12)  # type: ignore[arg-type]
    with pytest.raises(SettlementError, match="cap"):
        authorize(None, Keypair.create_from_uri("//Bob"), grid, 1, 0, 10**12)  # type: ignore[arg-type]
