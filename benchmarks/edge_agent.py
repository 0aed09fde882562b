"""Edge agent on one core: ONNX inference latency vs scikit-learn, agent RSS, QoS 1 publish rate.

Every measurement runs in its own process pinned to one core (taskset -c 0),
as on a Raspberry-Pi-class device where the agent gets one core:
- inference: the load nowcast (a real model trained on SimBench profiles),
  one reading at a time, onnxruntime (1 intra-op thread) vs scikit-learn's
  predict on the same rows; p50/p99 and the ratio;
- agent: the whole loop (replay driver → ONNX → sign → SQLite outbox → MQTT
  QoS 1 → PUBACK → delete) to the shared Mosquitto, readings/s until every
  reading is acknowledged, with the outbox committing every reading and
  every 64 readings; RSS of that process with the model loaded;
- baseline in the same run: plain paho QoS 1 publishes of the same payloads.

    PYTHONPATH=.dev .venv/bin/python -m benchmarks.edge_agent [--readings N] [--rows N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

import citygrid
from benchmarks.results import save
from citygrid.settings import CitygridSettings

SETTINGS = CitygridSettings()
CACHE = SETTINGS.paths.cache_dir
MODELS = CACHE / "models"  # where `citygrid edge train` puts its ONNX files


def rss_mb() -> float:
    """Resident set size of this process, from the kernel."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def worker_infer(rows: int) -> dict:
    """Per-reading latency of onnxruntime vs scikit-learn on the same real feature rows."""
    from citygrid.edge.inference import OnnxModel
    from citygrid.sim.train_models import fitted_nowcast

    sk, x = fitted_nowcast(CACHE)
    model = OnnxModel(MODELS / "load_nowcast-bench.onnx")
    pick = x[np.random.default_rng(0).integers(0, len(x), rows)]

    def timed(fn) -> np.ndarray:
        out = np.empty(rows)
        for i in range(rows):
            row = pick[i:i + 1]
            t0 = time.perf_counter()
            fn(row)
            out[i] = time.perf_counter() - t0
        return out * 1e3

    for i in range(50):  # warm both
        model.predict(pick[i:i + 1])
        sk.predict(pick[i:i + 1])
    ort_ms, sk_ms = timed(model.predict), timed(sk.predict)
    agree = float(np.max(np.abs(model.predict(pick[:200]) - sk.predict(pick[:200]))))
    return {"ort_p50_ms": float(np.percentile(ort_ms, 50)), "ort_p99_ms": float(np.percentile(ort_ms, 99)),
            "sk_p50_ms": float(np.percentile(sk_ms, 50)), "sk_p99_ms": float(np.percentile(sk_ms, 99)),
            "max_abs_diff_kw": agree}


def worker_agent(readings: int, commit_every: int, topic_root: str) -> dict:
    """The whole agent loop to the shared broker; readings/s until all are acknowledged."""
    from citygrid.edge.agent import EdgeAgent
    from citygrid.edge.model_update import ModelStore
    from citygrid.edge.store_forward import Outbox
    from citygrid.mqtt import Publisher
    from citygrid.signing import DeviceKey
    from citygrid.sim.profiles import ProfileReplay, load_profiles

    mqtt = SETTINGS.mqtt.model_copy(update={"readings_topic": f"{topic_root}/readings"})
    with tempfile.TemporaryDirectory() as tmp:
        # Provisioned beforehand (as on a device), so this process loads the model once.
        store = ModelStore(MODELS / "bench-store")
        profile = next(p for p in load_profiles(CACHE) if p.kind == "meter")
        key = DeviceKey.generate()
        pub = Publisher(mqtt, client_id=f"bench-{uuid.uuid4().hex[:8]}")
        pub.connect()
        driver = ProfileReplay(profile, int(time.time() * 1000) - 86400_000, 0, readings)
        agent = EdgeAgent(key, driver, pub, outbox=Outbox(Path(tmp) / "outbox.db"), models=store,
                          commit_every=commit_every)
        if agent.model_version is None:
            raise SystemExit(f"no model installed in {MODELS / 'bench-store'}")
        t0 = time.perf_counter()
        made = agent.run(drain_timeout_s=600)
        elapsed = time.perf_counter() - t0
        left = len(agent.outbox)
        rss = rss_mb()
        pub.close()
    return {"readings": made, "unacked": left, "seconds": elapsed, "per_s": made / elapsed, "rss_mb": rss}


