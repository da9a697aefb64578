"""OpenTelemetry spans (extra ``tracing``): one per attempt, per model call, per tool call.

Spans go through the OpenTelemetry API, so they cost nothing until a tracer provider is
set: :func:`setup` sets one that exports over OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT``
is set and the exporter is installed (the SDK reads the rest of its ``OTEL_*``
variables itself); a test or an embedding program may set its own. Without the extra
installed, :func:`span` is a no-op.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

TRACER = "runner"


@contextlib.contextmanager
def span(name: str, **attributes: str | int | float) -> Iterator[Any]:
    """A span named ``name`` around the block (nothing when OpenTelemetry is absent)."""
    try:
        from opentelemetry import trace
    except ImportError:
        yield None
        return
    with trace.get_tracer(TRACER).start_as_current_span(name, attributes=attributes) as sp:
        yield sp


def setup() -> bool:
    """Export spans over OTLP if ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; True if so."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": "runner-worker"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


def flush() -> None:
    """Export what is buffered: a work horse ends with ``os._exit``, which would drop it."""
    try:
        from opentelemetry import trace
    except ImportError:
        return
    force = getattr(trace.get_tracer_provider(), "force_flush", None)
    if force is not None:
        force()
