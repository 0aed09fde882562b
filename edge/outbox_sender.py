"""Drains the outbox to MQTT in sequence order, deleting each row only after its PUBACK.

While the broker is away nothing is published (the rows wait on disk, not in
paho's memory); paho itself resends what was in flight when the connection
dropped, and after a restart of the agent the oldest rows go first, so a
reading may reach the broker twice but never not at all. The ingest drops the
duplicates by (device, seq). A PUBACK saying that no subscription took the reading
(the ingest's shared subscription missing after a broker restart: citygrid.mqtt) does
not delete it: the sender waits `UNROUTED_RETRY_S` and sends again from that reading on.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import structlog
from prometheus_client import Counter, Gauge

from citygrid.edge.store_forward import Outbox
from citygrid.mqtt import Publisher

log = structlog.get_logger(__name__)
ACKED = Counter("citygrid_edge_readings_acked_total", "Readings the broker acknowledged (QoS 1)")
INFLIGHT = Gauge("citygrid_edge_inflight", "Readings published and awaiting PUBACK")
UNROUTED = Counter("citygrid_edge_unrouted_total",
                   "Readings the broker acknowledged with no subscriber to take them: kept and sent again")
UNROUTED_RETRY_S = 1.0  # how long to wait for the ingest to subscribe again before resending


class OutboxSender:
    """One background thread per agent between the outbox and the broker."""

    def __init__(self, outbox: Outbox, publisher: Publisher, max_inflight: int = 1000) -> None:
        self.outbox = outbox
        self.publisher = publisher
        self.max_inflight = max_inflight
        self._lock = threading.Lock()
        self._inflight: dict[int, int] = {}  # mid -> seq
        self._early: set[int] = set()  # PUBACKs that beat the registration of their mid
        self._acked: deque[int] = deque()
        self._cursor = -1
        self._resend_from: int | None = None  # the oldest unrouted reading, to be sent again
        self._hold_until = 0.0  # no publishing before this (monotonic), after an unrouted reading
        self.wake = threading.Event()
        publisher.on_ack = self._on_ack
        publisher.on_unrouted = self._on_unrouted
        publisher.on_connected = self.wake.set

    def _on_ack(self, mid: int) -> None:
        # Called on paho's network thread while it holds its own locks: never call paho here.
        with self._lock:
            seq = self._inflight.pop(mid, None)
            if seq is None:
                self._early.add(mid)
            else:
                self._acked.append(seq)
        self.wake.set()

    def _on_unrouted(self, mid: int) -> None:
        # The row stays on disk; rewind to it (later rows in flight may go twice: the ingest dedupes).
        with self._lock:
            seq = self._inflight.pop(mid, None)
            if seq is not None:
                self._resend_from = seq if self._resend_from is None else min(self._resend_from, seq)
                self._hold_until = time.monotonic() + UNROUTED_RETRY_S
        UNROUTED.inc()

    def pump(self) -> int:
        """Delete acknowledged rows and publish more if connected; return how many were published."""
        with self._lock:
            acked = list(self._acked)
            self._acked.clear()
            room = self.max_inflight - len(self._inflight)
            if self._resend_from is not None:
                self._cursor = min(self._cursor, self._resend_from - 1)
                self._resend_from = None
            held = time.monotonic() < self._hold_until
        if acked:
            self.outbox.delete(acked)
            ACKED.inc(len(acked))
        if not self.publisher.connected or room <= 0 or held:
            INFLIGHT.set(len(self._inflight))
            return 0
        rows = self.outbox.oldest(room, after=self._cursor)
        for seq, topic, payload in rows:
            info = self.publisher.publish_async(topic, payload)
            with self._lock:
                if info.mid in self._early:
                    self._early.discard(info.mid)
                    self._acked.append(seq)
                else:
                    self._inflight[info.mid] = seq
            self._cursor = seq
        INFLIGHT.set(len(self._inflight))
        return len(rows)

    def idle(self) -> bool:
        """Nothing left on disk or in flight."""
        with self._lock:
            busy = bool(self._inflight or self._acked or self._resend_from is not None)
        return not busy and len(self.outbox) == 0

    def run(self, stop: threading.Event) -> None:
        """Pump until `stop` is set."""
        while not stop.is_set():
            self.wake.clear()
            if self.pump() == 0:
                self.wake.wait(0.05)

    def drain(self, timeout_s: float) -> bool:
        """Pump until everything is acknowledged; False if `timeout_s` passed first."""
        deadline = time.monotonic() + timeout_s
        while not self.idle():
            if time.monotonic() > deadline:
                return False
            self.wake.clear()
            if self.pump() == 0:
                self.wake.wait(0.05)
        return True
