"""Structured logs: an event name plus run, epoch and worker as ``key=value`` fields."""

from __future__ import annotations

import logging
import sys

FIELDS = ("run", "epoch", "worker", "status", "reason", "tool", "error")


class FieldsFormatter(logging.Formatter):
    """Appends the known ``extra`` fields of a record as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = [f"{k}={getattr(record, k)}" for k in FIELDS if hasattr(record, k)]
        return f"{line} {' '.join(extra)}" if extra else line


def setup(level: str = "INFO") -> None:
    """Send runner's logs to stderr, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FieldsFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
