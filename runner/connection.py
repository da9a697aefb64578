"""Connections to Redis: the URL (configured or embedded) and clients that retry."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from runner.errors import BadInput, ServerUnavailable
from runner.settings import Settings

RETRYABLE = (redis.ConnectionError, redis.TimeoutError)
# Longer than any blocking read runner issues (follow's XREAD blocks 5 s); redis-py 8's
# default of 5 s would time those reads out while the server is fine.
SOCKET_TIMEOUT = 15.0


def redis_url(settings: Settings) -> str:
    """The configured URL, or the embedded server's (started if need be)."""
    if settings.redis_url:
        return settings.redis_url
    from runner.embedded import ensure_server

    return ensure_server(settings.data_dir)


def connect(settings: Settings, *, decode: bool = True, url: str | None = None) -> redis.Redis:
    """A client for the configured server; ServerUnavailable if it does not answer.

    ``decode=False`` gives the bytes client RQ needs (it stores pickles).
    """
    url = url or redis_url(settings)
    try:
        client = redis.Redis.from_url(
            url,
            decode_responses=decode,
            socket_connect_timeout=5,
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
    try:
        client.ping()
    except RETRYABLE as exc:
        raise ServerUnavailable(f"cannot reach Redis at {_safe(url)}: {exc}") from exc
    return client


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url:
        scheme, rest = url.split("://", 1) if "://" in url else ("", url)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
