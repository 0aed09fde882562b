"""SQLite record of every anchored batch and its leaves, so proofs can be cut later.

The chain only holds each batch's root; this store holds the leaves (signed
reading envelopes) and where each root landed. A (device, seq) is stored
once, which is what makes re-consumed Kafka records harmless after a crash.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from citygrid.ledger.chain import Inclusion
from citygrid.ledger.signed_once import SignedExtrinsic
from citygrid.ledger.sqlite_store import SqliteStore


@dataclass(frozen=True)
class Batch:
    """One interval's batch as recorded."""

    id: int
    interval_start_ms: int
    root: bytes
    count: int
    remark: str
    block_hash: str | None
    block_number: int | None
    extrinsic_index: int | None
    signed: SignedExtrinsic | None = None  # the remark's extrinsic, stored before it was submitted

    @property
    def anchored(self) -> bool:
        """True once the chain included the root."""
        return self.block_hash is not None


class AnchorStore(SqliteStore):
    """The anchorer's durable state (opened with `AnchorStore(settings.paths.anchor_store)`)."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS batches (
      id INTEGER PRIMARY KEY,
      interval_start_ms INTEGER NOT NULL,
      root BLOB NOT NULL,
      count INTEGER NOT NULL,
      remark TEXT NOT NULL,
      block_hash TEXT,
      block_number INTEGER,
      extrinsic_index INTEGER,
      created_s REAL NOT NULL,
      anchored_s REAL,
      nonce INTEGER,
      extrinsic BLOB,
      extrinsic_hash TEXT,
      from_block INTEGER
    );
    CREATE TABLE IF NOT EXISTS leaves (
      batch_id INTEGER NOT NULL REFERENCES batches(id),
      idx INTEGER NOT NULL,
      device TEXT NOT NULL,
      seq INTEGER NOT NULL,
      envelope BLOB NOT NULL,
      PRIMARY KEY (batch_id, idx),
      UNIQUE (device, seq)
    );
    """

    SIGNED_COLUMNS = (("nonce", "INTEGER"), ("extrinsic", "BLOB"), ("extrinsic_hash", "TEXT"),
                      ("from_block", "INTEGER"))

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        # Stores written before batches kept their signed extrinsic gain the columns (all empty).
        have = {row[1] for row in self.db.execute("PRAGMA table_info(batches)")}
        for name, kind in self.SIGNED_COLUMNS:
            if name not in have:
                self.db.execute(f"ALTER TABLE batches ADD COLUMN {name} {kind}")

    def seen(self, device: str, seq: int) -> bool:
        """True if this reading is already in some batch."""
        return self.envelope(device, seq) is not None

    def envelope(self, device: str, seq: int) -> bytes | None:
        """The envelope recorded for (device, seq), or None if no batch holds one."""
        row = self.db.execute("SELECT envelope FROM leaves WHERE device=? AND seq=?", (device, seq))
        found = row.fetchone()
        return None if found is None else bytes(found[0])

    def add_batch(self, interval_start_ms: int, root: bytes, remark: str,
                  leaves: list[tuple[str, int, bytes]]) -> Batch:
        """Record a batch and its leaves (device, seq, envelope) before it goes on chain."""
        now = time.time()
        with self.db:
            self.db.execute("BEGIN")
            cur = self.db.execute(
                "INSERT INTO batches (interval_start_ms, root, count, remark, created_s) "
                "VALUES (?, ?, ?, ?, ?)", (interval_start_ms, root, len(leaves), remark, now),
            )
            batch_id = cur.lastrowid
            self.db.executemany(
                "INSERT INTO leaves (batch_id, idx, device, seq, envelope) VALUES (?, ?, ?, ?, ?)",
                [(batch_id, i, d, s, e) for i, (d, s, e) in enumerate(leaves)],
            )
        return self.batch(batch_id)

    def mark_anchored(self, batch_id: int, inclusion: Inclusion) -> None:
        """Record where the batch's root landed."""
        self.db.execute(
            "UPDATE batches SET block_hash=?, block_number=?, extrinsic_index=?, anchored_s=? "
            "WHERE id=?",
            (inclusion.block_hash, inclusion.block_number, inclusion.extrinsic_index,
             time.time(), batch_id),
        )

    def mark_signed(self, batch_id: int, signed: SignedExtrinsic | None) -> None:
        """Keep the remark's signed extrinsic before it is submitted (None: forget bytes whose nonce
        went to another extrinsic, so the batch is signed afresh)."""
        values = (None, None, None, None) if signed is None else (
            signed.nonce, signed.extrinsic, signed.ext_hash, signed.from_block)
        self.db.execute("UPDATE batches SET nonce=?, extrinsic=?, extrinsic_hash=?, from_block=? WHERE id=?",
                        (*values, batch_id))

    def batch(self, batch_id: int) -> Batch:
        """One batch by id."""
        row = self.db.execute(
            "SELECT id, interval_start_ms, root, count, remark, block_hash, block_number, "
            "extrinsic_index, nonce, extrinsic, extrinsic_hash, from_block FROM batches WHERE id=?",
            (batch_id,),
        ).fetchone()
        if row is None:
            raise KeyError(f"no batch {batch_id}")
        nonce, ext, ext_hash, from_block = row[8:]
        signed = None if ext is None else SignedExtrinsic(nonce, bytes(ext), ext_hash, from_block)
        return Batch(*row[:8], signed=signed)

    def batches(self, pending_only: bool = False) -> list[Batch]:
        """All batches, oldest first."""
        where = "WHERE block_hash IS NULL" if pending_only else ""
        ids = self.db.execute(f"SELECT id FROM batches {where} ORDER BY id").fetchall()
        return [self.batch(i) for (i,) in ids]

    def leaves(self, batch_id: int) -> list[bytes]:
        """A batch's leaf envelopes in tree order."""
        rows = self.db.execute(
            "SELECT envelope FROM leaves WHERE batch_id=? ORDER BY idx", (batch_id,)
        ).fetchall()
        return [r[0] for r in rows]

    def locate(self, device: str, seq: int) -> tuple[Batch, int]:
        """The batch holding a reading and its leaf index."""
        row = self.db.execute(
            "SELECT batch_id, idx FROM leaves WHERE device=? AND seq=?", (device, seq)
        ).fetchone()
        if row is None:
            raise KeyError(f"reading {device}/{seq} has not been anchored")
        return self.batch(row[0]), row[1]

    def anchored_leaves(self, devices: list[str], from_ms: int, to_ms: int) -> list[tuple[str, int, bytes]]:
        """(device, seq, envelope) of these devices' leaves in anchored batches whose interval starts in
        [from_ms, to_ms): the time index the delivery check reads (leaves keep no timestamp of their own)."""
        marks = ",".join("?" * len(devices))
        rows = self.db.execute(
            f"SELECT l.device, l.seq, l.envelope FROM leaves l JOIN batches b ON b.id = l.batch_id "
            f"WHERE b.block_hash IS NOT NULL AND b.interval_start_ms >= ? AND b.interval_start_ms < ? "
            f"AND l.device IN ({marks}) ORDER BY l.device, l.seq", (from_ms, to_ms, *devices),
        ).fetchall()
        return [(d, s, bytes(e)) for d, s, e in rows]

    def pending_between(self, from_ms: int, to_ms: int) -> int:
        """How many batches with an interval start in [from_ms, to_ms) are recorded but not yet on chain."""
        (n,) = self.db.execute(
            "SELECT COUNT(*) FROM batches WHERE block_hash IS NULL AND interval_start_ms >= ? "
            "AND interval_start_ms < ?", (from_ms, to_ms)).fetchone()
        return n

    def counts(self) -> tuple[int, int, int]:
        """(batches, anchored batches, leaves) for status reports."""
        b, a = self.db.execute(
            "SELECT COUNT(*), COUNT(block_hash) FROM batches"
        ).fetchone()
        (n,) = self.db.execute("SELECT COUNT(*) FROM leaves").fetchone()
        return b, a, n
