"""The Faust application: topics, tables and agents declared in one place.

Agents stay thin; what they compute lives in plain functions (`stats_batch`,
`learn_batch`, `route_batch`, `aggregate_batch`, the market's `exchange`) that are
tested without a broker. Tables are backed by changelog topics, so a restarted
or rebalanced worker resumes each key's state.

Trust: every reading is re-verified against the device registry before it is counted, learned or
grouped; table state is sealed with the workers' state key (a worker refuses to start without one)
and checked before it is unpickled; a record an agent cannot process goes to that agent's
dead-letter topic and the agent carries on.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import faust
from faust.types import TP, ConsumerT
from prometheus_client import Counter

from citygrid.kafka_clients import client_options
from citygrid.reading_check import ReadingChecker
from citygrid.settings import CitygridSettings, KafkaSettings, StreamSettings
from citygrid.stream import metrics
from citygrid.stream.aggregates import aggregate_batch, route_batch
from citygrid.stream.dead_letters import WORKER, send_dead
from citygrid.stream.dedupe_readers import read_committed
from citygrid.stream.device_stats import stats_batch
from citygrid.stream.fleet import FleetView
from citygrid.stream.learning import DOMAINS, LiveStates, learn_batch, state_key
from citygrid.stream.market.agents import register_market
from citygrid.stream.outputs import produce
from citygrid.topics import aggregate_members_topic, dead_letters_topic

PROCESSED = Counter("citygrid_stream_readings_total", "Readings processed by the stream worker")
SKIPPED = Counter("citygrid_stream_skipped_total", "Records on the readings topic that did not parse")
LAG_REFRESH_S = 1.0  # how often each partition's lag gauge is recomputed


@dataclass(frozen=True)
class Channels:
    """The app's topics and tables: what its agents read, write and checkpoint."""

    readings: faust.TopicT
    stats: faust.TopicT
    forecasts: faust.TopicT
    alerts: faust.TopicT
    by_group: faust.TopicT  # readings re-keyed by feeder or intersection (internal)
    stats_table: faust.Table  # device → its DeviceStats record
    models_table: faust.Table  # device → its sealed, pickled models (learning.encode_state)
    groups_table: faust.Table  # group → its sealed, pickled aggregate (aggregates.encode_group)
    learner_dead: faust.TopicT  # readings the learner refused
    aggregates_dead: faust.TopicT  # member records the aggregator refused
    checker: ReadingChecker  # signature, canonical form and bounds against the device registry


def make_app(s: CitygridSettings) -> faust.App:
    """Build the app with its topics, tables and agents; ConfigError without a state key."""
    state_key(s.stream)  # refuse to start: unsealed state would be trusted by nobody
    app = faust.App(
        s.kafka.stream_app_id,
        broker=f"kafka://{s.kafka.bootstrap}",
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=s.kafka.partitions,
        topic_replication_factor=1,
        web_enabled=False,
        # Faust's own files (its table data and lock) beside the rest of this worker's state, not in the cwd.
        datadir=str(s.paths.data_dir / f"faust-{s.kafka.stream_app_id}"),
        producer_acks=-1,
        # Forecasts, stats and changelog records go out several per reading: aiokafka's cost is per
        # produce request far more than per record, so let it gather big batches (50 ms of latency
        # against 15-minute energy and 1-minute traffic intervals).
        producer_linger=0.05,
        producer_max_batch_size=256 * 1024,
        broker_credentials=broker_credentials(s.kafka),
    )
    read_committed(app)  # the readings topic is written in transactions: skip aborted records
    channels = declare_channels(app, s)
    add_agents(app, channels, s.stream)
    register_market(app, s)
    return app


def broker_credentials(k: KafkaSettings) -> faust.SASLCredentials | None:
    """The worker's Kafka principal (SCRAM over TLS, the broker's certificate checked), as
    every other client of citygrid.kafka_clients connects."""
    if k.security_protocol == "PLAINTEXT":
        return None
    options = client_options(k)  # raises if the principal is missing
    context = ssl.create_default_context(cafile=options.get("ssl_cafile"))
    return faust.SASLCredentials(username=k.username, password=k.password, ssl_context=context,
                                 mechanism=k.sasl_mechanism)


