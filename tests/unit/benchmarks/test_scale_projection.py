"""The scale benchmark's projection to 1,000,000 devices and its edit of the chart's production values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from benchmarks import scale_projection as projection
from benchmarks.process_usage import usage

CHART = Path(__file__).parents[3] / "deploy" / "helm" / "citygrid"


def sizes(cpu: dict[int, float], memory_per_device: float, own: float) -> list[dict]:
    return [{"devices": d, "stages": {"worker": {"cpu_s_per_1k": c,
                                                  "memory_bytes": own + memory_per_device * d}}}
            for d, c in cpu.items()]


def test_a_flat_cost_projects_to_cores_at_the_rate_and_memory_to_its_slope() -> None:
    st = projection.project(sizes({1000: 2.0, 10_000: 2.0, 100_000: 2.0}, 5000, 1e8), "worker", 1111)
    assert st.cpu_s_per_1k == pytest.approx(2.0)
    assert st.cores == pytest.approx(2.222, rel=1e-3)
    assert st.instances == 4  # 2.22 cores at 0.6 per instance
    assert st.memory_per_device == pytest.approx(5000)
    assert st.memory_bytes == pytest.approx(5e9 + 1e8)
    assert st.per_instance_memory() == pytest.approx(1e8 + 5e9 / 4)


def test_a_cost_growing_with_the_fleet_is_carried_forward_and_never_falls_below_the_measured() -> None:
    growing = projection.project(sizes({1000: 1.0, 10_000: 1.1, 100_000: 2.0}, 0, 1e8), "worker", 1000)
    assert growing.cpu_s_per_1k > 2.0
    falling = projection.project(sizes({1000: 3.0, 10_000: 2.0, 100_000: 1.0}, 0, 1e8), "worker", 1000)
    assert falling.cpu_s_per_1k == pytest.approx(1.0)


def test_instances_also_split_the_devices_state_within_the_memory_budget() -> None:
    st = projection.project(sizes({1000: 0.1, 100_000: 0.1}, 40_000, 2e8), "worker", 1111)
    assert st.cores < projection.CORE_BUDGET
    assert st.per_instance_memory() <= projection.MEMORY_BUDGET
    assert st.instances == 10  # 40 GB of device state in the 4.1 GB an instance holds beside its own 0.2


def test_partitions_leave_room_to_double_the_workers() -> None:
    assert projection.partitions_for(1) == 12
    assert projection.partitions_for(6) == 12
    assert projection.partitions_for(7) == 24
    assert projection.partitions_for(13) == 36


def test_values_are_set_in_place_keeping_every_other_line_and_a_rerun_replaces_its_own() -> None:
    text = (CHART / "ci" / "production-values.yaml").read_text()
    values = {("kafka", "partitions"): "24", ("worker", "replicas"): "9",
              ("ingest", "resources", "requests"): "{cpu: 300m, memory: 256Mi}",
              ("anchorer", "resources", "limits"): "{cpu: \"2\", memory: 1024Mi}"}
    once = projection.write_values(text, values, "bench, today")
    twice = projection.write_values(once, values, "bench, today")
    assert once == twice
    before, after = yaml.safe_load(text), yaml.safe_load(once)
    assert after["kafka"]["partitions"] == 24 and after["worker"]["replicas"] == 9
    assert after["ingest"]["resources"]["requests"] == {"cpu": "300m", "memory": "256Mi"}
    assert after["anchorer"]["resources"]["limits"] == {"cpu": "2", "memory": "1024Mi"}
    assert after["anchorer"]["persistence"] == before["anchorer"]["persistence"]
    assert after["worker"]["resources"] == before["worker"]["resources"]
    for section in set(before) - {"kafka", "worker", "ingest", "anchorer"}:
        assert after[section] == before[section]
    assert once.startswith("# scale: bench, today\n") and once.count("# scale:") == 2
    assert all(f"{path[-1]}: {value}  # scale" in once for path, value in values.items())
    kept = [line for line in text.splitlines()
            if line.lstrip().startswith("#") and not line.lstrip().startswith(projection.MARK)]
    assert all(line in once.splitlines() for line in kept)


def test_a_process_tree_is_measured_from_proc() -> None:
    u = usage(os.getpid())
    assert u.cpu_s > 0 and u.pss_bytes > 10 * 2**20 and u.rss_bytes >= u.pss_bytes and u.processes >= 1
