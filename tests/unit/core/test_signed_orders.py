"""Signed orders: only the enrolled participant's key makes an order the market or the settler accepts,
in one canonical byte form; and the participants registry every part reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citygrid.errors import ConfigError
from citygrid.interval_records import orders_root
from citygrid.market import Order, Side
from citygrid.merkle import MerkleTree
from citygrid.participants import Participant, Participants
from citygrid.signed_orders import OrderRefused, SignedOrder
from citygrid.signing import DeviceKey

ALICE_ADDRESS = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
BOB_ADDRESS = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
KEYS = {"alice": DeviceKey.generate(), "bob": DeviceKey.generate()}
REGISTRY = Participants({
    "alice": Participant(address=ALICE_ADDRESS, order_key=KEYS["alice"].public_key.hex(), bus="12",
                         devices=("m-a", "pv-a"), buy_limit=3, sell_limit=1),
    "bob": Participant(address=BOB_ADDRESS, order_key=KEYS["bob"].public_key.hex(), devices=("m-b",)),
})


def _order(participant: str = "alice", **changes: object) -> Order:
    fields = {"order_id": f"{participant}:900000", "participant": participant, "side": Side.BID, "wh": 500,
              "limit": 2_000_000, "interval_start_ms": 900_000, "nonce": 7, "expires_ms": 2_000_000}
    return Order(**(fields | changes))


def _reason(raw: bytes) -> str:
    with pytest.raises(OrderRefused) as err:
        SignedOrder.decode(raw).verified(REGISTRY)
    return err.value.reason


def test_an_order_signed_by_its_enrolled_key_verifies_from_its_canonical_bytes() -> None:
    signed = SignedOrder.sign(_order(), KEYS["alice"])
    raw = signed.encode()
    assert SignedOrder.decode(raw).verified(REGISTRY) == _order()
    assert json.loads(raw)["order"] == json.dumps(json.loads(signed.order), sort_keys=True,
                                                  separators=(",", ":"))


def test_unsigned_forged_foreign_unknown_and_noncanonical_orders_are_refused_with_their_reason() -> None:
    assert _reason(_order().model_dump_json().encode()) == "unsigned"
    # Bob's key signing an order in Alice's name: a forgery.
    assert _reason(SignedOrder.sign(_order(), KEYS["bob"]).encode()) == "bad_signature"
    # A signed order changed after signing (more Wh): the signature no longer holds.
    good = json.loads(SignedOrder.sign(_order(), KEYS["alice"]).encode())
    good["order"] = good["order"].replace('"wh":500', '"wh":5000')
    assert _reason(json.dumps(good, sort_keys=True, separators=(",", ":")).encode()) == "bad_signature"
    # Bob may not name his order with Alice's id prefix (it would replace hers in the book).
    assert _reason(SignedOrder.sign(_order("bob", order_id="alice:1"), KEYS["bob"]).encode()) == "malformed"
    stranger = DeviceKey.generate()
    assert _reason(SignedOrder.sign(_order("mallory", order_id="mallory:1"), stranger).encode()) == \
        "unknown_participant"
    spaced = json.dumps(json.loads(SignedOrder.sign(_order(), KEYS["alice"]).encode())).encode()
    assert _reason(spaced) == "non_canonical"
    assert _reason(b"\xff") == "malformed"
    assert _reason(b"{" + b" " * 5000 + b"}") == "malformed"  # bounded before parsing
    unbounded = SignedOrder(order=_order().model_dump_json().replace('"wh":500', f'"wh":{2**64}'),
                            signature="00" * 64).encode()
    assert _reason(unbounded) == "malformed"


def test_the_book_root_is_rfc6962_over_signed_orders_in_order_id_order() -> None:
    signed = [SignedOrder.sign(_order(order_id=f"alice:{i}"), KEYS["alice"]) for i in (3, 1, 2)]
    by_id = sorted(signed, key=lambda s: s.unverified_order().order_id)
    assert orders_root(signed) == MerkleTree([s.encode() for s in by_id]).root.hex()
    # RFC 6962: the root of an empty list is SHA-256 of nothing.
    assert orders_root([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_the_registry_is_one_file_with_checked_entries(tmp_path: Path) -> None:
    path = tmp_path / "participants.json"
    REGISTRY.save(path)
    loaded = Participants.load(path)
    assert loaded.get("alice").bus == "12" and loaded.owner_of("pv-a") == "alice"
    assert loaded.name_of(BOB_ADDRESS) == "bob" and ALICE_ADDRESS in loaded and "carol" not in loaded
    assert Participants.load(tmp_path / "missing.json").devices() == {}
    path.write_text(json.dumps({"x": {"address": "not-an-address", "order_key": "00" * 32}}))
    with pytest.raises(ConfigError, match="enrol"):
        Participants.load(path)
    shared = Participant(address=ALICE_ADDRESS, order_key="00" * 32, devices=("d",))
    with pytest.raises(ConfigError, match="one participant"):
        Participants({"x": shared, "y": shared})
    with pytest.raises(ConfigError, match="name"):
        Participants({"a:b": shared})
