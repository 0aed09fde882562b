"""Durable local files: atomic replacement and SQLite databases in WAL mode.

Everything a citygrid process keeps on disk (registries, model state, the
outbox, the anchor and settlement stores, cached data) goes through these two
helpers, so a kill or power loss at any moment leaves either the old or the
new content, never half of one.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Replace `path` with `data`: written to a temporary file, fsynced, then renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of this writer's own: two threads or processes writing the same file never share a temp.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def open_sqlite(path: Path, schema: str, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A connection in autocommit mode with WAL journaling and `schema` (idempotent DDL) applied.

    WAL with synchronous=NORMAL survives a killed process; FULL also survives power loss.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.executescript(schema)
    return db
