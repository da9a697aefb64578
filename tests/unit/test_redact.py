"""Redaction: configured secrets and key-shaped strings never reach a record or a log."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import logs
from runner.redact import MASK, redact
from runner.settings import get_settings


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Incorrect API key provided: sk-proj-abcDEF123456ghi. You can find your key",
            f"Incorrect API key provided: {MASK}. You can find your key",
        ),
        ("x-api-key: sk-ant-api03-AbCdEf012345_-xyz", f"x-api-key: {MASK}"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload", f"Authorization: Bearer {MASK}"),
        ("redis://:s3cretpw@host:6379/0", f"redis://:{MASK}@host:6379/0"),
        ("rediss://user:s3cretpw@host/1", f"rediss://user:{MASK}@host/1"),
        ("token=0123456789abcdef0123", f"token={MASK}"),
        ('{"password": "correct-horse-battery"}', f'{{"password": "{MASK}"}}'),
        ("api_key=ZXhhbXBsZWtleWV4YW1wbGU=", f"api_key={MASK}"),
        # Ordinary text stays as it is.
        ("the key to success; monkey: donkeys", "the key to success; monkey: donkeys"),
        ("token count 12, password reset", "token count 12, password reset"),
    ],
)
def test_key_shaped_strings_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_configured_secrets_are_masked_by_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_REDIS_URL", "redis://:pa%24%24word-42@db:6379/0")
    monkeypatch.setenv("OPENAI_API_KEY", "plainsecretvalue")  # not key-shaped at all
    monkeypatch.setenv("RUNNER_OPENAI_API_KEY", "anotherplainsecret")
    text = "saw pa$$word-42, pa%24%24word-42, plainsecretvalue and anotherplainsecret"
    assert redact(text) == f"saw {MASK}, {MASK}, {MASK} and {MASK}"


def test_every_log_line_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "plainsecretvalue")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.FieldsFormatter("%(message)s"))
    logger = logging.getLogger("runner.test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("model call failed: %s", "key plainsecretvalue", extra={"run": "r1"})
        try:
            raise RuntimeError("Incorrect API key provided: sk-abcdefgh12345678")
        except RuntimeError:
            logger.exception("with a traceback", extra={"error": "Bearer abcdefghijkl"})
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "plainsecretvalue" not in out
    assert "sk-abcdefgh12345678" not in out
    assert "abcdefghijkl" not in out
    assert out.splitlines()[0] == f"model call failed: key {MASK} run=r1"


def test_a_key_from_the_env_file_is_masked_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("RUNNER_OPENAI_API_KEY=only-in-the-env-file\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNNER_OPENAI_API_KEY", raising=False)
    assert redact("said only-in-the-env-file") == f"said {MASK}"