def declare_channels(app: faust.App, s: CitygridSettings) -> Channels:
    """Declare the app's topics and tables."""
    def topic(name: str, **options: object) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, **options)

    def table(name: str) -> faust.Table:
        # use_partitioner: a batch mixes partitions, and the producer's murmur2 partitioner puts
        # each key's changelog record on its readings partition (the ingest keys by device too).
        return app.Table(name, value_type=bytes, key_type=bytes, use_partitioner=True)

    k = s.kafka
    return Channels(
        readings=topic(k.readings_topic), stats=topic(k.stats_topic), forecasts=topic(k.forecasts_topic),
        alerts=topic(k.alerts_topic),
        by_group=topic(aggregate_members_topic(k), internal=True, partitions=k.partitions),
        stats_table=table("device-stats"), models_table=table("device-models"),
        groups_table=table("group-aggregates"),
        learner_dead=topic(dead_letters_topic(k.readings_topic, WORKER)),
        aggregates_dead=topic(dead_letters_topic(aggregate_members_topic(k), WORKER)),
        checker=ReadingChecker(s.paths.device_registry),
    )


def add_agents(app: faust.App, c: Channels, s: StreamSettings) -> None:
    """The agents: device statistics, per-device learning, and feeder/intersection aggregates.

    group_by is not needed: the ingest keys the readings topic by device, so one device's
    readings always land on the same partition and worker. Every agent sends its outputs
    before it checkpoints its table: a crash in between re-emits outputs, never loses them.
    """
    fleet, live_states, lag = FleetView(), LiveStates(), LagWatch()
    metrics.start_domains(DOMAINS)

    @app.timer(LAG_REFRESH_S)
    async def refresh_lag() -> None:
        lag.refresh(app.consumer)

    verified = c.checker.reading_or_none

    @app.agent(c.readings)
    async def readings(stream: faust.Stream) -> None:
        # One agent for all that a reading feeds (statistics, learning, re-keying by group): each record
        # is dispatched, verified and batched once.
        async for events in _batches(stream, s):
            t0 = time.perf_counter()
            records = _records(events)
            stats = stats_batch(records, c.stats_table.get, fleet.observe, verified)
            learned = learn_batch(records, c.models_table.get, s, live_states, c.checker.check)
            members = route_batch([(e.value, e.headers) for e in events], s, verified)
            sending = [*await produce(app, c.stats, stats.records),
                       *await produce(app, c.forecasts, learned.forecasts),
                       *await produce(app, c.alerts, learned.alerts),
                       *await produce(app, c.by_group, members)]
            for i, reason, error in learned.rejected:
                await send_dead(c.learner_dead, "learner", events[i], reason, error)
            await asyncio.gather(*sending)
            c.stats_table.update(stats.latest)
            c.models_table.update(learned.states)
            SKIPPED.inc(stats.skipped)
            PROCESSED.inc(len(stats.records))
            lag.processed(events)
            metrics.BATCH_SECONDS.observe(time.perf_counter() - t0)
            metrics.BATCH_READINGS.observe(len(events))

    @app.agent(c.by_group)
    async def aggregate(stream: faust.Stream) -> None:
        async for events in _batches(stream, s):
            batch = aggregate_batch(_records(events), c.groups_table.get, s)
            sending = await produce(app, c.forecasts, batch.forecasts)
            for i, reason, error in batch.rejected:
                await send_dead(c.aggregates_dead, "aggregates", events[i], reason, error)
            await asyncio.gather(*sending)
            c.groups_table.update(batch.states)


def _batches(stream: faust.Stream, s: StreamSettings) -> AsyncIterator[list[faust.EventT]]:
    # Batches: each key's state is restored and checkpointed once per batch, not per record.
    return stream.take_events(s.batch_max, within=s.batch_within_s)


def _records(events: list[faust.EventT]) -> list[tuple[bytes | None, bytes]]:
    return [(e.key, e.value) for e in events]


class LagWatch:
    """Each partition's lag (its end offset minus the next offset the learner will process), kept
    fresh by a timer rather than only when a batch arrives: a worker that has caught up still learns
    its partitions' ends a moment after its last batch, and an operator must see that lag reach 0."""

    def __init__(self) -> None:
        self._last: dict[TP, int] = {}

    def processed(self, events: list[faust.EventT]) -> None:
        """Note the last offset the learner processed on each partition of a batch."""
        for e in events:
            self._last[e.message.tp] = e.message.offset

    def refresh(self, consumer: ConsumerT) -> None:
        """Set the gauge for every assigned partition whose end the consumer knows; forget revoked ones."""
        assigned = consumer.assignment()
        for tp in list(self._last):
            if tp not in assigned:
                del self._last[tp]
        for tp, offset in self._last.items():
            high = consumer.highwater(tp)
            if high is not None:
                metrics.LAG.labels(str(tp.partition)).set(max(0, high - offset - 1))
