"""Orders signed by their participant: the one byte format the market books, publishes and the settler checks.

A `SignedOrder` carries an order's canonical JSON (`canonical_order`: sorted keys, no spaces, ASCII)
and an ed25519 signature over it, made with the participant's enrolled order key
(citygrid.participants). The signature covers a domain prefix too, so no reading or command signature
can ever pass for an order's. Whoever holds the bytes can check them offline against the registry:
the market before it books an order, the settler before it pays a trade, an auditor after the fact.

Both the envelope and the order inside must be in their one canonical form, so the signed bytes,
the published bytes and the Merkle leaf of an order are the same bytes for everyone.
"""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from citygrid.errors import BadSignature, CitygridError
from citygrid.market import Order
from citygrid.participants import Participants, UnknownParticipant
from citygrid.signing import DeviceKey, verify_signature

DOMAIN = b"citygrid:order:v1\x00"
MAX_ORDER_CHARS = 1024  # an order's canonical JSON (two 128-character names and six numbers fit easily)
MAX_SIGNED_ORDER_BYTES = 2048


class OrderRefused(CitygridError, reason="refused"):
    """An order record the market (or the settler) must not act on; `reason` says why."""


class MalformedOrder(OrderRefused, reason="malformed"):
    """Not a signed order record of this format."""


class UnsignedOrder(OrderRefused, reason="unsigned"):
    """A bare order, with no participant's signature."""


class NonCanonicalOrder(OrderRefused, reason="non_canonical"):
    """The bytes parse but are not the one canonical encoding that was (or must be) signed."""


class ForgedOrder(OrderRefused, reason="bad_signature"):
    """The signature is not the participant's enrolled order key's over these bytes."""


class UnknownOrderParticipant(OrderRefused, reason="unknown_participant"):
    """The order names a participant that is not enrolled."""


def canonical_json(value: object) -> bytes:
    """The one JSON encoding of `value`: sorted keys, no spaces, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def canonical_order(order: Order) -> str:
    """The order's canonical JSON: the text its participant signs."""
    return canonical_json(order.model_dump(mode="json")).decode()


def order_id_prefix(participant: str) -> str:
    """Every order id of a participant starts with this, so nobody's order can replace another's."""
    return f"{participant}:"


class SignedOrder(BaseModel):
    """An order's canonical JSON and its participant's ed25519 signature (hex)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    order: Annotated[str, Field(min_length=2, max_length=MAX_ORDER_CHARS)]
    signature: Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]

    @classmethod
    def sign(cls, order: Order, key: DeviceKey) -> SignedOrder:
        """Sign `order` with the participant's order key."""
        text = canonical_order(order)
        return cls(order=text, signature=key.sign(DOMAIN + text.encode()).hex())

    def encode(self) -> bytes:
        """The canonical record bytes: what is published, stored and hashed as a Merkle leaf."""
        return canonical_json(self.model_dump(mode="json"))

    @classmethod
    def decode(cls, raw: bytes) -> SignedOrder:
        """Parse a record strictly (bounded, canonical); OrderRefused (its reason set) otherwise."""
        if len(raw) > MAX_SIGNED_ORDER_BYTES:
            raise MalformedOrder(f"order record of {len(raw)} bytes exceeds {MAX_SIGNED_ORDER_BYTES}")
        try:
            signed = cls.model_validate_json(raw)
        except ValidationError as exc:
            if _is_bare_order(raw):
                raise UnsignedOrder("a bare order with no signature: orders must be signed by the "
                                    "participant's enrolled key (`citygrid market bid`)") from None
            raise MalformedOrder(f"not a signed order: {str(exc)[:300]}") from None
        if signed.encode() != raw:
            raise NonCanonicalOrder("the record is not in canonical form (sorted keys, no spaces)")
        return signed

    def unverified_order(self) -> Order:
        """The order inside, parsed and checked canonical, but NOT its signature (see `verified`)."""
        try:
            order = Order.model_validate_json(self.order)
        except ValidationError as exc:
            raise MalformedOrder(f"the signed text is not an order: {str(exc)[:300]}") from None
        if canonical_order(order) != self.order:
            raise NonCanonicalOrder(f"order {order.order_id[:64]} was not signed in canonical form")
        return order

    def verified(self, participants: Participants) -> Order:
        """The order, once its participant is enrolled, its id is the participant's and the signature
        is by the participant's enrolled order key; else OrderRefused saying which check failed."""
        order = self.unverified_order()
        try:
            entry = participants.get(order.participant)
        except UnknownParticipant as exc:
            raise UnknownOrderParticipant(str(exc)) from None
        if not order.order_id.startswith(order_id_prefix(order.participant)):
            raise MalformedOrder(f"order id {order.order_id[:64]!r} does not start with "
                                 f"{order_id_prefix(order.participant)!r}")
        try:
            verify_signature(entry.order_public_key, DOMAIN + self.order.encode(),
                             bytes.fromhex(self.signature))
        except BadSignature:
            raise ForgedOrder(f"order {order.order_id[:64]} is not signed by {order.participant}'s "
                              "enrolled order key") from None
        return order


def _is_bare_order(raw: bytes) -> bool:
    try:
        Order.model_validate_json(raw)
    except ValidationError:
        return False
    return True
