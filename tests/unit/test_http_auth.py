"""Issue 15 units: API tokens (fakeredis), the bind check, the fan-out's ordering."""

from __future__ import annotations

import fakeredis
import pytest

from runner.cli.serve import check_bind, is_loopback
from runner.client import Client
from runner.errors import BadInput
from runner.http.auth import Tokens, digest
from runner.http.fanout import position
from runner.settings import Settings


@pytest.fixture
def tokens() -> Tokens:
    client = Client(Settings(redis_url="redis://127.0.0.1:1/0"))
    client.__dict__["redis"] = fakeredis.FakeRedis(decode_responses=True)
    return Tokens(client)


def test_a_token_is_kept_only_as_its_hash(tokens: Tokens) -> None:
    token = tokens.create("ci")
    stored = tokens.client.redis.hgetall(tokens.keys.tokens)
    assert list(stored) == [digest(token)] and token not in str(stored)
    grant = tokens.check(token)
    assert grant is not None and (grant.name, grant.read_only) == ("ci", False)
    reader = tokens.create("dash", read_only=True)
    assert tokens.check(reader) == type(grant)("dash", True)
    assert tokens.names() == ["ci", "dash"]


def test_revoked_unknown_and_foreign_tokens_grant_nothing(tokens: Tokens) -> None:
    token = tokens.create("ci")
    with pytest.raises(BadInput, match="exists"):
        tokens.create("ci")
    tokens.revoke("ci")
    assert tokens.check(token) is None
    assert tokens.check("rt_" + "x" * 43) is None
    assert tokens.check("not-ours") is None and tokens.check("rt_" + "x" * 500) is None
    with pytest.raises(BadInput, match="no token named"):
        tokens.revoke("ci")
    with pytest.raises(BadInput, match="not a token name"):
        tokens.create("a b")


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.9.9.9"])
def test_loopback_binds_need_nothing(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, None, None, False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "example.org"])
def test_other_binds_need_tls_or_insecure(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(BadInput, match="without TLS"):
        check_bind(host, None, None, False)
    check_bind(host, "c.pem", "k.pem", False)
    check_bind(host, None, None, True)
    with pytest.raises(BadInput, match="together"):
        check_bind(host, "c.pem", None, False)


def test_stream_positions_order_numerically() -> None:
    assert position("10-0") > position("9-5") and position("5-10") > position("5-9")
    assert position("0-0") < position("1-0")
