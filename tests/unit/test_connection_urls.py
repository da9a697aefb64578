"""Sentinel URLs, TLS files, and WAIT's shortfall as an outage (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from runner import outage, sentinel
from runner.connection import redis_url, safe_url, with_tls_files
from runner.errors import BadInput
from runner.replication import TooFewReplicas
from runner.settings import Settings


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_sentinel_url_parts() -> None:
    url = "rediss+sentinel://app:p%40ss@h1:26379,[::1]:26380/main/3?sentinel_password=sp"
    parts = sentinel.parse(url)
    assert parts.sentinels == (("h1", 26379), ("::1", 26380))
    assert (parts.master, parts.db, parts.tls) == ("main", 3, True)
    assert (parts.username, parts.password, parts.sentinel_password) == ("app", "p@ss", "sp")
    assert "p@ss" not in repr(parts) and "sp" not in repr(parts.sentinels)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://h1:26379", "names its master"),
        ("redis+sentinel://h1:26379/m/x", "database must be a number"),
        ("redis+sentinel://h1:notaport/m", "host:port"),
        ("redis+sentinel://h1/m", "host:port"),
        ("redis+sentinel://h1:26379/m?colour=red", "unknown Sentinel URL parameter"),
    ],
)
def test_bad_sentinel_urls_are_refused_without_echoing(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        sentinel.parse(url)
    with pytest.raises(ValidationError):
        settings(redis_url=url)


def test_sentinels_setting_builds_the_url() -> None:
    s = settings(sentinels="h1:26379, h2:26379", sentinel_master="main")
    assert redis_url(s) == "redis+sentinel://h1:26379,h2:26379/main"
    # TLS files in the settings: TLS to the sentinels and the primary (not refused).
    tls = settings(sentinels="h1:26379", sentinel_master="main", redis_ca=Path("/ca.crt"))
    assert redis_url(tls) == "rediss+sentinel://h1:26379/main?ssl_ca_certs=%2Fca.crt"
    with pytest.raises(BadInput, match="RUNNER_SENTINEL_MASTER"):
        redis_url(settings(sentinels="h1:26379"))
    with pytest.raises(ValidationError):
        settings(sentinels="h1")


def test_tls_files_become_parameters_of_a_tls_url(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    s = settings(redis_ca=ca, redis_cert=tmp_path / "c.crt")
    url = with_tls_files("rediss://h:6380/0?ssl_certfile=/own.crt", s)
    assert f"ssl_ca_certs={str(ca).replace('/', '%2F')}" in url
    assert url.count("ssl_certfile") == 1  # the URL's own parameter wins
    with pytest.raises(BadInput, match="not rediss://"):
        with_tls_files("redis://h:6379/0", s)
    assert with_tls_files("redis://h:6379/0", settings()) == "redis://h:6379/0"


def test_tls_parameters_need_a_tls_url() -> None:
    with pytest.raises(ValidationError, match="rediss://"):
        settings(redis_url="redis://h:6379/0?ssl_ca_certs=/ca.crt")
    settings(redis_url="rediss://h:6379/0?ssl_ca_certs=/ca.crt")


def test_passwords_never_shown() -> None:
    url = "redis+sentinel://:pw@h1:26379/m?sentinel_password=sentinel-secret"
    shown = safe_url(url)
    assert "pw" not in shown.split("@")[0] and "sentinel-secret" not in shown


def test_too_few_replicas_is_an_outage() -> None:
    exc = TooFewReplicas("NOREPLICAS commit reached 0 of 1 replicas within 1000 ms")
    assert outage.is_outage(exc)
    assert outage.describe(exc) == "server has too few replicas"


def test_sentinel_password_is_a_secret_to_redact() -> None:
    from runner.redact import _url_password

    found = _url_password("redis+sentinel://:pw-primary@h1:26379/m?sentinel_password=pw-sent")
    assert {"pw-primary", "pw-sent"} <= set(found)


def test_an_unreachable_sentinel_is_one_short_line() -> None:
    from runner.connection import check_answers
    from runner.errors import ServerUnavailable

    with pytest.raises(ServerUnavailable) as caught:
        check_answers("redis+sentinel://127.0.0.1:1/main")
    assert str(caught.value) == (
        "cannot reach Redis at redis+sentinel://127.0.0.1:1/main: No master found for 'main'"
    )
