"""The reading schema and its signed envelope."""

from __future__ import annotations

import math

import msgpack
import pytest

from citygrid.errors import BadSignature, MalformedReading, NonCanonical, OutOfRange, UnknownDevice
from citygrid.reading import ModelOutput, Reading, SignedReading, sign_reading
from citygrid.signing import DeviceKey, DeviceRegistry

TS = 1_790_000_000_000


def make(key: DeviceKey, seq: int = 0, **values: float) -> Reading:
    return Reading(device=key.device_id, seq=seq, ts_ms=TS, kind="meter", values=values or {"p_kw": 1.5})


def test_round_trip_verifies_and_keeps_every_field() -> None:
    key = DeviceKey.generate()
    registry = DeviceRegistry()
    registry.add(key.public_key)
    reading = make(key, 7, p_kw=2.25).model_copy(
        update={"model": ModelOutput(name="nowcast", version="3", outputs={"p_kw_next": 2.0})}
    )
    wire = sign_reading(reading, key).encode()
    assert SignedReading.decode(wire).verify(registry) == reading


def test_body_is_canonical_whatever_the_key_order() -> None:
    key = DeviceKey.generate()
    a = Reading(device=key.device_id, seq=1, ts_ms=TS, kind="meter", values={"a": 1.0, "b": 2.0})
    b = Reading(device=key.device_id, seq=1, ts_ms=TS, kind="meter", values={"b": 2.0, "a": 1.0})
    assert a.body() == b.body()


def test_a_changed_value_breaks_the_signature() -> None:
    key = DeviceKey.generate()
    registry = DeviceRegistry()
    registry.add(key.public_key)
    signed = sign_reading(make(key), key)
    forged = SignedReading(make(key, p_kw=99.0).body(), signed.signature)
    with pytest.raises(BadSignature):
        forged.verify(registry)


def test_a_reading_signed_by_another_key_is_refused() -> None:
    owner, forger = DeviceKey.generate(), DeviceKey.generate()
    registry = DeviceRegistry()
    registry.add(owner.public_key)
    body = make(owner).body()
    with pytest.raises(BadSignature):
        SignedReading(body, forger.sign(body)).verify(registry)


def test_unregistered_device_is_refused() -> None:
    key = DeviceKey.generate()
    with pytest.raises(UnknownDevice):
        sign_reading(make(key), key).verify(DeviceRegistry())


def test_signing_in_another_devices_name_is_impossible() -> None:
    a, b = DeviceKey.generate(), DeviceKey.generate()
    with pytest.raises(ValueError, match="cannot be signed"):
        sign_reading(make(a), b)


@pytest.mark.parametrize("payload", [
    b"", b"\x00\x01garbage", msgpack.packb([1, 2, 3]), msgpack.packb({"v": 2, "b": b"x", "s": b"y" * 64}),
    msgpack.packb({"v": 1, "b": b"x", "s": b"short"}), msgpack.packb({"v": 1, "s": b"y" * 64}),
])
def test_malformed_envelopes_are_rejected_with_reason(payload: bytes) -> None:
    with pytest.raises(MalformedReading) as info:
        SignedReading.decode(payload)
    assert info.value.reason == "malformed"


@pytest.mark.parametrize("raw", [
    {"schema_version": 2, "device": "d", "seq": 0, "ts_ms": TS, "kind": "m", "values": {}},
    {"device": "d", "seq": -1, "ts_ms": TS, "kind": "m", "values": {}},
    {"device": "d", "seq": 0, "ts_ms": 5, "kind": "m", "values": {}},
    {"device": "d", "seq": 0, "ts_ms": TS, "kind": "m", "values": {"x": "high"}},
    {"device": "d", "seq": 0, "ts_ms": TS, "kind": "m", "values": {}, "extra": 1},
])
def test_bodies_outside_the_schema_are_malformed(raw: dict) -> None:
    with pytest.raises(MalformedReading):
        Reading.from_body(msgpack.packb(raw))


@pytest.mark.parametrize("value", [math.inf, math.nan, 1e12])
def test_impossible_values_are_out_of_range(value: float) -> None:
    raw = {"device": "d", "seq": 0, "ts_ms": TS, "kind": "m", "values": {"p_kw": value}}
    with pytest.raises(OutOfRange) as info:
        Reading.from_body(msgpack.packb(raw))
    assert info.value.reason == "out_of_range"


def _body(**over: object) -> dict:
    return {"schema_version": 1, "device": "d", "seq": 0, "ts_ms": TS, "kind": "m",
            "values": {"p_kw": 1.5}} | over


@pytest.mark.parametrize("value", ["1.5", True, b"\x01", None, [1.0]])
def test_values_that_are_not_numbers_are_refused_never_coerced(value: object) -> None:
    with pytest.raises(MalformedReading, match="values"):
        Reading.from_body(msgpack.packb(_body(values={"p_kw": value}), use_bin_type=True))


@pytest.mark.parametrize("raw", [
    _body(seq=2**63), _body(seq=2**64 - 1), _body(ts_ms=2**62), _body(device="d" * 65), _body(kind="k" * 33),
    _body(values={f"v{i}": 1.0 for i in range(20_000)}), _body(values={"n" * 50_000: 1.0}),
    _body(seq=True), _body(seq="1"), _body(ts_ms=float(TS)),
])
def test_out_of_bounds_or_mistyped_fields_are_refused(raw: dict) -> None:
    with pytest.raises(MalformedReading):
        Reading.from_body(msgpack.packb(raw, use_bin_type=True))


def test_the_largest_sequence_number_still_parses() -> None:
    reading = Reading.from_body(msgpack.packb(dict(sorted(_body(seq=2**63 - 1).items())), use_bin_type=True))
    assert reading.seq == 2**63 - 1


def test_a_body_that_is_not_the_canonical_encoding_is_refused() -> None:
    canonical = Reading.model_validate(_body()).body()
    assert Reading.from_body(canonical).seq == 0
    unsorted = msgpack.packb(dict(reversed(list(_body().items()))), use_bin_type=True)
    as_int = msgpack.packb(_body(values={"p_kw": 2}), use_bin_type=True)
    with_null = msgpack.packb(dict(sorted((_body() | {"model": None}).items())), use_bin_type=True)
    for body in (unsorted, as_int, with_null):
        with pytest.raises(NonCanonical) as info:
            Reading.from_body(body)
        assert info.value.reason == "non_canonical"


def test_a_reordered_or_padded_envelope_is_refused() -> None:
    key = DeviceKey.generate()
    signed = sign_reading(make(key), key)
    assert SignedReading.decode(signed.encode()) == signed
    reordered = msgpack.packb({"s": signed.signature, "b": signed.body, "v": 1})
    with pytest.raises(NonCanonical):
        SignedReading.decode(reordered)
    with pytest.raises(MalformedReading, match="exactly"):
        SignedReading.decode(msgpack.packb({"v": 1, "b": signed.body, "s": signed.signature, "x": 1}))
