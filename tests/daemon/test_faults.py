"""Faults with the real parts: a full disk (a 1 MB tmpfs), a corrupt spool (at start and while running),
a killed broker. The daemon keeps running, /health says what is wrong, every event arrives afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from daemon_support import wait_for
from test_mqtt import Subscriber

from edgeport.daemon.config import Mqtt
from edgeport.daemon.faults import Faults
from edgeport.daemon.metrics import Metrics
from edgeport.daemon.mqtt import MqttLink
from edgeport.daemon.spool import Spool


class SmallDisk:
    """A 1 MB tmpfs (root only) and a filler file that takes every free byte of it."""

    def __init__(self, folder) -> None:
        self.folder = folder
        self.filler = folder / "filler"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:  # ENOSPC: the disk is full
            pass
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], check=True)
    try:
        yield SmallDisk(folder)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _link(path, port: int, faults: Faults | None = None) -> MqttLink:
    link = MqttLink(Mqtt(port=port, keepalive=60), Spool(path, 1000), Metrics(), ["yard"], ("circle",),
                    faults if faults is not None else Faults())
    link.start()
    return link


def _seqs(subscriber: Subscriber) -> list[int]:
    return list(dict.fromkeys(json.loads(p)["seq"] for p in subscriber.on("/events")))


def test_full_disk_keeps_events_in_memory_and_delivers_them_when_space_returns(small_disk, broker):
    subscriber = Subscriber(broker.port, topic="edgeport/+/events")
    faults = Faults()
    link = _link(small_disk.folder / "spool.sqlite", broker.port, faults)
    try:
        wait_for(lambda: link.connected, what="connected")
        for n in range(3):
            link.enqueue_event("yard", {"n": n})
        wait_for(lambda: _seqs(subscriber) == [1, 2, 3], what="events before the fault")
        broker.stop()  # events pile up in the spool while the disk fills
        wait_for(lambda: not link.connected, what="disconnected")
        for n in range(3, 6):
            link.enqueue_event("yard", {"n": n})
        small_disk.fill()
        for n in range(6, 40):
            link.enqueue_event("yard", {"n": n, "pad": "x" * 2000})
        wait_for(lambda: "spool" in faults.active() and link.waiting_in_memory > 0, what="spool fault")
        assert "disk is full" in faults.active()["spool"]["error"]
        broker.start()  # the sender now publishes, but may not be able to delete from a full disk
        time.sleep(3)
        assert link._sender.is_alive()
        small_disk.free()
        wait_for(lambda: len(_seqs(subscriber)) >= 40, timeout=60, what="every event after space returned")
        wait_for(lambda: not faults.active(), what="faults cleared")
    finally:
        link.stop(drain_s=1)
        subscriber.close()
    assert _seqs(subscriber) == list(range(1, 41))


def test_sender_outlives_sqlite_errors_and_reports_them(tmp_path, broker):
    """The spool file is overwritten with garbage under the running daemon: the sender's next read
    fails; it is restarted, the file set aside, and later events still arrive with their seq."""
    subscriber = Subscriber(broker.port, topic="edgeport/+/events")
    faults = Faults()
    path = tmp_path / "spool.sqlite"
    link = _link(path, broker.port, faults)
    try:
        wait_for(lambda: link.connected, what="connected")
        link.enqueue_event("yard", {"n": 0})
        wait_for(lambda: _seqs(subscriber) == [1], what="first event")
        for name in ("spool.sqlite", "spool.sqlite-wal", "spool.sqlite-shm"):  # garbage under the open files
            target = tmp_path / name
            if target.exists():
                with open(target, "r+b") as out:
                    out.write(b"garbage!" * (target.stat().st_size // 8 + 1))
        for n in range(1, 4):
            link.enqueue_event("yard", {"n": n})
        wait_for(lambda: len(_seqs(subscriber)) >= 4, timeout=30, what="events after the corruption")
        assert link._sender.is_alive()
        assert any("corrupt" in notice for notice in faults.notices)
    finally:
        link.stop(drain_s=1)
        subscriber.close()
    assert _seqs(subscriber) == [1, 2, 3, 4]
    assert list(tmp_path.glob("spool.sqlite.corrupt-*"))


def test_corrupt_spool_at_start_is_set_aside_and_seq_continues(tmp_path):
    path = tmp_path / "spool.sqlite"
    spool = Spool(path, 100)
    for _ in range(7):
        spool.put("t", b"x")
    spool.close()
    path.write_bytes(b"\0garbage" * 512)
    (tmp_path / "spool.sqlite-wal").unlink(missing_ok=True)
    again = Spool(path, 100)  # no sqlite3.DatabaseError: the daemon starts
    assert again.recovered and "corrupt" in again.recovered and "seq continues after 7" in again.recovered
    assert again.next_seq() == 8 and again.put("t", b"y") == 8
    assert len(list(tmp_path.glob("spool.sqlite.corrupt-*"))) == 1


def test_synchronous_full_is_set(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite", 10)
    assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    spool.put("t", b"x")
    spool.ack(1)
    assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2
