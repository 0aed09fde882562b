"""Commands to devices, as they travel over MQTT: one signed, expiring, numbered envelope for every kind.

Trust: one command authority (the traffic advisor, the operator's model
publisher) holds an ed25519 key (a citygrid.signing.DeviceKey kept off the
devices); every device is deployed with its public half
(EdgeSettings.command_public_key) and acts only on a command that

  - is no larger than the device's limit (checked on the length, before parsing),
  - is exactly the envelope {"b": body, "s": signature[, "a": attachment]},
  - carries a body (canonical msgpack) that the authority's key signed,
  - names this device, the expected kind, an issue time not in the future and an
    expiry not past,
  - carries a command number above the last one it accepted of that kind (persisted
    atomically before acting, so neither a replay nor a restart makes an old
    command act again).

The body names the kind, the target device, issue time, expiry, the number and
the payload: signal advice (`SignalAdvice`) or a model-update manifest
(`ModelManifest`: name, version, serial, size and SHA-256 of the ONNX bytes,
which travel beside the signed body as the attachment and are checked against
it). A model released to many devices is signed once per device, so a genuine
update replayed onto another device names the wrong target.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgpack
import structlog
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from citygrid.errors import BadSignature, CitygridError
from citygrid.signing import DeviceKey, verify_signature
from citygrid.storage import atomic_write

log = structlog.get_logger(__name__)
REFUSED = Counter("citygrid_edge_commands_refused_total", "Commands a device refused, by kind and reason",
                  ["kind", "reason"])
ACCEPTED = Counter("citygrid_edge_commands_accepted_total", "Commands a device verified and accepted",
                   ["kind"])

MAX_INT64 = 2**63 - 1
CommandKind = Literal["signal_advice", "model_update"]
ENVELOPE_KEYS = frozenset({"b", "s"})
OPTIONAL_KEYS = frozenset({"a"})


class CommandRejected(CitygridError, reason="rejected"):
    """A command to a device (signal advice, model update) that the device must not act on."""


class AdviceRejected(CommandRejected, reason="bad_advice"):
    """A command on an intersection's topic is not usable signal advice for it; the light keeps its plan."""


class ModelUpdateRejected(CommandRejected, reason="bad_model_update"):
    """A model update failed its signature, hash or version check and was not installed."""


class CommandTooLarge(CommandRejected, reason="too_large"):
    """The message is larger than the device accepts for its kind; nothing of it was parsed or kept."""


class MalformedCommand(CommandRejected, reason="malformed"):
    """The bytes are not a command envelope, or its body is not a valid command."""


class UnsignedCommand(CommandRejected, reason="bad_signature"):
    """The body is not signed by the command key this device trusts (or it trusts none)."""


class MisTargetedCommand(CommandRejected, reason="wrong_target"):
    """The command names another device or another kind than the topic it arrived on."""


class ExpiredCommand(CommandRejected, reason="expired"):
    """The command's expiry has passed, or it claims to be issued in the future."""


class NotYetValid(ExpiredCommand, reason="expired"):
    """The command claims an issue time beyond the device's clock skew: the device's clock may be behind."""


class ReplayedCommand(CommandRejected, reason="replayed"):
    """The command's number is not above the last one this device accepted: a replay."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


Seconds = Annotated[float, Field(ge=0.0, le=3600.0)]


class AdvicePayload(_Strict):
    """Signal advice: green time per green phase (in program order) and the cycle."""

    greens_s: list[Seconds] = Field(min_length=1, max_length=16)
    cycle_s: Seconds
    for_ms: int = Field(ge=0, le=MAX_INT64)  # the start of the interval the advice is for


class ModelManifest(_Strict):
    """What the authority signs about one model file; the file itself travels beside it."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    version: str = Field(min_length=1, max_length=64)
    serial: int = Field(ge=0, le=MAX_INT64)
    size: int = Field(ge=1, le=MAX_INT64)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Command(_Strict):
    """The signed body of every command."""

    kind: CommandKind
    device: str = Field(min_length=1, max_length=64)
    issued_ms: int = Field(ge=0, le=MAX_INT64)
    expires_ms: int = Field(ge=0, le=MAX_INT64)
    number: int = Field(ge=0, le=MAX_INT64)
    payload: dict[str, Any]

    def body(self) -> bytes:
        """Canonical msgpack bytes: what the authority signs and the device verifies."""
        return _pack_canonical(self.model_dump())

    def advice(self) -> SignalAdvice:
        """The payload as signal advice, or AdviceRejected."""
        try:
            p = AdvicePayload.model_validate(self.payload)
        except ValidationError as exc:
            raise AdviceRejected(f"signal advice payload is invalid: {_summary(exc)}") from None
        return SignalAdvice(self.device, tuple(p.greens_s), p.cycle_s, p.for_ms)

    def manifest(self) -> ModelManifest:
        """The payload as a model manifest, or ModelUpdateRejected."""
        try:
            return ModelManifest.model_validate(self.payload)
        except ValidationError as exc:
            raise ModelUpdateRejected(f"model manifest is invalid: {_summary(exc)}") from None


