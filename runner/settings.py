"""Configuration: one pydantic-settings class read from ``RUNNER_*`` variables and ``.env``."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "runner"


class Settings(BaseSettings):
    """Everything runner can be told; each field is ``RUNNER_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="RUNNER_", env_file=".env", extra="ignore")

    redis_url: str | None = Field(
        default=None, description="Redis URL; unset means the embedded Valkey server"
    )
    prefix: str = Field(default="runner", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    queue: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    model: str = "scripted"
    max_steps: int = Field(default=50, ge=1, le=100_000)
    max_prompt_bytes: int = Field(default=256 * 1024, ge=1)
    max_script_bytes: int = Field(default=1024 * 1024, ge=1)
    lease_seconds: float = Field(default=15.0, gt=0)
    sweep_seconds: float = Field(default=5.0, gt=0)
    shutdown_grace: float = Field(default=20.0, gt=0)
    max_dirty_restarts: int = Field(default=3, ge=0)
    workspace_root: Path = Field(default_factory=lambda: _default_data_dir() / "workspaces")
    data_dir: Path = Field(default_factory=_default_data_dir)
    retention_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    tool_timeout: float = Field(default=120.0, gt=0)
    tool_output_bytes: int = Field(default=16 * 1024, ge=256)
    reconnect_seconds: float = Field(default=300.0, gt=0)
    tool_env: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="comma-separated names of variables tools get besides the allowlist "
        "(RUNNER_* and provider keys are never passed)",
    )
    # Providers. Unset, the SDK's own variables (OPENAI_API_KEY, OPENAI_BASE_URL) apply.
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None

    @field_validator("tool_env", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(name.strip() for name in value.split(",") if name.strip())
        if isinstance(value, list | tuple):
            bad = [str(n) for n in value if not _ENV_NAME.fullmatch(str(n))]
            if bad:
                raise ValueError(f"not a variable name: {bad[0][:40]!r}")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
