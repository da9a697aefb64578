"""Sentinel URLs: ``redis+sentinel://[[user]:password@]host:port[,host:port]/MASTER[/db]``.

A Sentinel URL names the sentinels to ask and the master's name; the client it gives is
redis-py's ``Sentinel(...).master_for(MASTER)``, which asks the sentinels where the
primary is on every new connection and drops connections to a primary that has been
demoted (its READONLY reply becomes a ConnectionError), so runner's outage retry
(guarantee 10) carries a turn across a failover. ``rediss+sentinel://`` speaks TLS to
the sentinels and the primary alike.

Query parameters: ``sentinel_password`` (and ``sentinel_username``) for the sentinels
when they have a password of their own, and redis-py's ``ssl_*`` options. The URL's own
user and password are the primary's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote

SCHEMES = ("redis+sentinel", "rediss+sentinel")
_SENTINEL_AUTH = ("sentinel_username", "sentinel_password")
# Options a URL may carry, all handed to redis-py as strings (it takes them so).
_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")


@dataclass(frozen=True)
class SentinelUrl:
    """A parsed Sentinel URL (the password is never part of its repr)."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    tls: bool = False
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    options: dict[str, Any] = field(default_factory=dict)


def is_sentinel(url: str) -> bool:
    """Whether ``url`` is a Sentinel URL."""
    return url.split("://", 1)[0] in SCHEMES


def build(sentinels: tuple[str, ...], master: str, tls: bool = False) -> str:
    """The URL for RUNNER_SENTINELS (``host:port`` items) and RUNNER_SENTINEL_MASTER
    (``rediss+sentinel://`` with ``tls``: the settings name TLS files)."""
    scheme = SCHEMES[1] if tls else SCHEMES[0]
    return f"{scheme}://{','.join(sentinels)}/{quote(master, safe='')}"


def parse(url: str) -> SentinelUrl:
    """The parts of a Sentinel URL; ValueError (never echoing the URL) if it is not one."""
    scheme, _, rest = url.partition("://")
    if scheme not in SCHEMES:
        raise ValueError("not a Sentinel URL: it must start with redis+sentinel://")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    names = [p for p in path.split("/") if p]
    if not names or len(names) > 2:
        raise ValueError("a Sentinel URL names its master: redis+sentinel://host:port/MASTER[/db]")
    if len(names) == 2 and not (names[1].isascii() and names[1].isdigit()):
        raise ValueError("the database must be a number, as in redis+sentinel://h:26379/m/0")
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    unknown = sorted(set(params) - set(_OPTIONS) - set(_SENTINEL_AUTH))
    if unknown:
        raise ValueError(f"unknown Sentinel URL parameter {unknown[0][:40]!r}")
    return SentinelUrl(
        sentinels=tuple(check_host_port(h) for h in hosts.split(",")),
        master=unquote(names[0]),
        db=int(names[1]) if len(names) == 2 else 0,
        tls=scheme == "rediss+sentinel",
        username=unquote(user) or None,
        password=unquote(password) or None,
        sentinel_username=params.get("sentinel_username"),
        sentinel_password=params.get("sentinel_password"),
        options={k: v for k, v in params.items() if k in _OPTIONS},
    )


def check_host_port(item: str) -> tuple[str, int]:
    """``(host, port)`` from ``host:port``; ValueError if it is not that."""
    host, _, port = item.strip().rpartition(":")
    if not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("each sentinel is host:port, as in redis+sentinel://h1:26379,h2:26379/m")
    return host.strip("[]"), int(port)


def master_client(url: str, **options: Any) -> Any:
    """A client for the current primary of the URL's master (redis-py's ``master_for``).

    ``options`` are the client's (timeouts, retry, decoding); the sentinels get the same
    timeouts and TLS, and their own credentials when the URL has them.
    """
    from redis.sentinel import Sentinel

    parts = parse(url)
    tls: dict[str, Any] = {"ssl": True, **parts.options} if parts.tls else {}
    timeouts = {k: v for k, v in options.items() if k.startswith("socket_")}
    sentinel_auth = {
        "username": parts.sentinel_username,
        "password": parts.sentinel_password,
    }
    manager = Sentinel(  # type: ignore[no-untyped-call]
        list(parts.sentinels),
        sentinel_kwargs={**timeouts, **tls, **{k: v for k, v in sentinel_auth.items() if v}},
    )
    return manager.master_for(  # type: ignore[no-untyped-call]
        parts.master,
        db=parts.db,
        username=parts.username,
        password=parts.password,
        **tls,
        **options,
    )
