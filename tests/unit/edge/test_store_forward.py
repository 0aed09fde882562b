"""The outbox: FIFO order, sequence numbers that survive a reopen, and the bounded-disk policies."""

from __future__ import annotations

from pathlib import Path

import pytest

from citygrid.edge.errors import OutboxFull
from citygrid.edge.store_forward import Outbox


def test_rows_come_back_in_order_and_go_only_when_deleted(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.put_many([(i, "t", bytes([i]) * 10) for i in range(5)])
    assert [r[0] for r in box.oldest(3)] == [0, 1, 2]
    assert [r[0] for r in box.oldest(10, after=2)] == [3, 4]
    box.delete([1, 3])
    assert [r[0] for r in box.oldest(10)] == [0, 2, 4]
    assert len(box) == 3 and box.size_bytes == 30


def test_next_seq_and_unsent_rows_survive_reopening(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.put_many([(7, "t", b"a"), (8, "t", b"b")])
    box.delete([7, 8])
    box.put(9, "t", b"c")
    box.close()
    again = Outbox(tmp_path / "o.db")
    assert again.next_seq() == 10
    assert again.next_seq(default=50) == 50
    assert again.oldest(10) == [(9, "t", b"c")]
    assert len(again) == 1


def test_drop_oldest_keeps_disk_use_under_the_budget(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=1000, policy="drop_oldest")
    for i in range(50):
        box.put(i, "t", b"x" * 100)
    assert box.size_bytes <= 1000
    assert [r[0] for r in box.oldest(100)] == list(range(40, 50))
    assert box.next_seq() == 50


def test_refuse_policy_raises_and_keeps_the_oldest(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=300, policy="refuse")
    for i in range(3):
        box.put(i, "t", b"x" * 100)
    with pytest.raises(OutboxFull, match="raise CITYGRID_EDGE__OUTBOX_MAX_BYTES"):
        box.put(3, "t", b"x" * 100)
    assert [r[0] for r in box.oldest(10)] == [0, 1, 2]
    assert box.next_seq() == 3


def test_unknown_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="drop_oldest"):
        Outbox(tmp_path / "o.db", policy="drop_newest")
