"""Commands to devices, as they travel over MQTT: signal advice and signed model updates.

One typed model per command, so the sender (the stream layer, the operator's
tools) and the device that acts on it read the same definition.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import msgpack

from citygrid.errors import BadSignature, CitygridError
from citygrid.signing import DeviceKey, verify_signature


class CommandRejected(CitygridError, reason="rejected"):
    """A command to a device (signal advice, model update) that the device must not act on."""


class AdviceRejected(CommandRejected, reason="bad_advice"):
    """A command on an intersection's topic is not usable signal advice for it; the light keeps its plan."""


class ModelUpdateRejected(CommandRejected, reason="bad_model_update"):
    """A model update failed its signature, hash or version check and was not installed."""


@dataclass(frozen=True)
class SignalAdvice:
    """Green time per green phase (in program order) for one device's light: what the stream sends."""

    device: str
    greens_s: tuple[float, ...]
    cycle_s: float
    issued_ms: int

    def encode(self) -> bytes:
        """JSON on the wire: commands are few and humans read them while debugging."""
        return json.dumps(asdict(self)).encode()

    @classmethod
    def decode(cls, payload: bytes) -> SignalAdvice:
        """Parse a command, raising AdviceRejected for anything that is not well-formed advice."""
        try:
            raw = json.loads(payload)
            advice = cls(str(raw["device"]), tuple(float(g) for g in raw["greens_s"]),
                         float(raw["cycle_s"]), int(raw["issued_ms"]))
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise AdviceRejected(f"command is not signal advice ({exc}); send SignalAdvice JSON") from exc
        if not advice.greens_s or not all(math.isfinite(g) for g in advice.greens_s):
            raise AdviceRejected("signal advice carries no usable green times")
        return advice


@dataclass(frozen=True)
class ModelManifest:
    """What the operator signs about one model file."""

    name: str
    version: str
    serial: int
    sha256: str

    def encode(self) -> bytes:
        """Canonical bytes (msgpack, sorted keys) that the signature covers."""
        return msgpack.packb({"name": self.name, "serial": self.serial, "sha256": self.sha256,
                              "version": self.version})


def sign_model_update(onnx: bytes, name: str, version: str, serial: int, operator: DeviceKey) -> bytes:
    """The MQTT payload of a model update, signed by the operator."""
    manifest = ModelManifest(name, version, serial, hashlib.sha256(onnx).hexdigest()).encode()
    return msgpack.packb({"m": manifest, "s": operator.sign(manifest), "o": onnx})


def open_model_update(payload: bytes, operator_public_key: bytes) -> tuple[ModelManifest, bytes]:
    """Check an update's signature and hash; return its manifest and ONNX bytes or refuse it."""
    if not operator_public_key:
        raise ModelUpdateRejected("no operator key configured (CITYGRID_EDGE__OPERATOR_PUBLIC_KEY); "
                                  "this device accepts no model updates")
    try:
        raw = msgpack.unpackb(payload, raw=False)
        m_bytes, sig, onnx = raw["m"], raw["s"], raw["o"]
        verify_signature(operator_public_key, m_bytes, sig)
        m = msgpack.unpackb(m_bytes, raw=False)
        manifest = ModelManifest(str(m["name"]), str(m["version"]), int(m["serial"]), str(m["sha256"]))
    except BadSignature as exc:
        raise ModelUpdateRejected("model update is not signed by the trusted operator key") from exc
    except (ValueError, KeyError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as exc:
        raise ModelUpdateRejected(f"model update is not a citygrid update envelope: {exc}") from exc
    if hashlib.sha256(onnx).hexdigest() != manifest.sha256:
        raise ModelUpdateRejected(f"model {manifest.name} {manifest.version}: bytes do not match the "
                                  "signed SHA-256; resend the update")
    return manifest, onnx
