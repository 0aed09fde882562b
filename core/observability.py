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
    # kafka-python 3 warns whenever one of its event-loop tasks runs over 100 ms, which a busy 2-core
    # node does all the time; it says nothing an operator can act on.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
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


def serve_metrics(port: int, host: str | None = None) -> int:
    """Expose /metrics on host:port (0 = don't); return the port. The host defaults to the
    settings' metrics_host: loopback locally, 0.0.0.0 in a pod so the cluster's Prometheus reaches it."""
    if port:
        if host is None:
            from citygrid.settings import get_settings

            host = get_settings().metrics_host
        start_http_server(port, addr=host)
    return port
