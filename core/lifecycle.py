"""Graceful stop for long-running processes: SIGTERM and SIGINT set an event the loops watch."""

from __future__ import annotations

import signal
import threading


def stop_event_on_signals() -> threading.Event:
    """An event set by SIGTERM/SIGINT, so loops finish their current step and flush."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop
