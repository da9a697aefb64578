"""Structured logs: an event name plus run, epoch, worker and queue as fields.

Two formats (``RUNNER_LOG_FORMAT``): ``text``, one line with ``key=value`` fields, and
``json``, one JSON object per line for a log pipeline. The process running a turn binds
its run fields once (:func:`bind`), so every line it writes carries them, a library's
lines included. Every line, tracebacks included, goes through
:func:`runner.redact.redact` first, so no configured secret (nor anything shaped like a
key) reaches a log.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from runner.redact import redact

FIELDS = ("run", "epoch", "worker", "queue", "status", "reason", "tool", "error")
FORMATS = ("text", "json")
_bound: dict[str, Any] = {}  # the run fields of the turn this process runs


def bind(**fields: Any) -> None:
    """Put ``fields`` on every later line of this process (None removes one)."""
    for name, value in fields.items():
        if value is None:
            _bound.pop(name, None)
        else:
            _bound[name] = value


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    found = {k: getattr(record, k) for k in FIELDS if hasattr(record, k)}
    return {k: found.get(k, _bound.get(k)) for k in FIELDS if k in found or k in _bound}


class FieldsFormatter(logging.Formatter):
    """Appends the known fields of a record as ``key=value``; redacts the line."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = [f"{k}={v}" for k, v in _fields(record).items()]
        return redact(f"{line} {' '.join(extra)}" if extra else line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, the run fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": redact(record.getMessage()),
        }
        for name, value in _fields(record).items():
            # Redacted value by value: a secret with a quote in it is escaped in JSON.
            entry[name] = value if isinstance(value, int | float) else redact(str(value))
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def setup(level: str = "INFO", fmt: str = "text") -> None:
    """Send runner's logs to stderr, one line each, as ``text`` or ``json``."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(FieldsFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
