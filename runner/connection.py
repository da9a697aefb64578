"""Connections to Redis: the URL (configured or embedded), clients that retry, and the one
translation of Redis and RQ errors into runner's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry
from rq import exceptions as rq_errors

from runner.errors import BadInput, RunnerError, ServerUnavailable
from runner.settings import Settings

RETRYABLE = (redis.ConnectionError, redis.TimeoutError)
# Longer than any blocking read runner issues (follow's XREAD blocks 5 s); redis-py 8's
# default of 5 s would time those reads out while the server is fine.
SOCKET_TIMEOUT = 15.0
# How long a new connection may take to answer its first command. A server that accepts
# connections and never answers fails here, in seconds, instead of once per retry of
# every command at SOCKET_TIMEOUT.
PROBE_SECONDS = 5.0
RQ_ERRORS = (
    rq_errors.NoSuchJobError,
    rq_errors.InvalidJobOperation,
    rq_errors.InvalidJobOperationError,
    rq_errors.DeserializationError,
    rq_errors.DuplicateJobError,
)


def redis_url(settings: Settings) -> str:
    """The configured URL, or the embedded server's (started if need be)."""
    if settings.redis_url:
        return settings.redis_url
    from runner.embedded import ensure_server

    return ensure_server(settings.data_dir)


def connect(
    settings: Settings, *, decode: bool = True, url: str | None = None, probe: bool = True
) -> redis.Redis:
    """A client for the configured server; ServerUnavailable if it does not answer.

    ``decode=False`` gives the bytes client RQ needs (it stores pickles). ``probe=False``
    skips the check that the server answers (the caller has just made it).
    """
    url = url or redis_url(settings)
    if probe:
        check_answers(url)
    try:
        return redis.Redis.from_url(
            url,
            decode_responses=decode,
            socket_connect_timeout=PROBE_SECONDS,
            socket_timeout=SOCKET_TIMEOUT,
            socket_keepalive=True,
            health_check_interval=30,
            # A dropped connection is retried inside redis-py a few times; anything
            # longer is the caller's tenacity policy.
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )
    except ValueError as exc:
        raise BadInput(f"RUNNER_REDIS_URL is not a Redis URL: {exc}") from exc


def check_answers(url: str) -> None:
    """PING the server once, without retries, within PROBE_SECONDS; ServerUnavailable if not."""
    try:
        probe = redis.Redis.from_url(
            url,
            socket_connect_timeout=PROBE_SECONDS,
            socket_timeout=PROBE_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as exc:
        raise BadInput(f"RUNNER_REDIS_URL is not a Redis URL: {exc}") from exc
    try:
        probe.ping()
    except redis.TimeoutError as exc:
        raise ServerUnavailable(
            f"cannot reach Redis at {safe_url(url)}: no answer within {PROBE_SECONDS:g} s"
        ) from exc
    except redis.ConnectionError as exc:
        raise ServerUnavailable(f"cannot reach Redis at {safe_url(url)}: {exc}") from exc
    except redis.RedisError as exc:  # e.g. AUTH refused
        raise ServerUnavailable(f"Redis at {safe_url(url)} refused us: {exc}") from exc
    finally:
        probe.close()


def translate(exc: BaseException) -> RunnerError:
    """The RunnerError that stands for a Redis or RQ error (itself if it is one already)."""
    if isinstance(exc, RunnerError):
        return exc
    if isinstance(exc, RETRYABLE):
        return ServerUnavailable(f"lost the Redis connection: {exc}")
    if isinstance(exc, RQ_ERRORS):
        return RunnerError(f"RQ error: {type(exc).__name__}: {exc}")
    return RunnerError(f"Redis error: {exc}")


@contextmanager
def server_errors() -> Iterator[None]:
    """Raise Redis and RQ errors from the block as runner's own (``raise ... from exc``)."""
    try:
        yield
    except (redis.RedisError, *RQ_ERRORS) as exc:
        raise translate(exc) from exc


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url:
        scheme, rest = url.split("://", 1) if "://" in url else ("", url)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
