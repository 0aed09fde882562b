"""ONNX inference on the device: one intra-op thread, features built from the reading itself.

A model carries its own contract in the ONNX metadata (name, version, the
reading value it reads, its feature list and output names), written by
`citygrid.sim.train_models`, so the agent needs no side file to know how to
feed it and every reading says which model version scored it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from pathlib import Path

import numpy as np
import onnxruntime as ort
from prometheus_client import Histogram

from citygrid.edge.errors import ModelError
from citygrid.reading import ModelOutput

LAGS = 4
FEATURES = [*(f"lag{i}" for i in range(LAGS)), "tod_sin", "tod_cos"]
INFER_SECONDS = Histogram("citygrid_edge_inference_seconds", "ONNX inference time per reading",
                          buckets=(5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1))


def features(history: list[float] | deque[float], ts_ms: int) -> list[float]:
    """The feature row for the newest value: the last LAGS values (newest first) and time of day."""
    lags = list(history)[-LAGS:][::-1]
    lags += [lags[-1] if lags else 0.0] * (LAGS - len(lags))
    day = (ts_ms / 1000.0 % 86400) / 86400 * 2 * math.pi
    return [*lags, math.sin(day), math.cos(day)]


class OnnxModel:
    """A loaded model and the contract from its metadata."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # One row at a time: an arena sized for batches only costs a small device memory.
        opts.enable_cpu_mem_arena = False
        opts.enable_mem_pattern = False
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped Fail/InvalidGraph errors
            raise ModelError(f"cannot load ONNX model {path}: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        missing = {"citygrid.name", "citygrid.version", "citygrid.input"} - meta.keys()
        if missing:
            raise ModelError(f"{path} lacks metadata {sorted(missing)}; build it with citygrid edge train")
        self.path = Path(path)
        self.name = meta["citygrid.name"]
        self.version = meta["citygrid.version"]
        self.input_value = meta["citygrid.input"]
        self.input_name = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        # Classifier-style graphs (IsolationForest) put a label first; metadata names the score.
        self.output = meta.get("citygrid.output", names[0])
        if self.output not in names:
            raise ModelError(f"{path} has no output {self.output!r} (it has {names})")
        self.label = meta.get("citygrid.label", self.output)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """The model's first output for a (n, features) float32 batch, as a flat array."""
        try:
            out = self.session.run([self.output], {self.input_name: rows})[0]
        except Exception as exc:  # any runtime failure means this model cannot serve
            raise ModelError(f"model {self.name} {self.version} failed to run: {exc}") from exc
        return np.asarray(out, dtype=np.float64).reshape(len(rows), -1)[:, 0]

    def probe(self) -> None:
        """Run one neutral row, so a model that loads but cannot run is caught before use."""
        value = self.predict(np.zeros((1, len(FEATURES)), dtype=np.float32))
        if not np.all(np.isfinite(value)):
            raise ModelError(f"model {self.name} {self.version} returns non-finite values")


class Scorer:
    """Keeps one device's recent values and scores each new reading with the current model."""

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        self.history: deque[float] = deque(maxlen=LAGS)

    def score(self, ts_ms: int, values: dict[str, float]) -> ModelOutput | None:
        """The model's output for this reading, or None if the reading lacks the model's input."""
        value = values.get(self.model.input_value)
        if value is None:
            return None
        self.history.append(value)
        row = np.asarray([features(self.history, ts_ms)], dtype=np.float32)
        t0 = time.perf_counter()
        y = float(self.model.predict(row)[0])
        INFER_SECONDS.observe(time.perf_counter() - t0)
        if not math.isfinite(y):
            raise ModelError(f"model {self.model.name} {self.model.version} returned {y}")
        return ModelOutput(name=self.model.name, version=self.model.version,
                           outputs={self.model.label: round(y, 6)})
