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


def start(name: str, **attributes: str | int | float) -> Any:
    """Start a span without entering it (None when OpenTelemetry is absent).

    The attempt's span starts before the claim, so its trace id can go into the
    ``running`` status event the claim writes; :func:`entered` then makes it current.
    """
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace.get_tracer(TRACER).start_span(name, attributes=attributes)


@contextlib.contextmanager
def entered(started: Any) -> Iterator[Any]:
    """Make a span from :func:`start` current around the block, and end it after."""
    if started is None:
        yield None
        return
    from opentelemetry import trace

    with trace.use_span(started, end_on_exit=True) as sp:
        yield sp


def end(started: Any) -> None:
    """End a span from :func:`start` that was never entered."""
    if started is not None:
        started.end()


def trace_id(started: Any) -> str:
    """The span's trace id in hex, as Jaeger and Tempo show it ("" if not recording)."""
    if started is None:
        return ""
    context = started.get_span_context()
    if not context.is_valid or not started.is_recording():
        return ""
    return format(context.trace_id, "032x")


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
