"""The shape both ledger stores share: one SQLite database in WAL mode, with its schema applied on open."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from citygrid.storage import open_sqlite


class SqliteStore:
    """A durable store: subclasses name their schema and how hard a commit must survive."""

    SCHEMA: ClassVar[str]
    # NORMAL survives a killed process; FULL also a power cut, at a cost per commit.
    SYNCHRONOUS: ClassVar[Literal["NORMAL", "FULL"]] = "NORMAL"

    def __init__(self, path: Path) -> None:
        self.db = open_sqlite(path, self.SCHEMA, self.SYNCHRONOUS)

    def close(self) -> None:
        """Close the database."""
        self.db.close()
