"""The Faust application: topics, tables and agents declared in one place.

Agents stay thin; what they compute lives in plain modules (device_stats, …)
that are tested without a broker. Tables are backed by changelog topics, so a
restarted or rebalanced worker resumes each key's state.
"""

from __future__ import annotations

import json
import time

import faust
from prometheus_client import Counter

from citygrid.errors import ReadingRejected
from citygrid.reading import SignedReading
from citygrid.settings import CitygridSettings
from citygrid.stream import metrics
from citygrid.stream.aggregates import UNGROUPED, aggregate_batch, route
from citygrid.stream.device_stats import update_stats
from citygrid.stream.fleet import FleetView
from citygrid.stream.learning import LiveStates, learn_batch
from citygrid.stream.market.agents import register_market

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
        # Forecasts, stats and changelog records go out one per reading: let aiokafka batch them.
        producer_linger=0.005,
    )
    readings = app.topic(s.kafka.readings_topic, key_type=bytes, value_type=bytes)
    stats_topic = app.topic(s.kafka.stats_topic, key_type=bytes, value_type=bytes)
    stats_table = app.Table("device-stats", value_type=bytes, key_type=bytes, use_partitioner=True)
    fleet = FleetView()

    @app.agent(readings)
    async def process(stream: faust.Stream) -> None:
        # group_by is not needed: the ingest keys the readings topic by device,
        # so one device's readings always land on the same partition and worker.
        # One stats record per reading; the table (and its changelog) once per device per batch.
        async for events in stream.take_events(s.stream.batch_max, within=s.stream.batch_within_s):
            latest: dict[bytes, bytes] = {}
            for event in events:
                try:
                    reading = SignedReading.decode(event.value).reading()
                except ReadingRejected:
                    SKIPPED.inc()
                    continue
                fleet.observe(reading)
                key = event.key
                previous = latest.get(key) or stats_table.get(key)
                stats = update_stats(json.loads(previous) if previous else None, reading)
                latest[key] = encoded = json.dumps({"device": reading.device, **stats}).encode()
                PROCESSED.inc()
                await stats_topic.send(key=key, value=encoded)
            for key, encoded in latest.items():
                stats_table[key] = encoded

    forecasts_topic = app.topic(s.kafka.forecasts_topic, key_type=bytes, value_type=bytes)
    alerts_topic = app.topic(s.kafka.alerts_topic, key_type=bytes, value_type=bytes)
    # use_partitioner: a batch mixes partitions, and the producer's murmur2 partitioner puts
    # each device's changelog record on its readings partition (the ingest keys by device too).
    models_table = app.Table("device-models", value_type=bytes, key_type=bytes, use_partitioner=True)

    live_states = LiveStates()

    @app.agent(readings)
    async def learn(stream: faust.Stream) -> None:
        # Batches: each device's models are unpickled and checkpointed once per batch, not per reading.
        async for events in stream.take_events(s.stream.batch_max, within=s.stream.batch_within_s):
            t0 = time.perf_counter()
            batch = learn_batch([(e.key, e.value) for e in events], models_table.get, s.stream, live_states)
            # Outputs before the checkpoint: a crash in between re-emits forecasts, never loses them.
            for key, value in batch.forecasts:
                await forecasts_topic.send(key=key, value=value)
            for key, value in batch.alerts:
                await alerts_topic.send(key=key, value=value)
            for key, state in batch.states.items():
                models_table[key] = state
            SKIPPED.inc(batch.skipped)
            last = {e.message.tp: e.message.offset for e in events}
            for tp, offset in last.items():
                high = app.consumer.highwater(tp)
                if high is not None:
                    metrics.LAG.labels(str(tp.partition)).set(max(0, high - offset - 1))
            metrics.BATCH_SECONDS.observe(time.perf_counter() - t0)

    # Feeder and intersection forecasts: re-key readings by group (district, kind) so each group's
    # sums and model live on one worker, then sum, close intervals and forecast there.
    by_group = app.topic(f"{s.kafka.stream_app_id}-aggregate-members", key_type=bytes, value_type=bytes,
                         internal=True, partitions=s.kafka.partitions)
    groups_table = app.Table("group-aggregates", value_type=bytes, key_type=bytes, use_partitioner=True)

    @app.agent(readings)
    async def regroup(stream: faust.Stream) -> None:
        async for event in stream.events():
            routed = route(event.value, event.headers, s.stream)
            if routed is None:
                UNGROUPED.inc()
                continue
            await by_group.send(key=routed[0], value=routed[1])

    @app.agent(by_group)
    async def aggregate(stream: faust.Stream) -> None:
        async for events in stream.take_events(s.stream.batch_max, within=s.stream.batch_within_s):
            batch = aggregate_batch([(e.key, e.value) for e in events], groups_table.get, s.stream)
            # Forecasts before the checkpoint: a crash in between re-emits them, never loses them.
            for key, value in batch.forecasts:
                await forecasts_topic.send(key=key, value=value)
            for key, state in batch.states.items():
                groups_table[key] = state

    register_market(app, s)
    app.citygrid_tables = {  # type: ignore[attr-defined]
        "device-stats": stats_table, "device-models": models_table, "group-aggregates": groups_table,
    }
    return app


