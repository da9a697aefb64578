"""Prometheus metrics of a worker, served on ``RUNNER_METRICS_PORT`` (off by default).

A worker forks a work horse per turn, and most counts happen in the horse. So metrics
use prometheus-client's multiprocess mode: :func:`serve` (in the worker, before any
fork) gives the worker its own ``PROMETHEUS_MULTIPROC_DIR``; every process forked from
it writes its counts there, and the worker's ``/metrics`` sums them, so a count made by
a horse that has since exited is still served.

The recording functions below do nothing (and import nothing) unless metrics are on,
so a worker without the ``metrics`` extra runs as before. Labels come from a small fixed
set (status, queue, model, kind), never a run id.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from runner.errors import RunnerError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
INSTALL_HINT = "RUNNER_METRICS_PORT needs prometheus-client: pip install 'runner[metrics]'"
# Step, commit and model call latencies: a commit is milliseconds, a model call seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_labels: dict[str, str] = {"queue": "", "model": ""}  # of the turn this process runs
_depths: list[Callable[[], dict[str, int]]] = []  # read at scrape time by the worker


def enabled() -> bool:
    """Whether this process (or the worker it was forked from) serves metrics."""
    return bool(os.environ.get(MULTIPROC_ENV))


def serve(port: int) -> str:
    """Start serving ``/metrics`` on ``port`` for this process and its forks; returns the dir.

    Call it before anything imports prometheus_client: multiprocess mode is chosen when
    the library is first imported.
    """
    directory = tempfile.mkdtemp(prefix="runner-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    try:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector
    except ImportError as exc:
        stop_serving(directory)
        raise RunnerError(INSTALL_HINT) from exc
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(_QueueDepth())
    try:
        start_http_server(port, registry=registry)
    except OSError as exc:
        stop_serving(directory)
        raise RunnerError(f"cannot serve metrics on port {port}: {exc}") from exc
    return directory


def stop_serving(directory: str) -> None:
    """Forget this worker's counts (its directory) as it exits."""
    os.environ.pop(MULTIPROC_ENV, None)
    shutil.rmtree(directory, ignore_errors=True)


def watch_queues(depths: Callable[[], dict[str, int]]) -> None:
    """Serve ``runner_queue_depth`` from ``depths()`` (queue -> runs waiting) at each scrape."""
    _depths[:] = [depths]


class _QueueDepth:
    """A gauge read from the server when scraped: no process has to keep it up to date."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        gauge = GaugeMetricFamily("runner_queue_depth", "Runs waiting in a queue", labels=["queue"])
        for depths in _depths:
            try:
                for queue, n in depths().items():
                    gauge.add_metric([queue], n)
            except Exception:  # a scrape during an outage still serves the counters
                logging.getLogger("runner.metrics").warning("queue depth unavailable")
        yield gauge


def bind(queue: str | None = None, model: str | None = None) -> None:
    """Label what this process counts next with the queue and model of its turn."""
    if queue is not None:
        _labels["queue"] = queue
    if model is not None:
        _labels["model"] = model


@cache
def _m() -> dict[str, Any]:
    from prometheus_client import Counter, Histogram

    return {
        "runs": Counter(
            "runner_runs_total",
            "Attempts ended, by the status they left the run in",
            ["status", "queue"],
        ),
        "steps": Counter("runner_steps_committed_total", "Transcript steps committed", ["queue"]),
        "commit": Histogram("runner_commit_seconds", "Time of one fenced commit", buckets=BUCKETS),
        "model": Histogram(
            "runner_model_call_seconds", "Time of one model call", ["model"], buckets=BUCKETS
        ),
        "tokens": Counter("runner_tokens_total", "Model tokens", ["model", "kind"]),
        "cost": Counter("runner_cost_usd_total", "Model cost reported by providers", ["model"]),
        "handoffs": Counter("runner_handoffs_total", "Turns handed back to their queue", ["queue"]),
        "expiries": Counter("runner_lease_expiries_total", "Dead leases found by sweeps"),
        "fenced": Counter("runner_fenced_writes_total", "Writes refused for a stale epoch"),
        "dirty": Counter("runner_dirty_restarts_total", "Runs requeued after their attempt died"),
    }


def run_ended(status: str, queue: str | None = None) -> None:
    if enabled():
        _m()["runs"].labels(status=status, queue=queue or _labels["queue"]).inc()


def committed(steps: int, seconds: float) -> None:
    if enabled():
        _m()["commit"].observe(seconds)
        if steps:
            _m()["steps"].labels(queue=_labels["queue"]).inc(steps)


def model_called(
    seconds: float, input_tokens: int = 0, output_tokens: int = 0, cost: float = 0
) -> None:
    if enabled():
        model = _labels["model"]
        _m()["model"].labels(model=model).observe(seconds)
        if input_tokens:
            _m()["tokens"].labels(model=model, kind="input").inc(input_tokens)
        if output_tokens:
            _m()["tokens"].labels(model=model, kind="output").inc(output_tokens)
        if cost:
            _m()["cost"].labels(model=model).inc(cost)


def handoff() -> None:
    if enabled():
        _m()["handoffs"].labels(queue=_labels["queue"]).inc()


def lease_expired(n: int = 1) -> None:
    if enabled() and n:
        _m()["expiries"].inc(n)


def fenced() -> None:
    if enabled():
        _m()["fenced"].inc()


def dirty_restart(n: int = 1) -> None:
    if enabled() and n:
        _m()["dirty"].inc(n)
