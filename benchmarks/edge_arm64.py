"""The edge agent emulated on arm64 (Debian bookworm, qemu-user-static) vs native x86-64, same run.

Both sides run the same measurement, pinned to one core (taskset -c 0), as one process each:
- inference: the load nowcast (ONNX, 1 intra-op thread), one reading at a time; p50 / p99;
- agent: the whole loop (replay of a real SimBench meter profile → ONNX → sign → SQLite outbox, commit
  every 64 → MQTT QoS 1 over TLS as an enrolled device → PUBACK → delete) to the shared Mosquitto,
  readings/s until every reading is acknowledged;
- RSS: VmRSS / VmHWM of that process with the model loaded, after the run. Under emulation this is
  the qemu process as the kernel sees it, so it includes qemu's own memory and translation cache: an
  upper bound for a real arm64 board.
The arm64 side is a device from scripts/setup/arm64.sh (its own overlay kept in
.cache/arm64/bench-device, so its venv, with aarch64 wheels of numpy, onnxruntime, pynacl and
paho-mqtt from the package index, is built once). Emulation measures the software on arm64, not a
Raspberry Pi's speed: qemu's slowdown is what the ratio shows.

    PYTHONPATH=.dev .venv/bin/python -m benchmarks.edge_arm64 [--readings N] [--rows N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

WORK = "/opt/bench"  # inside the arm64 device


def _rss() -> dict[str, float]:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {k: int(status[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


class ListReplay:
    """A driver replaying recorded kW values, one quarter-hour apart."""

    kind = "meter"

    def __init__(self, values: list[float], start_ms: int) -> None:
        self.values, self.start_ms = values, start_ms

    def measurements(self) -> Iterator[tuple[int, dict[str, float]]]:
        """(ts_ms, values), one quarter-hour apart."""
        for i, kw in enumerate(self.values):
            yield self.start_ms + i * 900_000, {"p_kw": kw}


def worker(model: Path, profile: Path, key_file: Path, readings: int, rows: int) -> dict:
    """One side's measurements (runs natively or inside the arm64 device)."""
    import numpy as np

    from citygrid.edge.agent import EdgeAgent
    from citygrid.edge.inference import FEATURES, OnnxModel, features
    from citygrid.edge.model_update import ModelStore
    from citygrid.edge.store_forward import Outbox
    from citygrid.mqtt import Publisher
    from citygrid.settings import CitygridSettings
    from citygrid.signing import DeviceKey

    values = json.loads(profile.read_text())
    onnx = OnnxModel(model)
    x = np.asarray([features(values[max(0, i - 4):i + 1], i * 900_000) for i in range(rows)],
                   dtype=np.float32)
    assert x.shape[1] == len(FEATURES)
    for i in range(50):
        onnx.predict(x[i:i + 1])
    ms = np.empty(rows)
    for i in range(rows):
        t0 = time.perf_counter()
        onnx.predict(x[i:i + 1])
        ms[i] = (time.perf_counter() - t0) * 1e3
    s = CitygridSettings()
    key = DeviceKey.load(key_file)
    with tempfile.TemporaryDirectory() as tmp:
        store = ModelStore(Path(tmp) / "models")
        store.install(model)
        pub = Publisher(s.mqtt, client_id=s.mqtt.client_id)
        pub.connect()
        replay = ListReplay([values[i % len(values)] for i in range(readings)], int(time.time() * 1000))
        agent = EdgeAgent(key, replay, pub, outbox=Outbox(Path(tmp) / "outbox.db"), models=store,
                          commit_every=64)
        t0 = time.perf_counter()
        made = agent.run(drain_timeout_s=900)
        elapsed = time.perf_counter() - t0
        unacked = len(agent.outbox)
        pub.close()
    import platform

    return {"machine": platform.machine(), "readings": made, "unacked": unacked, "seconds": elapsed,
            "per_s": made / elapsed, "infer_p50_ms": float(np.percentile(ms, 50)),
            "infer_p99_ms": float(np.percentile(ms, 99)), **{f"{k}_mb": v for k, v in _rss().items()}}


def _bench_identity(tmp: Path, root: str) -> tuple[Path, dict[str, str]]:
    """An enrolled device (its key file) and the CITYGRID_* environment its agent runs with."""
    from citygrid.ops.enroll import enroll_device
    from citygrid.settings import CitygridSettings, PathSettings
    from citygrid.signing import DeviceKey

    s = CitygridSettings()
    # Its own registry (never the platform's), its own topic root on the shared broker.
    s = s.model_copy(update={"mqtt": s.mqtt.model_copy(update={"readings_topic": f"{root}/readings"}),
                             "paths": PathSettings.under(tmp / "data", s.paths.cache_dir)})
    key = DeviceKey.generate()
    key.save(tmp / "device.key")
    creds = enroll_device(s, key.public_key, "meter", "d1", "benchmark")
    creds.save(tmp / "mqtt.json")
    shutil.copyfile(s.mqtt.ca_file, tmp / "ca.crt")
    env = {"CITYGRID_MQTT__HOST": s.mqtt.host, "CITYGRID_MQTT__PORT": str(s.mqtt.port),
           "CITYGRID_MQTT__READINGS_TOPIC": f"{root}/readings", "CITYGRID_EDGE__INTRA_OP_THREADS": "1",
           "OMP_NUM_THREADS": "1", "HOME": "/root"}
    return tmp / "device.key", env


