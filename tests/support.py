"""What many tests share: polling with a loud timeout, free ports, isolated settings.

Imported as `support` (tests/ is on pytest's pythonpath).
"""

from __future__ import annotations

import random
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from citygrid.settings import CitygridSettings, PathSettings


def wait_until(check: Callable[[], bool], timeout_s: float = 90, what: str = "a condition",
               every_s: float = 0.5) -> None:
    """Poll until `check()`; fail the test loudly on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def free_port(consecutive: int = 1) -> int:
    """The first of `consecutive` ports all bindable on 127.0.0.1 now, below Linux's ephemeral range
    (32768+) so that no client connection's local port can take them before a server binds."""
    for port in random.sample(range(21000, 32000 - consecutive), 500):
        try:
            socks = [socket.socket() for _ in range(consecutive)]
            try:
                for i, s in enumerate(socks):
                    s.bind(("127.0.0.1", port + i))
            finally:
                for s in socks:
                    s.close()
            return port
        except OSError:
            continue
    raise RuntimeError(f"no {consecutive} consecutive free ports")


def isolated_settings(data_dir: Path) -> CitygridSettings:
    """Settings for one test: private data dir, topics, MQTT root, client ids and groups."""
    tag = uuid.uuid4().hex[:10]
    base = CitygridSettings()
    return base.model_copy(update={
        "paths": PathSettings.under(data_dir, base.paths.cache_dir),
        "mqtt": base.mqtt.model_copy(update={
            "readings_topic": f"t{tag}/readings", "commands_topic": f"t{tag}/commands",
            "ingest_client_id": f"ingest-{tag}",
        }),
        "kafka": base.kafka.model_copy(update={
            "readings_topic": f"readings-{tag}", "dead_letter_topic": f"readings-{tag}.dead",
            "stats_topic": f"stats-{tag}", "stream_app_id": f"stream-{tag}",
            "anchor_group": f"anchorer-{tag}", "forecasts_topic": f"forecasts-{tag}",
            "alerts_topic": f"alerts-{tag}", "orders_topic": f"orders-{tag}", "trades_topic": f"trades-{tag}",
        }),
        "settlement": base.settlement.model_copy(update={"group": f"settler-{tag}"}),
    })
