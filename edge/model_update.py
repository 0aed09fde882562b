"""Signed, versioned ONNX model updates and the device's model store (atomic swap, rollback).

Trust: the operator holds an ed25519 key (a citygrid.signing.DeviceKey kept off
the devices); every agent is configured with the operator's public key
(EdgeSettings.operator_public_key) and installs only updates whose manifest
that key signed. The manifest names the model, a version string, a serial
number that must grow (so an old, validly signed model cannot be replayed to
downgrade a device) and the SHA-256 of the ONNX bytes.

On disk: <models_dir>/<name>-<serial>.onnx plus state.json {current, previous},
replaced atomically, so a kill at any moment leaves one consistent choice.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import structlog
from prometheus_client import Counter

from citygrid.commands import ModelUpdateRejected, open_model_update
from citygrid.edge.errors import ModelError
from citygrid.edge.inference import OnnxModel
from citygrid.storage import atomic_write

log = structlog.get_logger(__name__)
UPDATES = Counter("citygrid_edge_model_updates_total", "Model updates received, by outcome", ["outcome"])


class ModelStore:
    """The device's installed models: the one in use, the one before it, and how to switch."""

    def __init__(self, directory: Path, operator_public_key: bytes = b"", threads: int = 1) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.operator_public_key = operator_public_key
        self.threads = threads

    def _state(self) -> dict:
        path = self.dir / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _write_state(self, state: dict) -> None:
        atomic_write(self.dir / "state.json", json.dumps(state))

    def _load(self, file: str) -> OnnxModel:
        model = OnnxModel(self.dir / file, self.threads)
        model.probe()
        return model

    def install(self, source: Path, serial: int = 0) -> OnnxModel:
        """Install a local model file as current (provisioning, or the deploy's first model)."""
        model = OnnxModel(source, self.threads)
        data = Path(source).read_bytes()
        return self._activate(f"{model.name}-{serial}-{hashlib.sha256(data).hexdigest()[:8]}.onnx",
                              data, serial)

    def current(self) -> OnnxModel | None:
        """The model in use, falling back to the previous one if it no longer loads."""
        state = self._state()
        if not state.get("current"):
            return None
        try:
            return self._load(state["current"])
        except ModelError as exc:
            log.error("current_model_broken_rolling_back", error=str(exc))
            return self.rollback()

    def apply(self, payload: bytes) -> OnnxModel:
        """Verify an update, install it and make it current; on any failure keep the current model."""
        try:
            manifest, onnx = open_model_update(payload, self.operator_public_key)
            serial = self._state().get("serial", -1)
            if manifest.serial <= serial:
                raise ModelUpdateRejected(f"model serial {manifest.serial} is not newer than the installed "
                                          f"{serial}; publish with a higher serial")
            model = self._activate(f"{manifest.name}-{manifest.serial}.onnx", onnx, manifest.serial)
        except ModelUpdateRejected as exc:
            UPDATES.labels("refused").inc()
            log.warning("model_update_refused", error=str(exc))
            raise
        except ModelError as exc:
            UPDATES.labels("failed").inc()
            log.error("model_update_failed_kept_previous", error=str(exc))
            raise ModelUpdateRejected(f"new model does not load or run, kept the current one: {exc}") from exc
        UPDATES.labels("installed").inc()
        log.info("model_updated", name=model.name, version=model.version, serial=manifest.serial)
        return model

    def _activate(self, file: str, onnx: bytes, serial: int) -> OnnxModel:
        atomic_write(self.dir / file, onnx)
        model = self._load(file)  # raises ModelError: state.json still names the old model
        state = self._state()
        self._write_state({"current": file, "previous": state.get("current"), "serial": serial,
                           "previous_serial": state.get("serial")})
        return model

    def rollback(self) -> OnnxModel | None:
        """Make the previous model current again (after the current one failed in use)."""
        state = self._state()
        previous = state.get("previous")
        if not previous:
            log.error("no_previous_model")
            return None
        # The failed model's serial stays recorded so the same update is not reinstalled.
        self._write_state({"current": previous, "previous": None, "serial": state.get("serial"),
                           "previous_serial": None})
        UPDATES.labels("rolled_back").inc()
        log.warning("model_rolled_back", current=previous, failed=state.get("current"))
        return self._load(previous)
