"""Signed commands: a device acts only on a command of its trusted key, for itself, of the right kind,
unexpired and newer than every one it accepted (also across a restart); everything else is refused with
a reason and counted."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import msgpack
import pytest
from prometheus_client import REGISTRY

from citygrid.commands import (
    Command,
    CommandGuard,
    CommandIssuer,
    CommandRejected,
    CommandVerifier,
    ModelManifest,
    SignalAdvice,
    seal,
    sign_model_update,
)
from citygrid.signing import DeviceKey

NOW = 1_790_000_000_000
ADVICE = {"greens_s": [20.0, 15.5], "cycle_s": 45.5, "for_ms": NOW}


@pytest.fixture
def authority() -> DeviceKey:
    return DeviceKey.generate()


@pytest.fixture
def verifier(authority: DeviceKey, tmp_path: Path) -> CommandVerifier:
    return CommandVerifier(authority.public_key, "dme", CommandGuard(tmp_path / "n.json"), 16 * 1024)


def command(number: int = 1, device: str = "dme", kind: str = "signal_advice", issued: int = NOW,
            ttl_ms: int = 60_000, payload: dict | None = None) -> Command:
    return Command(kind=kind, device=device, issued_ms=issued, expires_ms=issued + ttl_ms, number=number,
                   payload=ADVICE if payload is None else payload)


def refused_count(reason: str) -> float:
    return REGISTRY.get_sample_value("citygrid_edge_commands_refused_total",
                                     {"kind": "signal_advice", "reason": reason}) or 0.0


def test_genuine_advice_is_accepted_once(verifier: CommandVerifier, authority: DeviceKey) -> None:
    wire = seal(command(), authority)
    cmd, attachment = verifier.open(wire, "signal_advice", NOW)
    assert cmd.advice() == SignalAdvice("dme", (20.0, 15.5), 45.5, NOW) and attachment == b""
    with pytest.raises(CommandRejected) as info:
        verifier.open(wire, "signal_advice", NOW)
    assert info.value.reason == "replayed"


@pytest.mark.parametrize(("wire", "reason"), [
    (b"[" * 100_000, "too_large"),
    (b"[" * 1000, "malformed"),
    (b'{"device": "dme", "greens_s": [99, 1], "cycle_s": 100, "issued_ms": 1}', "malformed"),
    (msgpack.packb({"b": b"x", "s": b"y" * 64, "extra": b""}), "malformed"),
    (msgpack.packb({"b": "text", "s": b"y" * 64}), "malformed"),
    (msgpack.packb([1, 2]), "malformed"),
])
def test_garbage_is_refused_as_malformed_or_too_large(verifier: CommandVerifier, wire: bytes,
                                                       reason: str) -> None:
    before = refused_count(reason)
    with pytest.raises(CommandRejected) as info:
        verifier.open(wire, "signal_advice", NOW)
    assert info.value.reason == reason
    assert refused_count(reason) == before + 1


def test_forged_unsigned_mistargeted_expired_and_future_commands_are_refused(
        verifier: CommandVerifier, authority: DeviceKey) -> None:
    cases = {
        "bad_signature": seal(command(), DeviceKey.generate()),
        "wrong_target": seal(command(device="dother"), authority),
        "expired": seal(command(issued=NOW - 120_000), authority),
    }
    body = command().body()
    cases["bad_signature "] = msgpack.packb({"b": body, "s": b"\0" * 64})
    for reason, wire in cases.items():
        with pytest.raises(CommandRejected) as info:
            verifier.open(wire, "signal_advice", NOW)
        assert info.value.reason == reason.strip(), reason
    with pytest.raises(CommandRejected, match="future") as info:
        verifier.open(seal(command(issued=NOW + 3_600_000), authority), "signal_advice", NOW)
    assert info.value.reason == "expired"
    with pytest.raises(CommandRejected) as info:  # a model update on the advice topic
        verifier.open(seal(command(kind="model_update"), authority), "signal_advice", NOW)
    assert info.value.reason == "wrong_target"
    # None of the refusals moved the number: the genuine command still acts.
    assert verifier.open(seal(command(), authority), "signal_advice", NOW)[0].number == 1


def test_a_device_without_a_trusted_key_acts_on_nothing(authority: DeviceKey, tmp_path: Path) -> None:
    v = CommandVerifier(b"", "dme", CommandGuard(tmp_path / "n.json"), 16 * 1024)
    with pytest.raises(CommandRejected, match="no command key"):
        v.open(seal(command(), authority), "signal_advice", NOW)


@pytest.mark.parametrize("payload", [
    {"greens_s": [], "cycle_s": 1.0, "for_ms": NOW}, {"greens_s": ["20"], "cycle_s": 1.0, "for_ms": NOW},
    {"greens_s": [float("nan")], "cycle_s": 1.0, "for_ms": NOW},
    {"greens_s": [1e9], "cycle_s": 1.0, "for_ms": 0},
    {"greens_s": [True], "cycle_s": 1.0, "for_ms": NOW}, ADVICE | {"extra": 1},
])
def test_signed_but_invalid_advice_is_refused(verifier: CommandVerifier, authority: DeviceKey,
                                              payload: dict) -> None:
    with pytest.raises(CommandRejected) as info:
        verifier.open(seal(command(payload=payload), authority), "signal_advice", NOW)
    assert info.value.reason in {"bad_advice", "malformed"}


def test_the_number_survives_a_restart(authority: DeviceKey, tmp_path: Path) -> None:
    first = CommandVerifier(authority.public_key, "dme", CommandGuard(tmp_path / "n.json"), 16 * 1024)
    old, new = seal(command(number=5), authority), seal(command(number=6), authority)
    first.open(new, "signal_advice", NOW)
    restarted = CommandVerifier(authority.public_key, "dme", CommandGuard(tmp_path / "n.json"), 16 * 1024)
    for wire in (old, new):
        with pytest.raises(CommandRejected, match="not above the last accepted 6"):
            restarted.open(wire, "signal_advice", NOW)


def test_issuer_numbers_grow_per_device_even_across_issuers(authority: DeviceKey) -> None:
    a = CommandIssuer(authority)
    numbers = [a.number("signal_advice", "d1") for _ in range(1000)]
    assert numbers == sorted(set(numbers))
    assert CommandIssuer(authority).number("signal_advice", "d1") > numbers[0]  # a restarted issuer


def test_model_update_carries_its_bytes_checked_against_the_signed_manifest(
        authority: DeviceKey, tmp_path: Path) -> None:
    onnx = b"model bytes" * 100
    v = CommandVerifier(authority.public_key, "dme", CommandGuard(tmp_path / "m.json"), 1 << 20)
    wire = sign_model_update(onnx, "load_nowcast", "2", 2, authority, "dme")
    cmd, attachment = v.open(wire, "model_update")
    assert attachment == onnx
    assert cmd.manifest() == ModelManifest(name="load_nowcast", version="2", serial=2, size=len(onnx),
                                           sha256=hashlib.sha256(onnx).hexdigest())
    swapped = msgpack.unpackb(sign_model_update(onnx, "load_nowcast", "3", 3, authority, "dme"))
    swapped["a"] = b"other bytes" * 100
    with pytest.raises(CommandRejected, match="bytes do not match the signed SHA-256"):
        v.open(msgpack.packb(swapped), "model_update")
    with pytest.raises(CommandRejected) as info:  # the same genuine update, replayed onto another device
        CommandVerifier(authority.public_key, "dother", CommandGuard(tmp_path / "o.json"), 1 << 20).open(
            wire, "model_update")
    assert info.value.reason == "wrong_target"


def test_commands_expire_after_their_ttl(authority: DeviceKey, verifier: CommandVerifier) -> None:
    wire = CommandIssuer(authority).advice(SignalAdvice("dme", (10.0, 10.0), 26.0, NOW), ttl_s=60)
    now = int(time.time() * 1000)
    with pytest.raises(CommandRejected, match="expired"):
        verifier.open(wire, "signal_advice", now + 61_000)
    assert verifier.open(wire, "signal_advice", now)[0].advice().greens_s == (10.0, 10.0)
