"""Structured logs and the Prometheus /metrics endpoint, set up the same way in every process."""

from __future__ import annotations

import logging

import structlog
from prometheus_client import start_http_server


def configure_logging(level: str = "INFO", json: bool = False) -> None:
    """key=value logs (or JSON lines) on stderr; secrets are never passed to loggers."""
    logging.basicConfig(level=level, format="%(message)s")
    # Client libraries log every connection step at INFO; keep their warnings only.
    for noisy in ("kafka", "aiokafka", "faust", "mode", "substrateinterface", "websocket"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    renderer = structlog.processors.JSONRenderer() if json else structlog.processors.KeyValueRenderer(
        key_order=["timestamp", "level", "event"], drop_missing=True
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=__import__("sys").stderr),
    )


def serve_metrics(port: int) -> int:
    """Expose /metrics on 127.0.0.1:port (0 = don't); return the port."""
    if port:
        start_http_server(port, addr="127.0.0.1")
    return port
