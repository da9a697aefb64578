"""API tokens: created and revoked by name, stored only as their sha256, checked per request.

A token is shown once, when it is created; Redis holds its hash, so a copy of the
database gives no way in. Tokens are never logged: only their names are.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from runner.checks import MAX_SHOWN
from runner.client import Client
from runner.connection import server_errors
from runner.errors import BadInput
from runner.keys import SESSION_PATTERN

TOKEN_PREFIX = "rt_"
MAX_TOKEN_CHARS = 200  # anything longer is not one of ours; refused before hashing


@dataclass(frozen=True)
class Grant:
    """Who a request is: the token's name and whether it may only read."""

    name: str
    read_only: bool


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not SESSION_PATTERN.fullmatch(name):
        shown = repr(name[:MAX_SHOWN])
        raise BadInput(f"not a token name: {shown} (expected 1-64 of A-Z a-z 0-9 _ . : -)")
    return name


class Tokens:
    """The token table of one server, reached through the client's connection pool."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.keys = client.keys

    @property
    def _redis(self) -> Any:
        return self.client.redis

    def create(self, name: str, read_only: bool = False) -> str:
        """A new token named ``name`` (BadInput if the name is taken); returns the token."""
        check_name(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        hashed = digest(token)
        grant = {"name": name, "read_only": read_only, "created_ms": int(time.time() * 1000)}
        with server_errors():
            if not self._redis.hsetnx(self.keys.token_names, name, hashed):
                raise BadInput(f"a token named {name} exists; revoke it first")
            self._redis.hset(self.keys.tokens, hashed, json.dumps(grant))
        return token

    def revoke(self, name: str) -> None:
        """Revoke the token named ``name`` (BadInput if there is none)."""
        check_name(name)
        with server_errors():
            hashed = self._redis.hget(self.keys.token_names, name)
            if hashed is None:
                raise BadInput(f"no token named {name}")
            pipe = self._redis.pipeline(transaction=True)
            pipe.hdel(self.keys.tokens, hashed)
            pipe.hdel(self.keys.token_names, name)
            pipe.execute()

    def names(self) -> list[str]:
        with server_errors():
            return sorted(self._redis.hkeys(self.keys.token_names))

    def check(self, token: str) -> Grant | None:
        """The grant of a token, or None if it is not a live one."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_CHARS:
            return None
        with server_errors():
            raw = self._redis.hget(self.keys.tokens, digest(token))
        if raw is None:
            return None
        data = json.loads(raw)
        return Grant(name=str(data["name"]), read_only=bool(data["read_only"]))
