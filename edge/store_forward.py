"""The on-disk outbox between the model and MQTT: SQLite in WAL mode, rows keyed by sequence number.

A signed reading is committed here before anything tries to send it, and its
row is deleted only after the broker's PUBACK, so a broker outage or a
SIGKILL of the agent loses nothing: the next run resends the oldest rows
first. The outbox also remembers the device's next sequence number in the same
transaction as the reading, so a restarted agent never reuses one.

Disk use is bounded by `max_bytes` of payload; see EdgeSettings for the policy
when it is reached.
"""

from __future__ import annotations

import threading
from pathlib import Path

import structlog
from prometheus_client import Counter, Gauge

from citygrid.edge.errors import OutboxFull
from citygrid.storage import open_sqlite

log = structlog.get_logger(__name__)

POLICIES = ("drop_oldest", "refuse")
QUEUED = Gauge("citygrid_edge_outbox_readings", "Signed readings waiting for a broker acknowledgement")
QUEUED_BYTES = Gauge("citygrid_edge_outbox_bytes", "Payload bytes held in the outbox")
DROPPED = Counter("citygrid_edge_outbox_dropped_total", "Unsent readings dropped because the outbox was full")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
"""


class Outbox:
    """A durable FIFO of (seq, topic, payload), shared by the reading loop and the sender thread."""

    def __init__(self, path: Path, max_bytes: int = 64 * 1024 * 1024, policy: str = "drop_oldest",
                 synchronous: str = "NORMAL") -> None:
        if policy not in POLICIES:
            raise ValueError(f"outbox policy {policy!r} is not one of {POLICIES}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.policy = policy
        self._lock = threading.Lock()
        # Autocommit: we issue BEGIN/COMMIT ourselves so each put is one transaction.
        self._db = open_sqlite(self.path, _SCHEMA, synchronous)
        count, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox"
                                       ).fetchone()
        self._count, self._bytes = count, size
        self._publish_gauges()

    def _publish_gauges(self) -> None:
        QUEUED.set(self._count)
        QUEUED_BYTES.set(self._bytes)

    def next_seq(self, default: int = 0) -> int:
        """The sequence number the next reading must get (never below `default`)."""
        with self._lock:
            row = self._db.execute("SELECT v FROM meta WHERE k='next_seq'").fetchone()
        return max(default, row[0] if row else 0)

    def put(self, seq: int, topic: str, payload: bytes) -> None:
        """Commit one signed reading and advance the stored next sequence number."""
        self.put_many([(seq, topic, payload)])

    def put_many(self, rows: list[tuple[int, str, bytes]]) -> None:
        """Commit readings in one transaction (cheaper per reading at high rates)."""
        if not rows:
            return
        incoming = sum(len(p) for _, _, p in rows)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._make_room(incoming)
                self._db.executemany("INSERT INTO outbox(seq, topic, payload) VALUES (?, ?, ?)", rows)
                self._db.execute("INSERT INTO meta(k, v) VALUES ('next_seq', ?) "
                                 "ON CONFLICT(k) DO UPDATE SET v=MAX(v, excluded.v)", (rows[-1][0] + 1,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count += len(rows)
            self._bytes += incoming
            self._publish_gauges()

    def _make_room(self, incoming: int) -> None:
        over = self._bytes + incoming - self.max_bytes
        if over <= 0:
            return
        if self.policy == "refuse":
            raise OutboxFull(f"outbox {self.path} holds {self._bytes} of {self.max_bytes} bytes; "
                             "restore the broker connection or raise CITYGRID_EDGE__OUTBOX_MAX_BYTES")
        freed, dropped = 0, 0
        for seq, size in self._db.execute("SELECT seq, LENGTH(payload) FROM outbox ORDER BY seq"):
            if freed >= over:
                break
            freed += size
            dropped += 1
            last = seq
        if dropped:
            self._db.execute("DELETE FROM outbox WHERE seq <= ?", (last,))
            self._count -= dropped
            self._bytes -= freed
            DROPPED.inc(dropped)
            log.warning("outbox_full_dropped_oldest", dropped=dropped, up_to_seq=last,
                        max_bytes=self.max_bytes)

    def oldest(self, limit: int, after: int = -1) -> list[tuple[int, str, bytes]]:
        """Up to `limit` rows in sequence order with seq > `after`."""
        with self._lock:
            return self._db.execute(
                "SELECT seq, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            ).fetchall()

    def delete(self, seqs: list[int]) -> None:
        """Forget readings the broker acknowledged."""
        if not seqs:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            size = 0
            for i in range(0, len(seqs), 500):
                chunk = seqs[i:i + 500]
                marks = ",".join("?" * len(chunk))
                size += self._db.execute(
                    f"SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox WHERE seq IN ({marks})", chunk
                ).fetchone()[0]
                cur = self._db.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", chunk)
                self._count -= cur.rowcount
            self._db.execute("COMMIT")
            self._bytes -= size
            self._publish_gauges()

    def __len__(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        """Payload bytes currently held."""
        return self._bytes

    def close(self) -> None:
        """Close the database (the WAL is checkpointed by SQLite)."""
        with self._lock:
            self._db.close()
