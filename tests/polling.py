"""Waiting in integration tests: poll a condition, fail loudly on timeout."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(check: Callable[[], bool], timeout_s: float = 90, what: str = "a condition") -> None:
    """Poll until `check()`; fail the test loudly on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
