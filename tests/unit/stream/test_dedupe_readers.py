"""The Faust workers' consumer reads committed records only: the readings topic is written in transactions."""

from __future__ import annotations

import asyncio
from pathlib import Path

from support import isolated_settings

from citygrid.stream.app import make_app
from citygrid.stream.dedupe_readers import CommittedTransport


def test_the_workers_consumer_skips_aborted_transactions(tmp_path: Path) -> None:
    async def isolation() -> str:
        app = make_app(isolated_settings(tmp_path))
        assert isinstance(app.transport, CommittedTransport)
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return consumer._isolation_level
        finally:
            await consumer.stop()

    assert asyncio.run(isolation()) == "read_committed"
