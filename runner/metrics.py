"""Prometheus metrics of a worker or `runner serve`, on ``RUNNER_METRICS_PORT`` (off by default).

A worker forks a work horse per turn, and most counts happen in the horse. So metrics
use prometheus-client's multiprocess mode: :func:`serve` (in the worker, before any
fork) gives the worker its own ``PROMETHEUS_MULTIPROC_DIR``; every process forked from
it writes its counts there, and the worker's ``/metrics`` sums them, so a count made by
a horse that has since exited is still served.

The recording functions below do nothing (and import nothing) unless metrics are on,
so a worker without the ``metrics`` extra runs as before. Labels come from a small fixed
set (status, queue, model, kind, endpoint, code), never a run id.

Gauges of shared state (queue depth, runs by status, SSE followers) are read when
scraped (:func:`watch`), so no process has to keep them up to date.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from runner.errors import RunnerError
from runner.keys import Keys

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
INSTALL_HINT = "RUNNER_METRICS_PORT needs prometheus-client: pip install 'runner[metrics]'"
# Step, commit and model call latencies: a commit is milliseconds, a model call seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BYTE_BUCKETS = (0, 1024, 10_240, 102_400, 1_048_576, 10_485_760, 104_857_600, 1_073_741_824)
STATUS_TTL = 5.0  # seconds a count of runs by status is reused (it reads the whole index)
STATUS_PAGE = 1000
_labels: dict[str, str] = {"queue": "", "model": ""}  # of the turn this process runs
log = logging.getLogger("runner.metrics")


@dataclass(frozen=True)
class _Watched:
    help: str
    label: str
    read: Callable[[], Mapping[str, float]]


_watched: dict[str, _Watched] = {}  # gauge name -> how to read it at scrape time


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
    registry.register(_ReadAtScrape())
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


def watch(name: str, help: str, label: str, read: Callable[[], Mapping[str, float]]) -> None:
    """Serve gauge ``name`` from ``read()`` (label value -> value) at each scrape.

    With ``label`` empty the gauge has no label and ``read()`` gives ``{"": value}``.
    """
    _watched[name] = _Watched(help, label, read)


def watch_queues(depths: Callable[[], dict[str, int]]) -> None:
    """Serve ``runner_queue_depth`` from ``depths()`` (queue -> runs waiting) at each scrape."""
    watch("runner_queue_depth", "Runs waiting in a queue", "queue", depths)


def watch_runs(redis: Any, keys: Keys) -> None:
    """Serve ``runner_runs_by_status`` (suspended and waiting included) from the runs index."""
    cached: list[Any] = [0.0, {}]

    def read() -> dict[str, float]:
        if time.monotonic() - cached[0] > STATUS_TTL:
            cached[:] = [time.monotonic(), status_counts(redis, keys)]
        return dict(cached[1])

    watch("runner_runs_by_status", "Runs in the index by their status now", "status", read)


# One page of the runs index counted in the server: a thousand HGETs cost it about
# 0.7 ms, and this process gets back a handful of numbers instead of a thousand replies
# (ops/bench_status_gauge.py). Read-only; the record keys are built from the ids read.
_COUNT_PAGE = """
local ids = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])
local counts = {}
for _, id in ipairs(ids) do
  local status = redis.call('HGET', ARGV[3] .. id .. ARGV[4], 'status')
  if status then counts[status] = (counts[status] or 0) + 1 end
end
local out = {#ids}
for status, n in pairs(counts) do out[#out + 1] = status; out[#out + 1] = n end
return out
"""


def status_counts(redis: Any, keys: Keys) -> dict[str, float]:
    """Runs by status: each id in the runs index, its record's status counted in pages.

    ``redis`` is a decoding client (the store's). Ids whose record has expired are not
    counted.
    """
    from runner.events import Status

    sample = "r0000000000deadbeef"
    head, tail = keys.record(sample).split(sample)
    script = redis.register_script(_COUNT_PAGE)
    counts: dict[str, float] = {s.value: 0 for s in Status}
    start = 0
    while True:
        reply = script(keys=[keys.runs], args=[start, start + STATUS_PAGE - 1, head, tail])
        seen, pairs = int(reply[0]), reply[1:]
        for status, n in zip(pairs[::2], pairs[1::2], strict=True):
            if status in counts:
                counts[status] += int(n)
        if seen < STATUS_PAGE:
            return counts
        start += STATUS_PAGE


class _ReadAtScrape:
    """The watched gauges, read from their sources when scraped."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        for name, watched in list(_watched.items()):
            labels = [watched.label] if watched.label else []
            gauge = GaugeMetricFamily(name, watched.help, labels=labels)
            try:
                for key, n in watched.read().items():
                    gauge.add_metric([key] if labels else [], n)
            except Exception:  # a scrape during an outage still serves the counters
                log.warning("gauge unavailable", extra={"metric": name})
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
        "step": Histogram(
            "runner_step_seconds",
            "Time of one step: from the attempt's previous step (or its start) to this commit",
            ["queue"],
            buckets=BUCKETS,
        ),
        "model": Histogram(
            "runner_model_call_seconds", "Time of one model call", ["model"], buckets=BUCKETS
        ),
        "tokens": Counter("runner_tokens_total", "Model tokens", ["model", "kind"]),
        "cost": Counter("runner_cost_usd_total", "Model cost reported by providers", ["model"]),
        "handoffs": Counter("runner_handoffs_total", "Turns handed back to their queue", ["queue"]),
        "expiries": Counter("runner_lease_expiries_total", "Dead leases found by sweeps"),
        "fenced": Counter("runner_fenced_writes_total", "Writes refused for a stale epoch"),
        "dirty": Counter("runner_dirty_restarts_total", "Runs requeued after their attempt died"),
        "workspace": Histogram(
            "runner_workspace_checkpoint_bytes",
            "Bytes of new file contents stored by one workspace checkpoint",
            buckets=BYTE_BUCKETS,
        ),
        "requests": Counter(
            "runner_http_requests_total", "Requests runner serve answered", ["endpoint", "code"]
        ),
        "delivered": Counter("runner_sse_events_total", "Events sent to SSE followers", ["kind"]),
    }


def run_ended(status: str, queue: str | None = None) -> None:
    if enabled():
        _m()["runs"].labels(status=status, queue=queue or _labels["queue"]).inc()


def committed(steps: int, seconds: float, step_seconds: float | None = None) -> None:
    """A commit took ``seconds``; ``step_seconds``: since the attempt's previous step."""
    if enabled():
        _m()["commit"].observe(seconds)
        if steps:
            _m()["steps"].labels(queue=_labels["queue"]).inc(steps)
        if step_seconds is not None:
            _m()["step"].labels(queue=_labels["queue"]).observe(step_seconds)


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


def workspace_stored(size: int) -> None:
    if enabled():
        _m()["workspace"].observe(size)


def http_request(endpoint: str, code: int) -> None:
    if enabled():
        _m()["requests"].labels(endpoint=endpoint, code=str(code)).inc()


def sse_delivered(kind: str, n: int = 1) -> None:
    if enabled() and n:
        _m()["delivered"].labels(kind=kind).inc(n)
