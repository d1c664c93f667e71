"""The bounded on-disk store-and-forward queue for MQTT messages that must not be lost (events).

SQLite in WAL mode: a message is durable once `put` returns and leaves only after the broker acked it.
When full, the oldest message is dropped and counted (never silently).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class Spool:
    """FIFO of (seq, topic, payload, retain); `seq` grows by one per message, over restarts too."""

    def __init__(self, path: Path, max_items: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.max_items = path, max_items
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                         "topic TEXT NOT NULL, payload BLOB NOT NULL, retain INTEGER NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS stats (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self.overflow = self._stat("overflow")

    def _stat(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM stats WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def next_seq(self) -> int:
        """The sequence number the next `put` will get (sqlite AUTOINCREMENT never reuses one)."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'queue'").fetchone()
            return (int(row[0]) if row else 0) + 1

    def put(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """Store a message; return its sequence number. Drops (and counts) the oldest when full."""
        with self._lock:
            cursor = self._db.execute("INSERT INTO queue (topic, payload, retain) VALUES (?, ?, ?)",
                                      (topic, payload, int(retain)))
            count = self._db.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
            if count > self.max_items:
                excess = count - self.max_items
                self._db.execute("DELETE FROM queue WHERE seq IN (SELECT seq FROM queue ORDER BY seq LIMIT ?)",
                                 (excess,))
                self.overflow += excess
                self._db.execute("INSERT INTO stats (key, value) VALUES ('overflow', ?) "
                                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (self.overflow,))
            self._ready.notify_all()
            return int(cursor.lastrowid)

    def peek(self, timeout: float = 0.0) -> tuple[int, str, bytes, bool] | None:
        """The oldest message, left in place; None when empty after `timeout` seconds."""
        with self._lock:
            row = self._db.execute("SELECT seq, topic, payload, retain FROM queue ORDER BY seq LIMIT 1").fetchone()
            if row is None and timeout > 0:
                self._ready.wait(timeout)
                row = self._db.execute("SELECT seq, topic, payload, retain FROM queue ORDER BY seq LIMIT 1").fetchone()
        if row is None:
            return None
        return int(row[0]), str(row[1]), bytes(row[2]), bool(row[3])

    def ack(self, seq: int) -> None:
        """Remove a delivered message."""
        with self._lock:
            self._db.execute("DELETE FROM queue WHERE seq = ?", (seq,))

    def wake(self) -> None:
        with self._lock:
            self._ready.notify_all()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM queue").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
