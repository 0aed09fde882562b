"""What the settlement feed refuses before anything is signed: malformed or unbounded trade records,
and trades naming anyone who is not an enrolled participant; and allowances above the operator's cap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from substrateinterface import Keypair

from citygrid.ledger.errors import SettlementError
from citygrid.ledger.participants import Participants, ParticipantsFileError, UnknownParticipant
from citygrid.ledger.settlement import Settler, authorize
from citygrid.ledger.settlement_feed import checked_trade
from citygrid.market import Trade, trade_id


def _address(uri: str) -> str:
    return Keypair.create_from_uri(uri).ss58_address


ENROLLED = {"buyer0": _address("//Bob"), "seller0": _address("//Charlie"), "grid": _address("//Dave")}


def _settler() -> Settler:
    return Settler(None, None, Participants(ENROLLED), Keypair.create_from_uri("//Eve"),  # type: ignore[arg-type]
                   "grid", 1)


def _trade(**changes: object) -> dict:
    fields = {"interval_start_ms": 3_000_000, "buyer": "buyer0", "seller": "seller0", "bid_id": "b",
              "offer_id": "o", "wh": 500, "price": 2_000_000, "grid_fee": 100_000}
    fields.update(changes)
    fields.setdefault("trade_id", trade_id(fields["interval_start_ms"], fields["bid_id"], fields["offer_id"]))
    return fields


def _check(fields: dict) -> Trade | tuple[str, str]:
    return checked_trade(_settler(), json.dumps(fields).encode())


def test_a_genuine_trade_between_enrolled_participants_passes() -> None:
    assert isinstance(_check(_trade()), Trade)
    assert isinstance(_check(_trade(seller=ENROLLED["seller0"])), Trade)  # its enrolled address


@pytest.mark.parametrize("changes", [
    {"seller": _address("//Ferdie")},  # the attacker's own address
    {"seller": "mallory"},
    {"buyer": "someone"},
])
def test_a_trade_naming_anyone_not_enrolled_is_refused(changes: dict) -> None:
    assert _check(_trade(**changes))[0] == "unknown_participant"


@pytest.mark.parametrize("changes", [
    {"wh": 2**63}, {"price": 2**64}, {"grid_fee": -1}, {"interval_start_ms": 2**63}, {"wh": 0},
    {"grid_fee": 3_000_000},  # more than the price: the seller would pay
    {"trade_id": "not-derived"}, {"extra": 1} | {"wh": "lots"},
])
def test_a_malformed_or_unbounded_trade_is_refused(changes: dict) -> None:
    assert _check(_trade(**changes))[0] == "malformed"


def test_garbage_and_oversized_records_are_refused() -> None:
    assert checked_trade(_settler(), b"\xff{")[0] == "malformed"
    assert checked_trade(_settler(), b" " * 70_000)[0] == "too_large"


def test_the_participants_file_holds_addresses_only(tmp_path: Path) -> None:
    path = tmp_path / "participants.json"
    Participants(ENROLLED).save(path)
    assert Participants.load(path).address("buyer0") == ENROLLED["buyer0"]
    with pytest.raises(UnknownParticipant, match="enrol"):
        Participants.load(path).address("nobody")
    path.write_text(json.dumps({"x": "not an address"}))
    with pytest.raises(ParticipantsFileError):
        Participants.load(path)


def test_an_allowance_above_the_operators_cap_is_refused_before_signing() -> None:
    with pytest.raises(SettlementError, match="cap"):
        authorize(None, Keypair.create_from_uri("//Bob"), ENROLLED["grid"], 1, 10**18, 10**12)  # type: ignore[arg-type]
    with pytest.raises(SettlementError, match="cap"):
        authorize(None, Keypair.create_from_uri("//Bob"), ENROLLED["grid"], 1, 0, 10**12)  # type: ignore[arg-type]
