"""Take secrets out of text before it is stored, logged or shown (DESIGN guarantee 9).

Two nets: every configured secret by value (the Redis URL's password, provider keys from
runner's settings and from the SDKs' own variables), and anything shaped like a key
(``sk-...``, bearer tokens, URL passwords, long values after ``key=``/``token=``/
``password=``), so a secret runner was never told about is caught too.
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import SecretStr

from runner.providers import key_vars

MASK = "[redacted]"
# Shorter values are not replaced by value (they would mangle ordinary words); the
# shape patterns still apply to them.
MIN_SECRET = 6

_SHAPES = [
    # OpenAI / Anthropic style keys: sk-..., sk-proj-..., sk-ant-api03-...
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), MASK),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]{8,}"), r"\1" + MASK),
    # user:password@ in a URL (redis://, https://...)
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^\s:/@]*:)[^\s@/]+@"), r"\1" + MASK + "@"),
    # key=..., "api_key": "...", token: ..., password=...
    (
        re.compile(
            r"(?i)((?<![a-z0-9])(?:api[_-]?key|key|token|secret|password|passwd)[\"']?\s*[=:]\s*[\"']?)"
            r"[A-Za-z0-9+/_\-.~=]{8,}"
        ),
        r"\1" + MASK,
    ),
]


def _url_password(url: str | None) -> list[str]:
    if not url:
        return []
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    found = [password, unquote(password)] if password else []
    return found + parse_qs(parts.query).get("sentinel_password", [])  # runner.sentinel


def configured_secrets() -> list[str]:
    """Every secret this process was configured with, longest first."""
    found: list[str] = []
    found += _url_password(os.environ.get("RUNNER_REDIS_URL"))
    found += [os.environ[name] for name in key_vars() if os.environ.get(name)]
    try:
        from runner.settings import get_settings

        settings = get_settings()
    except Exception:  # bad settings are reported elsewhere; redaction must never fail
        settings = None
    if settings is not None:
        found += _url_password(settings.redis_url)
        # RUNNER_OPENAI_API_KEY is the setting openai_api_key (maybe from .env): by name.
        for name in key_vars():
            value = getattr(settings, name.removeprefix("RUNNER_").lower(), None)
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
    unique = {s for s in found if len(s) >= MIN_SECRET}
    return sorted(unique, key=len, reverse=True)


def redact_secrets(text: str) -> str:
    """``text`` with every configured secret masked, by value only.

    For tool output: a file the model reads may well hold ``password = "..."`` lines it
    needs to see, but never the worker's own secrets.
    """
    for secret in configured_secrets():
        text = text.replace(secret, MASK)
    return text


def redact(text: str) -> str:
    """``text`` with every configured secret and every key-shaped string masked."""
    text = redact_secrets(text)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text
