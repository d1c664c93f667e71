"""Credentials never leave the daemon: `redact` hides the user and password of every URL in a text.

Used on camera sources and their errors (/health, the log, MQTT state) and by a filter on the daemon's log.
"""

from __future__ import annotations

import logging
import re

# scheme://user:password@host  or  scheme://user@host  (anything up to the '@' before the host)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s?#]+)@")


def redact(text: object) -> str:
    """`text` with every URL's user information replaced by '***' (rtsp://***@camera/stream)."""
    return _USERINFO.sub(r"\g<scheme>***@", str(text))


class RedactingFilter(logging.Filter):
    """A log filter that redacts the formatted message (and drops the arguments it came from)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "@" in message and "://" in message:
            record.msg, record.args = redact(message), None
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Redact every record of the daemon's logger (idempotent)."""
    logger = logger or logging.getLogger("edgeport.daemon")
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
