"""Model providers behind one small interface (``base``), one module each, and a registry.

Importing this package imports no provider SDK; :func:`load_model` does, for the one a
run names.
"""

from workers.providers.base import (
    NULL_SINK,
    POLL_SECONDS,
    Interrupted,
    Model,
    Reply,
    Sink,
    ToolCall,
    ToolSpec,
    Usage,
)
from workers.providers.registry import load_model

__all__ = [
    "NULL_SINK",
    "POLL_SECONDS",
    "Interrupted",
    "Model",
    "Reply",
    "Sink",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "load_model",
]
