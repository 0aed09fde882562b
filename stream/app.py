"""The Faust application: topics, tables and agents declared in one place.

Agents stay thin; what they compute lives in plain modules (device_stats, …)
that are tested without a broker. Tables are backed by changelog topics, so a
restarted or rebalanced worker resumes each key's state.
"""

from __future__ import annotations

import json

import faust
from prometheus_client import Counter

from citygrid.errors import ReadingRejected
from citygrid.reading import SignedReading
from citygrid.settings import CitygridSettings
from citygrid.stream.device_stats import update_stats

PROCESSED = Counter("citygrid_stream_readings_total", "Readings processed by the stream worker")
SKIPPED = Counter("citygrid_stream_skipped_total", "Records on the readings topic that did not parse")

def make_app(s: CitygridSettings) -> faust.App:
    """Build the app with its topics, tables and agents."""
    app = faust.App(
        s.kafka.stream_app_id,
        broker=f"kafka://{s.kafka.bootstrap}",
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=s.kafka.partitions,
        topic_replication_factor=1,
        web_enabled=False,
        producer_acks=-1,
    )
    readings = app.topic(s.kafka.readings_topic, key_type=bytes, value_type=bytes)
    stats_topic = app.topic(s.kafka.stats_topic, key_type=bytes, value_type=bytes)
    stats_table = app.Table("device-stats", value_type=bytes, key_type=bytes)

    @app.agent(readings)
    async def process(stream: faust.Stream) -> None:
        # group_by is not needed: the ingest keys the readings topic by device,
        # so one device's readings always land on the same partition and worker.
        async for key, envelope in stream.items():
            try:
                reading = SignedReading.decode(envelope).reading()
            except ReadingRejected:
                SKIPPED.inc()
                continue
            previous = stats_table.get(key)
            stats = update_stats(json.loads(previous) if previous else None, reading)
            encoded = json.dumps({"device": reading.device, **stats}).encode()
            stats_table[key] = encoded
            PROCESSED.inc()
            await stats_topic.send(key=key, value=encoded)

    app.citygrid_tables = {"device-stats": stats_table}  # type: ignore[attr-defined]
    return app


