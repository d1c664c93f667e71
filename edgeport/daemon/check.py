"""`edgeport daemon --check`: open what the daemon would open (the model, the state folder and spool,
the outputs) without starting it, and say what was found, one line each.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

from edgeport.daemon.config import DaemonConfig
from edgeport.daemon.redact import redact
from edgeport.errors import EdgeportError


def _writable(folder: Path) -> str | None:
    """None when files can be created in `folder` (made if missing), else why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".edgeport-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"{folder} is not writable: {exc.strerror or exc}"
    return None


def _spool_line(path: Path) -> str:
    if not path.exists():
        return f"spool {path}: none yet (created at start)"
    try:  # read-only: a corrupt file is reported here, set aside only by the daemon itself
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            result = db.execute("PRAGMA quick_check").fetchone()[0]
            count = db.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
    except sqlite3.Error as exc:
        return f"spool {path}: CORRUPT ({exc}); the daemon will set it aside and start a new one"
    if result != "ok":
        return f"spool {path}: CORRUPT ({result}); the daemon will set it aside and start a new one"
    return f"spool {path}: ok, {count} events waiting"


def _reachable(host: str, port: int) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=3):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def check(config: DaemonConfig) -> tuple[list[str], list[str]]:
    """Return (lines of what was opened, problems that would stop the daemon)."""
    from edgeport.runtime.detector import Detector

    lines, problems = [], []
    try:
        detector = Detector(config.model, backend=config.backend, threads=config.threads,
                            backend_options={"device": config.device} if config.device else None)
        info = detector.describe()
        lines.append(f"model {config.model}: opened with {info['backend']} ({info['precision']}, input "
                     f"{'x'.join(map(str, info['imgsz']))}, {len(info['names'])} classes)")
    except EdgeportError as exc:
        problems.append(f"model {config.model}: {exc}")
    lines.append("cameras: " + ", ".join(f"{c.id} ({redact(c.source)})" for c in config.cameras))
    for problem in filter(None, [_writable(config.state_dir)]):
        problems.append(problem)
    if config.mqtt:
        lines.append(_spool_line(config.state_dir / "mqtt-spool.sqlite"))
        down = _reachable(config.mqtt.host, config.mqtt.port)
        lines.append(f"mqtt {config.mqtt.host}:{config.mqtt.port}: " + (f"not reachable now ({down}); the daemon "
                                                                         "spools events and keeps trying" if down
                                                                         else "reachable"))
    if config.jsonl:
        problem = _writable(config.jsonl.path.parent)
        (problems.append(problem) if problem else lines.append(f"jsonl {config.jsonl.path}: writable"))
    if config.http:
        lines.append(f"http {config.http.host}:{config.http.port}: "
                     + ("port in use" if config.http.port and not _reachable(config.http.host, config.http.port)
                        else "free"))
    return lines, problems
