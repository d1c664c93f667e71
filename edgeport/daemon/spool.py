"""The bounded on-disk store-and-forward queue for MQTT messages that must not be lost (events).

SQLite in WAL mode with synchronous=FULL: a message is durable once `put` returns and leaves only after the
broker acked it. When full, the oldest message is dropped and counted (never silently). A corrupt file is
set aside (renamed) and a new one started; the sequence continues from a high-water file beside it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger("edgeport.daemon")

CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def is_corruption(exc: BaseException) -> bool:
    """True for SQLite's 'file is not a database' and 'database disk image is malformed'."""
    return isinstance(exc, sqlite3.DatabaseError) and getattr(exc, "sqlite_errorname", "") in CORRUPT


class Spool:
    """FIFO of (seq, topic, payload, retain); `seq` grows by one per message, over restarts and over a
    corrupt file set aside. `recovered` says, once set, which corrupt file was set aside and where."""

    def __init__(self, path: Path, max_items: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.max_items = path, max_items
        self.seq_path = path.with_name(path.name + ".seq")  # the highest seq ever given, beside the file
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self.recovered: str | None = None
        self._db = self._open_or_set_aside()
        self.overflow = self._stat("overflow")

    # opening ---------------------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # durable once written: the WAL is synced at every commit
            db.execute("PRAGMA wal_autocheckpoint=64")  # a small WAL (256 kB pages) for small disks
            db.execute("PRAGMA journal_size_limit=1048576")  # and trimmed back to 1 MB after a checkpoint
            db.execute("CREATE TABLE IF NOT EXISTS queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                       "topic TEXT NOT NULL, payload BLOB NOT NULL, retain INTEGER NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS stats (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            problem = db.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed ({problem})")
        except BaseException:
            db.close()
            raise
        return db

    def _open_or_set_aside(self) -> sqlite3.Connection:
        try:
            return self._open()
        except sqlite3.DatabaseError as exc:
            if not (is_corruption(exc) or "malformed" in str(exc)):
                raise
            self._set_aside(str(exc))
            return self._open()

    def _set_aside(self, why: str) -> Path:
        """Rename the corrupt file (and its WAL) to <name>.corrupt-<unix time>; say so once."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(str(self.path) + suffix)
            if source.exists():
                source.replace(Path(str(aside) + suffix))
        self.recovered = (f"the spool {self.path} was corrupt ({why}); set aside as {aside.name}, a new one "
                          f"started, events in it are lost; seq continues after {self._high_water()}")
        log.error("spool: %s", self.recovered)
        return aside

    def recover(self, why: str) -> None:
        """Corruption found while running: set the file aside and continue in a new one."""
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._set_aside(why)
            self._db = self._open()
            self.overflow = 0

    # the sequence ----------------------------------------------------------------------------------
    def _high_water(self) -> int:
        try:
            return int(self.seq_path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _stat(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM stats WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def next_seq(self) -> int:
        """The sequence number the next `put` will get: past every seq this file or the high-water file saw."""
        with self._lock:
            return self._next_seq()

    def _next_seq(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'queue'").fetchone()
        return max(int(row[0]) if row else 0, self._high_water()) + 1

    # the queue -------------------------------------------------------------------------------------
    def put(self, topic: str, payload: bytes, retain: bool = False, seq: int | None = None) -> int:
        """Store a message (with `seq`, or the next one); return its sequence number.

        Drops (and counts) the oldest when full. Raises sqlite3.Error (disk full, corruption): nothing
        was stored then.
        """
        with self._lock:
            cursor = self._db.execute("INSERT INTO queue (seq, topic, payload, retain) VALUES (?, ?, ?, ?)",
                                      (seq or self._next_seq(), topic, payload, int(retain)))
            seq = int(cursor.lastrowid)
            count = self._db.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
            if count > self.max_items:
                excess = count - self.max_items
                self._db.execute("DELETE FROM queue WHERE seq IN (SELECT seq FROM queue ORDER BY seq LIMIT ?)",
                                 (excess,))
                self.overflow += excess
                self._db.execute("INSERT INTO stats (key, value) VALUES ('overflow', ?) "
                                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (self.overflow,))
            self._write_high_water(seq)
            self._ready.notify_all()
            return seq

    def _write_high_water(self, seq: int) -> None:
        try:
            tmp = self.seq_path.with_name(self.seq_path.name + ".tmp")
            tmp.write_text(f"{seq}\n")
            os.replace(tmp, self.seq_path)
        except OSError:  # a full disk: SQLite's own sequence still holds it while the file is sound
            pass

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
        """Remove a delivered message. Not synced by itself (the next put's sync carries it): a removal
        lost to a power cut only means the message is delivered once more."""
        with self._lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("DELETE FROM queue WHERE seq = ?", (seq,))
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    def wake(self) -> None:
        with self._lock:
            self._ready.notify_all()

    def __len__(self) -> int:
        with self._lock:
            try:
                return int(self._db.execute("SELECT COUNT(*) FROM queue").fetchone()[0])
            except sqlite3.Error:
                return 0  # unreadable now: /health shows the fault itself

    def close(self) -> None:
        with self._lock:
            self._db.close()