def worker_raw(readings: int, topic_root: str) -> dict:
    """Baseline: plain paho QoS 1 publishes of pre-signed readings, waiting for every PUBACK."""
    from citygrid.mqtt import Publisher
    from citygrid.reading import Reading, sign_reading
    from citygrid.signing import DeviceKey

    mqtt = SETTINGS.mqtt.model_copy(update={"readings_topic": f"{topic_root}/readings"})
    key = DeviceKey.generate()
    now = int(time.time() * 1000)
    payloads = [sign_reading(Reading(device=key.device_id, seq=i, ts_ms=now, kind="meter",
                                     values={"p_kw": 0.5}), key).encode() for i in range(readings)]
    pub = Publisher(mqtt, client_id=f"bench-raw-{uuid.uuid4().hex[:8]}")
    pub.connect()
    topic = f"{mqtt.readings_topic}/d1/{key.device_id}"
    t0 = time.perf_counter()
    infos = []
    for p in payloads:
        infos.append(pub.publish_async(topic, p))
    for i in infos:
        i.wait_for_publish(120)
    elapsed = time.perf_counter() - t0
    pub.close()
    return {"readings": readings, "seconds": elapsed, "per_s": readings / elapsed}


def pinned(*args: str) -> dict:
    """Run one worker on core 0 and return its JSON."""
    # The worker gets these very settings, imports citygrid from where this process does and, run
    # from the same folder, finds `benchmarks` there as this process did.
    env = {**SETTINGS.as_env(), "PYTHONPATH": str(Path(citygrid.__file__).parent.parent),
           "OMP_NUM_THREADS": "1"}
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-m", "benchmarks.edge_agent", "--worker",
                          *args], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Run every measurement, print the table, write the JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=20_000)
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--worker", nargs="*")
    a = ap.parse_args()
    if a.worker:
        kind, *rest = a.worker
        result = {"infer": lambda: worker_infer(int(rest[0])),
                  "agent": lambda: worker_agent(int(rest[0]), int(rest[1]), rest[2]),
                  "raw": lambda: worker_raw(int(rest[0]), rest[1])}[kind]()
        print(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    from citygrid.sim.train_models import train

    if not (MODELS / "load_nowcast-bench.onnx").exists():
        train(CACHE, MODELS, version="bench")
    from citygrid.edge.model_update import ModelStore

    ModelStore(MODELS / "bench-store").install(MODELS / "load_nowcast-bench.onnx", serial=1)
    root = f"bench-edge-{uuid.uuid4().hex[:8]}"
    infer = pinned("infer", str(a.rows))
    agent_1 = pinned("agent", str(a.readings), "1", root)
    agent_64 = pinned("agent", str(a.readings), "64", root)
    raw = pinned("raw", str(a.readings), root)
    rows = [
        ("inference p50 per reading, onnxruntime", f"{infer['ort_p50_ms']:.3f} ms", "", ""),
        ("inference p99 per reading, onnxruntime", f"{infer['ort_p99_ms']:.3f} ms", "≤ 1 ms",
         "met" if infer["ort_p99_ms"] <= 1 else "missed"),
        ("inference p50 / p99, scikit-learn predict",
         f"{infer['sk_p50_ms']:.3f} / {infer['sk_p99_ms']:.3f} ms", "", ""),
        ("speed-up p50 (sklearn / onnxruntime)", f"{infer['sk_p50_ms'] / infer['ort_p50_ms']:.1f}x", ">= 10x",
         "met" if infer["sk_p50_ms"] / infer["ort_p50_ms"] >= 10 else "missed"),
        ("agent RSS with model loaded", f"{agent_64['rss_mb']:.1f} MB", "≤ 80 MB",
         "met" if agent_64["rss_mb"] <= 80 else "missed"),
        ("agent rate, outbox commit every reading", f"{agent_1['per_s']:,.0f} /s", "≥ 10,000 /s",
         "met" if agent_1["per_s"] >= 10_000 else "missed"),
        ("agent rate, outbox commit every 64", f"{agent_64['per_s']:,.0f} /s", "≥ 10,000 /s",
         "met" if agent_64["per_s"] >= 10_000 else "missed"),
        ("baseline: plain paho QoS 1, pre-signed", f"{raw['per_s']:,.0f} /s", "", ""),
        ("agent (commit 64) / baseline", f"{agent_64['per_s'] / raw['per_s']:.2f}", "", ""),
    ]
    table = Table("measure (one core, taskset -c 0, machine under load)", "value", "target", "")
    for r in rows:
        table.add_row(*r)
    Console().print(table)
    save("edge_agent", {"inference": infer, "agent_commit_1": agent_1, "agent_commit_64": agent_64,
                        "raw_paho": raw})


if __name__ == "__main__":
    main()
