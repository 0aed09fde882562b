"""SQLite record of each interval's settlement, written before every step that touches the chain.

States: prepared (trades recorded) → signed (the one extrinsic that may settle
them, with its nonce, stored before it is submitted) → settled or failed. A
trade id belongs to exactly one interval, so a trade can never be put in two
extrinsics.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from citygrid.ledger.chain import Inclusion
from citygrid.ledger.errors import SettlementError
from citygrid.ledger.sqlite_store import SqliteStore
from citygrid.market import Trade


@dataclass(frozen=True)
class Settlement:
    """One interval's settlement as recorded."""

    interval_start_ms: int
    trades: list[Trade]
    status: str
    nonce: int | None
    extrinsic: bytes | None
    extrinsic_hash: str | None
    from_block: int | None
    block_hash: str | None
    block_number: int | None
    extrinsic_index: int | None
    error: str | None
    remark: str  # the System.remark_with_event text of the settlement (citygrid.ledger.remarks)


class SettlementStore(SqliteStore):
    """The settler's durable state (opened with `SettlementStore(settings.paths.settlement_store)`)."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS settlements (
      interval_start_ms INTEGER PRIMARY KEY,
      trades TEXT NOT NULL,
      status TEXT NOT NULL,
      nonce INTEGER,
      extrinsic BLOB,
      extrinsic_hash TEXT,
      from_block INTEGER,
      block_hash TEXT,
      block_number INTEGER,
      extrinsic_index INTEGER,
      error TEXT,
      updated_s REAL NOT NULL,
      remark TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE IF NOT EXISTS settled_trades (
      trade_id TEXT PRIMARY KEY,
      interval_start_ms INTEGER NOT NULL REFERENCES settlements(interval_start_ms)
    );
    """
    SYNCHRONOUS = "FULL"  # a settled mark must survive a power cut

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(settlements)")}
        if "remark" not in columns:  # a store from before remarks committed the interval's orders
            self.db.execute("ALTER TABLE settlements ADD COLUMN remark TEXT NOT NULL DEFAULT ''")

    def prepare(self, interval_start_ms: int, trades: list[Trade], remark: str) -> Settlement:
        """Record an interval's trades and the remark that commits to them (the orders root, price and
        trades hash), or return the existing record if it holds the same trades."""
        existing = self.get(interval_start_ms)
        ids = sorted(t.trade_id for t in trades)
        if existing is not None:
            if sorted(t.trade_id for t in existing.trades) != ids:
                raise SettlementError(
                    f"interval {interval_start_ms} was already recorded with other trades; a cleared "
                    "interval cannot change — investigate the market output before settling again"
                )
            return existing
        body = json.dumps([t.model_dump() for t in sorted(trades, key=lambda t: t.trade_id)])
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO settlements (interval_start_ms, trades, status, updated_s, remark) "
                "VALUES (?,?,?,?,?)", (interval_start_ms, body, "prepared", time.time(), remark))
            self.db.executemany("INSERT INTO settled_trades VALUES (?,?)",
                                [(i, interval_start_ms) for i in ids])
            self.db.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            self.db.execute("ROLLBACK")
            raise SettlementError(
                f"a trade of interval {interval_start_ms} is already recorded under another interval"
            ) from exc
        return self.get(interval_start_ms)  # type: ignore[return-value]

    def mark_signed(self, interval_start_ms: int, nonce: int, extrinsic: bytes, ext_hash: str,
                    from_block: int) -> Settlement:
        """Record the signed extrinsic before it leaves the process."""
        return self._update(interval_start_ms, status="signed", nonce=nonce, extrinsic=extrinsic,
                            extrinsic_hash=ext_hash, from_block=from_block, error=None)

    def mark_prepared(self, interval_start_ms: int, error: str) -> Settlement:
        """Forget a signed extrinsic that can never be included (its nonce went to another)."""
        return self._update(interval_start_ms, status="prepared", nonce=None, extrinsic=None,
                            extrinsic_hash=None, from_block=None, error=error)

    def mark_done(self, interval_start_ms: int, inclusion: Inclusion, error: str | None) -> Settlement:
        """Record the chain's verdict on the included extrinsic."""
        return self._update(interval_start_ms, status="failed" if error else "settled",
                            block_hash=inclusion.block_hash, block_number=inclusion.block_number,
                            extrinsic_index=inclusion.extrinsic_index, error=error)

    def _update(self, interval_start_ms: int, **fields: object) -> Settlement:
        cols = ", ".join(f"{k}=?" for k in fields)
        self.db.execute(f"UPDATE settlements SET {cols}, updated_s=? WHERE interval_start_ms=?",
                        (*fields.values(), time.time(), interval_start_ms))
        return self.get(interval_start_ms)  # type: ignore[return-value]

    def get(self, interval_start_ms: int) -> Settlement | None:
        """One interval's record."""
        row = self.db.execute(f"SELECT {_COLUMNS} FROM settlements WHERE interval_start_ms=?",
                              (interval_start_ms,)).fetchone()
        return _row(row) if row else None

    def all(self, status: str | None = None) -> list[Settlement]:
        """Every record (or those in one state), oldest interval first, signed ones by nonce."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM settlements "
            "WHERE ?1 IS NULL OR status=?1 ORDER BY nonce IS NULL, nonce, interval_start_ms", (status,))
        return [_row(r) for r in rows]


# Settlement's fields, in order.
_COLUMNS = ("interval_start_ms, trades, status, nonce, extrinsic, extrinsic_hash, from_block, block_hash, "
            "block_number, extrinsic_index, error, remark")


def _row(r: tuple) -> Settlement:
    trades = [Trade.model_validate(t) for t in json.loads(r[1])]
    return Settlement(r[0], trades, *r[2:])
