"""The Faust application: topics, tables and agents declared in one place.

Agents stay thin; what they compute lives in plain functions (`stats_batch`,
`learn_batch`, `route`, `aggregate_batch`, the market's `exchange`) that are
tested without a broker. Tables are backed by changelog topics, so a restarted
or rebalanced worker resumes each key's state.

Trust: every reading is re-verified against the device registry before it is counted, learned or
grouped; table state is sealed with the workers' state key (a worker refuses to start without one)
and checked before it is unpickled; a record an agent cannot process goes to that agent's
dead-letter topic and the agent carries on.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import faust
from faust.types import TP, ConsumerT, ProducerT
from prometheus_client import Counter

from citygrid.kafka_clients import client_options
from citygrid.reading_check import ReadingChecker
from citygrid.settings import CitygridSettings, KafkaSettings, StreamSettings
from citygrid.stream import metrics
from citygrid.stream.aggregates import UNGROUPED, aggregate_batch, route
from citygrid.stream.dead_letters import WORKER, send_dead
from citygrid.stream.dedupe_readers import read_committed
from citygrid.stream.device_stats import stats_batch
from citygrid.stream.fleet import FleetView
from citygrid.stream.learning import DOMAINS, LiveStates, learn_batch, state_key
from citygrid.stream.market.agents import register_market
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
        # Forecasts, stats and changelog records go out one per reading: let aiokafka batch them. A
        # device's sealed models are ~12 KB, so aiokafka's default 16 KB batch held about one of them:
        # larger batches mean a produce request per partition per batch, not per state.
        producer_linger=0.02,
        producer_max_batch_size=512 * 1024,
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
    """The agents: one for every per-reading step (statistics, learning, routing to groups), and one
    for feeder/intersection aggregates.

    One readings agent, not one per step: Faust hands every record to every agent that reads its
    topic, each through its own queue, event-loop turn and ack, which cost more than a step's work
    (benchmarks/stream_learning.py). group_by is not needed: the ingest keys the readings topic by
    device, so one device's readings always land on the same partition and worker. Every agent sends
    its outputs before it checkpoints its tables: a crash in between re-emits outputs, never loses them.
    """
    steps = ReadingSteps(c, s, FleetView(), LiveStates(), LagWatch())
    metrics.start_domains(DOMAINS)

    @app.timer(LAG_REFRESH_S)
    async def refresh_lag() -> None:
        steps.lag.refresh(app.consumer)

    @app.agent(c.readings)
    async def readings(stream: faust.Stream) -> None:
        async for events in _batches(stream, s):
            await steps.run(app.producer, events)

    @app.agent(c.by_group)
    async def aggregate(stream: faust.Stream) -> None:
        async for events in _batches(stream, s):
            batch = aggregate_batch(_records(events), c.groups_table.get, s)
            await _send(app.producer, c.forecasts, batch.forecasts)
            for i, reason, error in batch.rejected:
                await send_dead(c.aggregates_dead, "aggregates", events[i], reason, error)
            await _checkpoint(app.producer, c.groups_table, batch.states)


@dataclass(frozen=True)
class ReadingSteps:
    """What the readings agent does with a batch: the plain functions, their outputs sent, then the
    tables checkpointed (each device's state once per batch)."""

    c: Channels
    s: StreamSettings
    fleet: FleetView
    live_states: LiveStates
    lag: LagWatch

    async def run(self, producer: ProducerT, events: list[faust.EventT]) -> None:
        """Count, learn and route one batch of readings-topic events."""
        c, s, t0 = self.c, self.s, time.perf_counter()
        records, verified = _records(events), c.checker.reading_or_none
        stats = stats_batch(records, c.stats_table.get, self.fleet.observe, verified)
        learned = learn_batch(records, c.models_table.get, s, self.live_states, c.checker.check)
        members = []  # re-keyed by group (district, kind): each group's sums and model on one worker
        for e in events:
            routed = route(e.value, e.headers, s, verified)
            if routed is None:
                UNGROUPED.inc()
            else:
                members.append(routed)
        await _send(producer, c.stats, stats.records)
        await _send(producer, c.forecasts, learned.forecasts)
        await _send(producer, c.alerts, learned.alerts)
        await _send(producer, c.by_group, members)
        for i, reason, error in learned.rejected:
            await send_dead(c.learner_dead, "learner", events[i], reason, error)
        await _checkpoint(producer, c.stats_table, stats.latest)
        await _checkpoint(producer, c.models_table, learned.states)
        PROCESSED.inc(len(stats.records))
        SKIPPED.inc(stats.skipped + learned.skipped)
        self.lag.processed(events)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - t0)


def _batches(stream: faust.Stream, s: StreamSettings) -> AsyncIterator[list[faust.EventT]]:
    # Batches: each key's state is restored and checkpointed once per batch, not per record.
    return stream.take_events(s.batch_max, within=s.batch_within_s)


def _records(events: list[faust.EventT]) -> list[tuple[bytes | None, bytes]]:
    return [(e.key, e.value) for e in events]


async def _checkpoint(producer: ProducerT, table: faust.Table, states: dict[bytes, bytes]) -> None:
    # What Table.update does (each key's record to the changelog, on the partition the producer's
    # partitioner gives its key as use_partitioner asks; the value into the table's memory store), minus
    # Faust's changelog buffer: it publishes one record per event-loop turn, and from 100 queued the
    # consumer stops feeding the agents until it drains (ProducerBuffer.wait_until_ebb), which stalled
    # a worker checkpointing a few hundred states a batch.
    await _send(producer, table.changelog_topic, states.items())
    store = table.data
    for key, value in states.items():
        store[key] = value


async def _send(producer: ProducerT, topic: faust.TopicT, records: Iterable[tuple[bytes, bytes]]) -> None:
    # Straight to the producer, which batches (producer_linger): Topic.send wraps each record in
    # promises, serializer look-ups and sensor calls that cost more than the record (raw bytes here).
    name = topic.get_topic_name()
    send = producer.send
    for key, value in records:
        await send(name, key, value, None, None, None)


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
