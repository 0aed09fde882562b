"""`citygrid edge publish-model`: release an ONNX model to named devices as signed, retained updates.

Each target gets an update of its own: the model's manifest (name, version, serial, size, SHA-256;
citygrid.commands.ModelManifest) signed by the command authority's key for that one device, the ONNX
bytes beside it, published retained at QoS 1 on that device's model topic as the "models" service
identity (the broker lets it publish only there). Retained, so a device that is offline or not yet
installed finds it when it connects; per device, so the same update replayed onto another device
names the wrong target and is refused there.

Checked here before anything is published, so the operator hears of a mistake instead of a device
refusing it quietly: the model loads and runs (the device's own loader), every target is enrolled and
not revoked, and each update fits the device's and the broker's size limits. A device installs an
update only if its serial is above the one it runs (the default serial is the publish time in
seconds, so a later release is always newer); a later publish to a device replaces its retained one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from citygrid.commands import CommandIssuer
from citygrid.edge.errors import ModelError
from citygrid.edge.inference import OnnxModel
from citygrid.errors import CitygridError, UnknownDevice
from citygrid.mqtt import Publisher, PublishError
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey, DeviceRegistry
from citygrid.topics import model_updates_topic

log = structlog.get_logger(__name__)
DEFAULT_TTL_S = 7 * 24 * 3600  # a retained update a device may still install this long after its release


class ModelReleaseError(CitygridError, reason="model_release"):
    """The model, a target or the broker refused the release; nothing was published to that target."""


@dataclass(frozen=True)
class ModelRelease:
    """What was published: the model's identity and the devices it went to."""

    name: str
    version: str
    serial: int
    size: int
    sha256: str
    devices: tuple[str, ...]


def model_identity(path: Path) -> tuple[str, str]:
    """(name, version) from the model's own metadata, after loading and running it once as a device
    would; ModelReleaseError if it does not."""
    try:
        model = OnnxModel(path)
        model.probe()
    except ModelError as exc:
        raise ModelReleaseError(f"{path} is no model a device can run: {exc}") from None
    return model.name, model.version


def enrolled_targets(s: CitygridSettings, devices: Sequence[str]) -> tuple[str, ...]:
    """The named devices, each checked enrolled and not revoked (order kept, duplicates dropped)."""
    if not devices:
        raise ModelReleaseError("name at least one target device (--device ID)")
    registry = DeviceRegistry.load(s.paths.device_registry)
    for device in devices:
        try:
            entry = registry.enrolment(device)
        except UnknownDevice:
            raise ModelReleaseError(f"device {device[:64]!r} is not enrolled in "
                                    f"{s.paths.device_registry}; nothing was published") from None
        if entry.revoked:
            raise ModelReleaseError(f"device {device} is revoked; nothing was published")
    return tuple(dict.fromkeys(devices))


def publish_model(s: CitygridSettings, model: Path, devices: Sequence[str], authority: DeviceKey,
                  serial: int | None = None, ttl_s: float = DEFAULT_TTL_S) -> ModelRelease:
    """Sign `model` for each named device and publish it retained on its model topic, as `s`'s broker
    identity (the "models" service); returns once the broker acknowledged every one."""
    name, version = model_identity(model)
    targets = enrolled_targets(s, devices)
    onnx = Path(model).read_bytes()
    serial = int(time.time()) if serial is None else serial
    issuer = CommandIssuer(authority)
    limit = min(s.edge.max_model_update_bytes, s.mqtt.max_message_bytes)
    payloads = {d: issuer.model_update(onnx, name, version, serial, d, ttl_s) for d in targets}
    if (largest := max(len(p) for p in payloads.values())) > limit:
        raise ModelReleaseError(f"the update is {largest} bytes; devices and the broker take at most {limit} "
                                "(CITYGRID_EDGE__MAX_MODEL_UPDATE_BYTES, CITYGRID_MQTT__MAX_MESSAGE_BYTES)")
    pub = Publisher(s.mqtt, client_id=s.mqtt.client_id or "citygrid-models")
    pub.connect()
    try:
        for device, payload in payloads.items():
            topic = model_updates_topic(s.edge.model_updates_topic, device)
            info = pub.client.publish(topic, payload, qos=1, retain=True)
            info.wait_for_publish(60)
            if not info.is_published():
                raise PublishError(f"the broker did not acknowledge the update for {device}; publish again")
            log.info("model_published", model=name, version=version, serial=serial, device=device,
                     topic=topic, bytes=len(payload))
    finally:
        pub.close()
    return ModelRelease(name, version, serial, len(onnx), hashlib.sha256(onnx).hexdigest(), targets)
