"""Handing a batch's output records to the worker's Kafka producer: one Kafka batch per partition.

Why not `topic.send`: inside an agent Faust attaches every message to the current event and holds it
until the next offset commit, through futures and a buffer of its own, and aiokafka's `send` adds a
coroutine and a future per record. At two or more records per reading (a forecast, the device's
statistics, and the changelogs) that cost a worker more CPU than learning did
(`benchmarks/stream_learning.py`). Records are placed as aiokafka's `send` places them (murmur2 of
the key, the Java client's choice), so every key stays on the partition it always went to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import faust
from aiokafka.partitioner import DefaultPartitioner

_PLACE = DefaultPartitioner()


async def produce(app: faust.App, channel: faust.TopicT, records: Sequence[tuple[bytes, bytes]]
                  ) -> list[asyncio.Future[Any]]:
    """Queue `records` (key, value) on the topic, in order within each partition.

    The futures resolve when the broker has acknowledged them; the agents await them before they
    checkpoint their tables, so a crash in between re-emits outputs and never loses them.
    """
    if not records:
        return []
    topic = channel.get_topic_name()
    # Faust has no batch API of its own: its driver's aiokafka producer (faust-streaming is pinned).
    kafka = app.producer._ensure_producer()  # type: ignore[attr-defined]
    partitions = sorted(await kafka.partitions_for(topic))
    placed: dict[bytes, int] = {}
    batches: dict[int, Any] = {}
    sent: list[asyncio.Future[Any]] = []
    for key, value in records:
        partition = placed.get(key)
        if partition is None:
            partition = placed[key] = _PLACE(key, partitions, partitions)
        batch = batches.get(partition)
        if batch is None:
            batch = batches[partition] = kafka.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
            sent.append(await kafka.send_batch(batch, topic, partition=partition))
            batch = batches[partition] = kafka.create_batch()
            batch.append(key=key, value=value, timestamp=None)  # an empty batch takes any one record
    for partition, batch in batches.items():
        sent.append(await kafka.send_batch(batch, topic, partition=partition))
    return sent
