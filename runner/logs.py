"""Structured logs: an event name plus run, epoch and worker as ``key=value`` fields.

Every line, tracebacks included, goes through :func:`runner.redact.redact` first, so no
configured secret (nor anything shaped like a key) reaches a log.
"""

from __future__ import annotations

import logging
import sys

from runner.redact import redact

FIELDS = ("run", "epoch", "worker", "status", "reason", "tool", "error")


class FieldsFormatter(logging.Formatter):
    """Appends the known ``extra`` fields of a record as ``key=value``; redacts the line."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = [f"{k}={getattr(record, k)}" for k in FIELDS if hasattr(record, k)]
        return redact(f"{line} {' '.join(extra)}" if extra else line)


def setup(level: str = "INFO") -> None:
    """Send runner's logs to stderr, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FieldsFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