def _inputs(tmp: Path) -> tuple[Path, Path]:
    """The bench model (trained once, as benchmarks.edge_agent does) and a real meter profile (JSON)."""
    from citygrid.settings import CitygridSettings
    from citygrid.sim.profiles import load_profiles
    from citygrid.sim.train_models import train

    cache = CitygridSettings().paths.cache_dir
    model = cache / "models" / "load_nowcast-bench.onnx"
    if not model.exists():
        train(cache, cache / "models", version="bench")
    profile = next(p for p in load_profiles(cache) if p.kind == "meter")
    (tmp / "profile.json").write_text(json.dumps([round(float(v), 4) for v in profile.kw]))
    return model, tmp / "profile.json"


def run_native(tmp: Path, env: dict[str, str], args: list[str]) -> dict:
    """The worker on this machine's own interpreter, on core 0."""
    import citygrid

    env = {**env, "CITYGRID_MQTT__CREDENTIALS_FILE": str(tmp / "mqtt.json"),
           "CITYGRID_MQTT__CA_FILE": str(tmp / "ca.crt"),
           "PYTHONPATH": str(Path(citygrid.__file__).parent.parent)}
    out = subprocess.run(["taskset", "-c", "0", sys.executable, __file__, "--worker", *args], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"native worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_arm64(tmp: Path, env: dict[str, str], args: list[str], wheel: Path) -> dict:
    """The worker inside the arm64 device, its venv built once (aarch64 wheels from the index)."""
    from citygrid.devtools.arm64 import WHEELHOUSE, prefetch_wheels, spawn_in_device
    from citygrid.settings import CitygridSettings

    cache = CitygridSettings().paths.cache_dir
    prefetch_wheels(cache, wheel, tmp / "prefetch")  # the device's pip, from the index, once
    work = cache.resolve() / "arm64" / "bench-device"
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()[:12]
    files = {f"{WORK}/{name}": ((tmp / name).read_bytes(), 0o600)
             for name in ("device.key", "mqtt.json", "ca.crt", "profile.json", "model.onnx")}
    files[f"{WORK}/edge_arm64.py"] = (Path(__file__).read_bytes(), 0o644)
    files[f"{WORK}/{wheel.name}"] = (wheel.read_bytes(), 0o644)
    files["/etc/pip.conf"] = (f"[global]\nfind-links = {WHEELHOUSE}\nno-index = true\n".encode(), 0o644)
    install = (f"test -f {WORK}/venv/.{digest} || {{ rm -rf {WORK}/venv && python3 -m venv {WORK}/venv && "
               f"{WORK}/venv/bin/pip install -q --disable-pip-version-check '{WORK}/{wheel.name}[edge]' && "
               f"touch {WORK}/venv/.{digest}; }}")
    inside = ["taskset", "-c", "0", f"{WORK}/venv/bin/python", f"{WORK}/edge_arm64.py", "--worker",
              *(a.replace(str(tmp), WORK) for a in args)]
    log = tmp / "arm64.log"
    env = {**env, "CITYGRID_MQTT__CREDENTIALS_FILE": f"{WORK}/mqtt.json",
           "CITYGRID_MQTT__CA_FILE": f"{WORK}/ca.crt"}
    proc = spawn_in_device(cache, work, ["/bin/sh", "-c", f"{install} && exec {' '.join(inside)}"], log,
                           files, env=env)
    if proc.wait(3600) != 0:
        raise SystemExit(f"arm64 worker failed:\n{log.read_text()[-3000:]}")
    return json.loads(next(line for line in reversed(log.read_text().splitlines()) if line.startswith("{")))


def report(native: dict, arm: dict) -> None:
    """The table: each measure natively, emulated on arm64, and the ratio."""
    from rich.console import Console
    from rich.table import Table

    table = Table("measure (one core, taskset -c 0)", f"native {native['machine']}",
                  f"emulated {arm['machine']}", "arm64 / native",
                  title="edge agent: arm64 under qemu-user-static vs native")
    for label, key, fmt in (("readings/s (sign, ONNX, outbox, MQTT QoS 1 TLS)", "per_s", "{:,.0f}"),
                            ("inference p50 per reading", "infer_p50_ms", "{:.3f} ms"),
                            ("inference p99 per reading", "infer_p99_ms", "{:.3f} ms"),
                            ("RSS after the run (qemu's included)", "VmRSS_mb", "{:.0f} MB"),
                            ("peak RSS", "VmHWM_mb", "{:.0f} MB")):
        table.add_row(label, fmt.format(native[key]), fmt.format(arm[key]), f"{arm[key] / native[key]:.2f}x")
    Console().print(table)


def main() -> None:
    """Run both sides, print the table, write benchmarks/results/edge_arm64.json."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=3000)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--worker", nargs="*")
    a = ap.parse_args()
    if a.worker:
        model, profile, key, readings, rows = a.worker
        print(json.dumps(worker(Path(model), Path(profile), Path(key), int(readings), int(rows))))
        return
    from benchmarks.results import save
    from citygrid.ops.release import build_wheel, project_root

    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        model, profile = _inputs(tmp)
        shutil.copyfile(model, tmp / "model.onnx")
        key, env = _bench_identity(tmp, f"bench-arm64-{uuid.uuid4().hex[:8]}")
        args = [str(tmp / "model.onnx"), str(profile), str(key), str(a.readings), str(a.rows)]
        native = run_native(tmp, env, args)
        t0 = time.monotonic()
        arm = run_arm64(tmp, env, args, build_wheel(project_root(), tmp / "wheel"))
        arm["wall_s_including_setup"] = time.monotonic() - t0
    report(native, arm)
    keys = ("per_s", "infer_p50_ms", "infer_p99_ms", "VmRSS_mb", "VmHWM_mb")
    ratios = {k: arm[k] / native[k] for k in keys}
    path = save("edge_arm64", {"native": native, "arm64_emulated": arm, "ratio_arm64_over_native": ratios,
                               "cpu_count": os.cpu_count()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
