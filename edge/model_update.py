"""Signed, versioned ONNX model updates and the device's model store (atomic swap, rollback).

Trust: an update is a command (citygrid.commands) from the command authority,
whose public key every agent is deployed with (EdgeSettings.command_public_key).
Before anything else the store checks the payload's length against the settings
limit, then the envelope, the signature, that the update names this device, its
expiry, its command number, and the ONNX bytes' size and SHA-256 against the
signed manifest; the manifest's serial must grow (so an old, validly signed
model cannot be replayed to downgrade a device). A refused update is remembered
by the SHA-256 of its payload, so a retained one redelivered after every restart
is skipped quietly instead of being re-examined (and re-logged) forever.

On disk: <models_dir>/<name>-<serial>.onnx plus state.json {current, previous},
replaced atomically, so a kill at any moment leaves one consistent choice;
command-numbers.json and refused.json beside them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import structlog
from prometheus_client import Counter

from citygrid.commands import (
    CommandGuard,
    CommandRejected,
    CommandTooLarge,
    CommandVerifier,
    ModelUpdateRejected,
    NotYetValid,
    refused,
)
from citygrid.edge.errors import ModelError
from citygrid.edge.inference import OnnxModel
from citygrid.storage import atomic_write

log = structlog.get_logger(__name__)
UPDATES = Counter("citygrid_edge_model_updates_total", "Model updates received, by outcome", ["outcome"])
# Refused updates remembered (by payload hash) so a retained one is not re-examined on every restart.
REMEMBER_REFUSED = 64


class ModelStore:
    """The device's installed models: the one in use, the one before it, and how to switch."""

    def __init__(self, directory: Path, command_public_key: bytes = b"", threads: int = 1,
                 max_update_bytes: int = 8 * 1024 * 1024, max_skew_s: int = 300) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.command_public_key = command_public_key
        self.threads = threads
        self.max_update_bytes = max_update_bytes
        self.max_skew_ms = max_skew_s * 1000
        self.guard = CommandGuard(self.dir / "command-numbers.json")

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
        """Install a local model file as current (provisioning, or the deploy's first model). It never
        lowers the serial an update must exceed, so a redeploy cannot reopen a replayed old update."""
        model = OnnxModel(source, self.threads)
        data = Path(source).read_bytes()
        serial = max(serial, self._state().get("serial") or 0)
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

    def apply(self, payload: bytes, device: str) -> OnnxModel:
        """Verify an update for `device`, install it and make it current; on any failure keep the current
        model and raise ModelUpdateRejected (or another CommandRejected: too_large, replayed, …)."""
        if len(payload) > self.max_update_bytes:  # first: nothing of an oversized update is examined
            exc = CommandTooLarge(f"model update of {len(payload)} bytes exceeds {self.max_update_bytes}")
            UPDATES.labels("refused").inc()
            refused("model_update", exc, device)
            raise exc
        digest = hashlib.sha256(payload).hexdigest()
        if digest in self._refused():
            UPDATES.labels("skipped").inc()
            log.info("model_update_skipped_refused_before", sha256=digest)
            raise ModelUpdateRejected("this update was refused before; publish a new one")
        try:
            return self._apply(payload, device)
        except NotYetValid:
            raise  # the device's clock may be behind (no NTP yet): examine it again later
        except CommandRejected:
            self._remember_refused(digest)
            raise

    def _apply(self, payload: bytes, device: str) -> OnnxModel:
        verifier = CommandVerifier(self.command_public_key, device, self.guard, self.max_update_bytes,
                                   self.max_skew_ms)
        try:
            cmd, onnx = verifier.open(payload, "model_update")  # counted and logged when refused
            manifest = cmd.manifest()
            serial = self._state().get("serial", -1)
            if manifest.serial <= serial:
                raise ModelUpdateRejected(f"model serial {manifest.serial} is not newer than the installed "
                                          f"{serial}; publish with a higher serial")
            model = self._activate(f"{manifest.name}-{manifest.serial}.onnx", onnx, manifest.serial)
        except CommandRejected as exc:
            UPDATES.labels("refused").inc()
            log.warning("model_update_refused", reason=exc.reason, error=str(exc)[:300])
            raise
        except ModelError as exc:
            UPDATES.labels("failed").inc()
            log.error("model_update_failed_kept_previous", error=str(exc)[:300])
            raise ModelUpdateRejected(f"new model does not load or run, kept the current one: {exc}") from exc
        UPDATES.labels("installed").inc()
        log.info("model_updated", name=model.name, version=model.version, serial=manifest.serial)
        return model

    def _refused(self) -> list[str]:
        path = self.dir / "refused.json"
        try:
            return json.loads(path.read_text()) if path.exists() else []
        except (OSError, ValueError):
            return []  # a lost memory only means refusing (and logging) a known bad update once more

    def _remember_refused(self, digest: str) -> None:
        atomic_write(self.dir / "refused.json", json.dumps([*self._refused(), digest][-REMEMBER_REFUSED:]))

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
