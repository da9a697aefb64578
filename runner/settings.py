"""Configuration: one pydantic-settings class read from ``RUNNER_*`` variables and ``.env``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