@dataclass(frozen=True)
class SignalAdvice:
    """Green time per green phase (in program order) for one device's light: what the stream decides.

    Travels only inside a signed `Command` (see `CommandIssuer.advice`)."""

    device: str
    greens_s: tuple[float, ...]
    cycle_s: float
    issued_ms: int  # the start of the interval the advice is for

    def payload(self) -> dict[str, Any]:
        """The command payload carrying this advice."""
        return {"greens_s": [float(g) for g in self.greens_s], "cycle_s": float(self.cycle_s),
                "for_ms": int(self.issued_ms)}


def _pack_canonical(obj: Any) -> bytes:
    def sort(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: sort(o[k]) for k in sorted(o)}
        if isinstance(o, list | tuple):
            return [sort(v) for v in o]
        return o

    return msgpack.packb(sort(obj), use_bin_type=True)


def _summary(exc: ValidationError) -> str:
    """What is wrong, without echoing the (possibly large) input."""
    return "; ".join(f"{'.'.join(str(p)[:64] for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])


def seal(command: Command, key: DeviceKey, attachment: bytes = b"") -> bytes:
    """The wire envelope of a command signed by the authority's key (attachment: a model's bytes)."""
    body = command.body()
    envelope: dict[str, bytes] = {"b": body, "s": key.sign(body)}
    if attachment:
        envelope["a"] = attachment
    return msgpack.packb(envelope, use_bin_type=True)


class CommandIssuer:
    """The command authority's side: numbers and signs commands to devices.

    Numbers are microseconds since the epoch, bumped to stay strictly increasing per device and kind,
    so a restarted issuer (or a standby taking over) continues above every number issued before it
    without shared state, as long as its clock does not run backwards."""

    def __init__(self, key: DeviceKey) -> None:
        self.key = key
        self._last: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def number(self, kind: str, device: str) -> int:
        """The next command number for (kind, device)."""
        with self._lock:
            n = max(time.time_ns() // 1000, self._last.get((kind, device), -1) + 1)
            self._last[(kind, device)] = n
            return n

    def issue(self, kind: CommandKind, device: str, payload: dict[str, Any], ttl_s: float,
              attachment: bytes = b"") -> bytes:
        """A signed envelope of one command to `device`, valid for `ttl_s` from now."""
        now = int(time.time() * 1000)
        cmd = Command(kind=kind, device=device, issued_ms=now, expires_ms=now + int(ttl_s * 1000),
                      number=self.number(kind, device), payload=payload)
        return seal(cmd, self.key, attachment)

    def advice(self, advice: SignalAdvice, ttl_s: float) -> bytes:
        """Signed signal advice for its device."""
        return self.issue("signal_advice", advice.device, advice.payload(), ttl_s)

    def model_update(self, onnx: bytes, name: str, version: str, serial: int, device: str,
                     ttl_s: float = 7 * 24 * 3600) -> bytes:
        """A signed model update for one device: the manifest signed, the ONNX bytes beside it."""
        manifest = ModelManifest(name=name, version=version, serial=serial, size=len(onnx),
                                 sha256=hashlib.sha256(onnx).hexdigest())
        return self.issue("model_update", device, manifest.model_dump(), ttl_s, onnx)


def sign_model_update(onnx: bytes, name: str, version: str, serial: int, authority: DeviceKey,
                      device: str) -> bytes:
    """The MQTT payload of a model update for `device`, signed by the command authority."""
    return CommandIssuer(authority).model_update(onnx, name, version, serial, device)


def open_envelope(payload: bytes, public_key: bytes, max_bytes: int) -> tuple[Command, bytes]:
    """Check size, shape and signature of an envelope; its command and attachment (no target, expiry or
    number check: see `CommandVerifier`)."""
    if len(payload) > max_bytes:
        raise CommandTooLarge(f"command of {len(payload)} bytes exceeds this device's {max_bytes}")
    if not public_key:
        raise UnsignedCommand("no command key configured (CITYGRID_EDGE__COMMAND_PUBLIC_KEY); this device "
                              "acts on no command")
    try:
        raw = msgpack.unpackb(payload, raw=False, strict_map_key=True, max_array_len=0, max_map_len=3)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise MalformedCommand(f"not a command envelope (msgpack map): {str(exc)[:200]}") from None
    if not isinstance(raw, dict) or not ENVELOPE_KEYS <= set(raw) <= ENVELOPE_KEYS | OPTIONAL_KEYS \
            or not all(isinstance(v, bytes) for v in raw.values()):
        raise MalformedCommand("a command envelope is exactly {b: body, s: signature[, a: attachment]}, "
                               "all binary")
    body, sig, attachment = raw["b"], raw["s"], raw.get("a", b"")
    try:
        verify_signature(public_key, body, sig)
    except BadSignature:
        raise UnsignedCommand("command is not signed by the trusted command key") from None
    try:
        cmd = Command.model_validate(msgpack.unpackb(body, raw=False, strict_map_key=True))
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        msg = _summary(exc) if isinstance(exc, ValidationError) else str(exc)[:200]
        raise MalformedCommand(f"signed body is not a command: {msg}") from None
    return cmd, attachment


class CommandGuard:
    """The last command number a device accepted, per kind, kept in one small file replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            raw = json.loads(self.path.read_text()) if self.path.exists() else {}
            self._last = {str(k): int(v) for k, v in raw.items()}
        except (OSError, ValueError, AttributeError) as exc:
            raise CitygridError(f"command state {self.path} is unreadable ({exc}); restore it from a "
                                "backup or remove it only after rotating the command key") from exc

    def last(self, kind: str) -> int:
        """The highest number accepted for `kind` (-1: none yet)."""
        return self._last.get(kind, -1)

    def accept(self, cmd: Command) -> None:
        """Raise ReplayedCommand unless `cmd` is newer than every one accepted; then persist its number."""
        with self._lock:
            if cmd.number <= self.last(cmd.kind):
                raise ReplayedCommand(f"{cmd.kind} number {cmd.number} is not above the last accepted "
                                      f"{self.last(cmd.kind)}")
            last = {**self._last, cmd.kind: cmd.number}
            atomic_write(self.path, json.dumps(last, sort_keys=True))
            self._last = last


@dataclass
class CommandVerifier:
    """A device's check of every command before it acts: size, envelope, signature, target, expiry, number.

    Refusals are counted (by kind and reason) and logged with the reason and what was wrong, never with
    key material or the payload."""

    public_key: bytes
    device: str
    guard: CommandGuard
    max_bytes: int
    max_skew_ms: int = 300_000

    def open(self, payload: bytes, kind: CommandKind, now_ms: int | None = None) -> tuple[Command, bytes]:
        """The accepted command and its attachment; CommandRejected (counted and logged) otherwise."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        try:
            cmd, attachment = self._check(payload, kind, now_ms)
        except CommandRejected as exc:
            refused(kind, exc, self.device)
            raise
        ACCEPTED.labels(kind).inc()
        return cmd, attachment

    def check_fresh(self, cmd: Command, now_ms: int) -> None:
        """Raise ExpiredCommand if `cmd` is outside its validity at `now_ms`."""
        if cmd.issued_ms > now_ms + self.max_skew_ms:
            raise NotYetValid(f"{cmd.kind} claims to be issued {cmd.issued_ms - now_ms} ms in the future")
        if cmd.expires_ms <= now_ms:
            raise ExpiredCommand(f"{cmd.kind} expired {now_ms - cmd.expires_ms} ms ago")

    def _check(self, payload: bytes, kind: CommandKind, now_ms: int) -> tuple[Command, bytes]:
        cmd, attachment = open_envelope(payload, self.public_key, self.max_bytes)
        if cmd.device != self.device:
            raise MisTargetedCommand(f"{cmd.kind} is for device {cmd.device}, not this one")
        if cmd.kind != kind:
            raise MisTargetedCommand(f"a {cmd.kind} command arrived where {kind} is expected")
        if cmd.kind == "model_update":
            _check_attachment(cmd.manifest(), attachment)
        elif attachment:
            raise MalformedCommand(f"a {cmd.kind} command carries no attachment")
        else:
            cmd.advice()
        self.check_fresh(cmd, now_ms)
        self.guard.accept(cmd)
        return cmd, attachment


def _check_attachment(manifest: ModelManifest, onnx: bytes) -> None:
    if len(onnx) != manifest.size:
        raise ModelUpdateRejected(f"model {manifest.name} {manifest.version}: {len(onnx)} bytes, the signed "
                                  f"manifest says {manifest.size}; resend the update")
    if hashlib.sha256(onnx).hexdigest() != manifest.sha256:
        raise ModelUpdateRejected(f"model {manifest.name} {manifest.version}: bytes do not match the "
                                  "signed SHA-256; resend the update")


def refused(kind: str, exc: CommandRejected, device: str) -> None:
    """Count and log one refused command (reason and message only: never keys or payloads)."""
    REFUSED.labels(kind, exc.reason).inc()
    log.warning("command_refused", kind=kind, reason=exc.reason, error=str(exc)[:300], device=device)


def command_public_key(hex_key: str) -> bytes:
    """The trusted key from its settings form (hex; empty: trust none)."""
    return bytes.fromhex(hex_key) if hex_key else b""
