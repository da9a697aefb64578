"""Connections to Redis: the URL (configured or embedded), clients that retry, and the one
translation of Redis and RQ errors into runner's own.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from runner import sentinel
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
_RQ_ERROR_NAMES = (
    "NoSuchJobError",
    "InvalidJobOperation",
    "InvalidJobOperationError",
    "DeserializationError",
    "DuplicateJobError",
)


def rq_errors() -> tuple[type[Exception], ...]:
    """The RQ errors runner translates; none while RQ is not loaded.

    Importing rq costs a reader about 100 ms (it loads jobs, queues and workers), and a
    process that never imported it cannot have met one of its errors: ``follow`` and
    ``status`` leave it out (issue 12, reattach as fast as the data).
    """
    module = sys.modules.get("rq.exceptions")
    if module is None:
        return ()
    return tuple(getattr(module, name) for name in _RQ_ERROR_NAMES)


def redis_url(settings: Settings) -> str:
    """The configured URL (RUNNER_REDIS_URL, or one built from RUNNER_SENTINELS), or the
    embedded server's (started if need be); with RUNNER_REDIS_CA/CERT/KEY as parameters.
    """
    if settings.redis_url:
        url = settings.redis_url
    elif settings.sentinels:
        if not settings.sentinel_master:
            raise BadInput("RUNNER_SENTINELS is set: RUNNER_SENTINEL_MASTER must name the master")
        # TLS files in the settings mean TLS to the sentinels and the primary alike.
        files = (settings.redis_ca, settings.redis_cert, settings.redis_key)
        tls = any(f is not None for f in files)
        url = sentinel.build(settings.sentinels, settings.sentinel_master, tls=tls)
    else:
        from runner.embedded import ensure_server

        url = ensure_server(settings.data_dir)
    return with_tls_files(url, settings)


def with_tls_files(url: str, settings: Settings) -> str:
    """``url`` with the TLS files of the settings as redis-py's ``ssl_*`` parameters.

    The URL's own parameters win. The files need a TLS URL: a plain one is refused
    rather than silently connecting without TLS.
    """
    files = {
        "ssl_ca_certs": settings.redis_ca,
        "ssl_certfile": settings.redis_cert,
        "ssl_keyfile": settings.redis_key,
    }
    given = {name: str(path) for name, path in files.items() if path is not None}
    if not given:
        return url
    scheme = url.split("://", 1)[0]
    if scheme not in ("rediss", "rediss+sentinel"):
        raise BadInput(
            "RUNNER_REDIS_CA/CERT/KEY are set but the Redis URL is not rediss:// "
            "(or rediss+sentinel://)"
        )
    query = parse_qs(urlsplit(url).query)
    extra = {name: value for name, value in given.items() if name not in query}
    sep = "&" if "?" in url else "?"
    return url + sep + urlencode(extra) if extra else url


def _client(url: str, **options: Any) -> redis.Redis:
    """A client for ``url``: a Sentinel URL gives the current primary's."""
    if sentinel.is_sentinel(url):
        client: redis.Redis = sentinel.master_client(url, **options)
        return client
    return redis.Redis.from_url(url, **options)


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
        return _client(
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
        probe = _client(
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
        raise ServerUnavailable(f"cannot reach Redis at {safe_url(url)}: {short(exc)}") from exc
    except redis.RedisError as exc:  # e.g. AUTH refused
        raise ServerUnavailable(f"Redis at {safe_url(url)} refused us: {exc}") from exc
    finally:
        probe.close()


def translate(exc: BaseException) -> RunnerError:
    """The RunnerError that stands for a Redis or RQ error (itself if it is one already)."""
    if isinstance(exc, RunnerError):
        return exc
    if isinstance(exc, RETRYABLE):
        return ServerUnavailable(f"lost the Redis connection: {short(exc)}")
    if isinstance(exc, rq_errors()):
        return RunnerError(f"RQ error: {type(exc).__name__}: {exc}")
    return RunnerError(f"Redis error: {exc}")


@contextmanager
def server_errors() -> Iterator[None]:
    """Raise Redis and RQ errors from the block as runner's own (``raise ... from exc``)."""
    try:
        yield
    except Exception as exc:
        if not is_server_error(exc):
            raise
        raise translate(exc) from exc


def is_server_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a Redis or RQ error (what :func:`translate` makes runner's own)."""
    return isinstance(exc, (redis.RedisError, rq_errors()))


def short(exc: BaseException) -> str:
    """The error's message without the client reprs redis-py's Sentinel errors append."""
    return str(exc).split(" : <", 1)[0]


def safe_url(url: str) -> str:
    """The URL without its passwords, for messages."""
    if "sentinel_password=" in url:
        url = re.sub(r"sentinel_password=[^&]*", "sentinel_password=***", url)
    if "@" in url:
        scheme, rest = url.split("://", 1) if "://" in url else ("", url)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
