"""Configuration: one pydantic-settings class read from ``RUNNER_*`` variables and ``.env``.

Every value is checked when it is read, so a bad one stops any command (worker included)
with one line naming the variable, before anything connects. Times have floors below
which runner cannot keep its promises:

- ``RUNNER_LEASE_SECONDS`` >= 1: the heartbeat renews every third of the lease, so a
  shorter lease expires on one slow round trip and a live attempt is taken for dead
  (and, after a few such deaths, its run suspended as a crash loop).
- ``RUNNER_SWEEP_SECONDS`` >= 0.1: below that the sweeper only spins.
- ``RUNNER_SHUTDOWN_GRACE`` > 0, and it may be longer than the lease: the heartbeat
  keeps renewing the lease through a handoff, so no ordering between them is required.
- No time may be infinite or NaN; ``RUNNER_REDIS_URL``'s database is a number; the
  queue and the model are never empty.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from runner import budgets, prices
from runner.errors import BadInput

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
QUEUE_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
PREFIX_PATTERN = r"^[A-Za-z0-9_.-]{1,32}$"
URL_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")
TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "runner"


class Settings(BaseSettings):
    """Everything runner can be told; each field is ``RUNNER_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="RUNNER_", env_file=".env", extra="ignore")

    redis_url: str | None = Field(
        default=None, description="Redis URL; unset means the embedded Valkey server"
    )
    prefix: str = Field(default="runner", pattern=PREFIX_PATTERN)
    queue: str = Field(default="default", pattern=QUEUE_PATTERN)
    model: str = Field(default="scripted", min_length=1)
    max_steps: int = Field(default=50, ge=1, le=100_000)
    # issue 13: the model's context window in tokens (unset: the provider's table, else
    # 32k); runner.context has the same bounds.
    context_tokens: int | None = Field(default=None, ge=1024, le=10_000_000)
    max_prompt_bytes: int = Field(default=256 * 1024, ge=1)
    max_script_bytes: int = Field(default=1024 * 1024, ge=1)
    lease_seconds: float = Field(default=15.0, ge=1.0, allow_inf_nan=False)
    sweep_seconds: float = Field(default=5.0, ge=0.1, allow_inf_nan=False)
    # How often a running turn's heartbeat looks for a cancel (one small script call per
    # running turn each time); the lease is renewed at least every third of its length.
    cancel_poll_seconds: float = Field(default=1.0, ge=0.1, allow_inf_nan=False)
    shutdown_grace: float = Field(default=20.0, gt=0, allow_inf_nan=False)
    max_dirty_restarts: int = Field(default=3, ge=0)
    workspace_root: Path = Field(default_factory=lambda: _default_data_dir() / "workspaces")
    data_dir: Path = Field(default_factory=_default_data_dir)
    retention_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    # Sessions (issue 14): a session idle this long has expired; its next turn starts anew.
    session_idle_seconds: int = Field(default=2 * 24 * 3600, ge=1)
    tool_timeout: float = Field(default=120.0, gt=0, allow_inf_nan=False)
    tool_output_bytes: int = Field(default=16 * 1024, ge=256)
    reconnect_seconds: float = Field(default=300.0, gt=0, allow_inf_nan=False)
    tool_env: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="comma-separated names of variables tools get besides the allowlist "
        "(RUNNER_* and provider keys are never passed)",
    )
    # Tools (issue 13): user tools to load (package.module:object, comma-separated) and
    # the MCP servers file (the usual mcpServers JSON); both read by workers.
    tools: Annotated[tuple[str, ...], NoDecode] = Field(default=())
    mcp_config: Path | None = None
    # Workspaces (issue 11): where file contents go, how much one workspace may hold,
    # and gitignore-style patterns (comma-separated) of what is never carried.
    workspace_store: str = Field(
        default="redis",
        description="redis, or a directory/object-store URL (file:///mnt/shared/ws, s3://b/ws)",
    )
    workspace_max_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    # How often one sweeper in the fleet removes a directory/object store's blobs of
    # runs that expired (a Redis store's blobs expire with the run by themselves).
    workspace_sweep_seconds: float = Field(default=3600.0, gt=0, allow_inf_nan=False)
    workspace_ignore: Annotated[tuple[str, ...], NoDecode] = Field(default=())
    # issue 15 (runner serve): how often an idle SSE stream sends a heartbeat comment.
    http_heartbeat_seconds: float = Field(default=15.0, gt=0, allow_inf_nan=False)
    # issue 15: set, the CLI's run commands go through that `runner serve` instead of Redis.
    api_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    api_token: SecretStr | None = None
    # Operations (issue 16): the log format, and the port each worker serves /metrics on
    # (unset: no metrics served).
    log_format: Literal["text", "json"] = "text"
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # Providers. Unset, the SDK's own variables (OPENAI_API_KEY, OPENAI_BASE_URL) apply.
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    # Unset, the SDK's own ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL apply.
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    anthropic_max_tokens: int = Field(default=8192, ge=1)
    # Live output (issue 12): how often a worker writes buffered deltas, how many entries
    # a run's delta stream keeps, and how long it outlives its last write.
    delta_flush_ms: int = Field(default=100, ge=5, le=5000)
    delta_maxlen: int = Field(default=1000, ge=10)
    delta_ttl_seconds: int = Field(default=120, ge=1)
    tool_progress_seconds: float = Field(default=3.0, gt=0, allow_inf_nan=False)
    # Budgets and approvals (issues 13, 14): per-run limits a run parks at (0: none), the
    # price table merged over the built-ins, and the tools this worker asks approval for.
    max_tokens: int = Field(default=0, ge=0)
    max_cost: float = Field(default=0.0, ge=0, le=1_000_000, allow_inf_nan=False)
    max_time: float = Field(default=0.0, ge=0, le=budgets.MAX_SECONDS, allow_inf_nan=False)
    max_tool_calls: int = Field(default=0, ge=0)
    prices: Path | None = Field(default=None, description="JSON or TOML: model -> USD per 1M")
    approve_tools: Annotated[tuple[str, ...], NoDecode] = Field(default=())
    # Connections (issue 17): TLS files for rediss:// (the URL's ssl_* parameters win),
    # Sentinel as settings instead of a redis+sentinel:// URL, and how many replicas
    # must hold each commit before the turn acts on it (0: no WAIT).
    redis_ca: Path | None = Field(default=None, description="CA file for rediss://")
    redis_cert: Path | None = Field(default=None, description="client certificate (rediss://)")
    redis_key: Path | None = Field(default=None, description="client key (rediss://)")
    sentinels: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="comma-separated host:port of the sentinels"
    )
    sentinel_master: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    commit_replicas: int = Field(default=0, ge=0, le=16)
    commit_replicas_timeout_ms: int = Field(default=1000, ge=10, le=60_000)
    commit_aof: bool = Field(
        default=False, description="WAITAOF (Redis/Valkey 7.2+) instead of WAIT after a commit"
    )
    # Deployment (issue 17): running turns per `submit --key` across the fleet (0: no
    # limit), and the file a worker touches every loop for `runner worker --health`.
    key_concurrency: int = Field(default=0, ge=0, le=100_000)
    health_file: Path | None = None

    @field_validator("tool_env", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        return _comma_list(value, _check_env_names)

    @field_validator("tools", "workspace_ignore", mode="before")
    @classmethod
    def _items(cls, value: object) -> object:
        return _comma_list(value)

    @field_validator("max_time", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        try:
            return budgets.parse_duration(value) if isinstance(value, str) else value
        except BadInput as exc:
            raise ValueError(str(exc)) from None

    @field_validator("approve_tools", mode="before")
    @classmethod
    def _tools(cls, value: object) -> object:
        return _comma_list(value, budgets.check_tools)

    @field_validator("prices")
    @classmethod
    def _prices(cls, value: Path | None) -> Path | None:
        if value is not None:
            prices.load(value)  # a bad file stops every command here, in one line
        return value

    @field_validator("sentinels", mode="before")
    @classmethod
    def _sentinels(cls, value: object) -> object:
        return _comma_list(value, _check_sentinels)

    @field_validator("workspace_store")
    @classmethod
    def _check_store(cls, value: str) -> str:
        if value != "redis" and "://" not in value:
            raise ValueError("expected redis or a URL such as file:///mnt/shared/workspaces")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value:
            check_redis_url(value)
        return value


def _comma_list(value: object, check: Callable[[Sequence[Any]], object] | None = None) -> object:
    """A comma-separated variable as a tuple of its items (blanks dropped), then checked.

    ``check`` sees the items as a list or tuple (from the environment, ``.env`` or code)
    and returns what to keep; a BadInput it raises becomes the ValueError pydantic reports.
    """
    if isinstance(value, str):
        value = tuple(item.strip() for item in value.split(",") if item.strip())
    if check is None or not isinstance(value, list | tuple):
        return value
    try:
        return check(value)
    except BadInput as exc:
        raise ValueError(str(exc)) from None


def _check_env_names(names: Sequence[Any]) -> Sequence[Any]:
    bad = [str(n) for n in names if not _ENV_NAME.fullmatch(str(n))]
    if bad:
        raise ValueError(f"not a variable name: {bad[0][:40]!r}")
    return names


def _check_sentinels(items: Sequence[Any]) -> Sequence[Any]:
    from runner.sentinel import check_host_port

    for item in items:
        check_host_port(str(item))
    return items


def check_redis_url(url: str) -> None:
    """ValueError (never echoing the URL: it may hold a password) if it is not one."""
    from runner import sentinel

    if sentinel.is_sentinel(url):
        sentinel.parse(url)
        return
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ValueError(f"not a Redis URL ({exc})") from None
    if parts.scheme not in URL_SCHEMES:
        raise ValueError("not a Redis URL: it must start with redis://, rediss:// or unix://")
    query = parse_qs(parts.query)
    if parts.scheme != "rediss" and any(name in query for name in TLS_OPTIONS):
        raise ValueError("ssl_* parameters need a rediss:// URL")
    dbs = query.get("db", [])
    if parts.scheme != "unix" and parts.path.strip("/"):
        dbs.append(parts.path.strip("/"))
    for db in dbs:
        if not db.isascii() or not db.isdigit():
            raise ValueError("the database must be a number, as in redis://host:6379/0")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()


def load_settings() -> Settings:
    """:func:`get_settings`, with a bad value as BadInput naming its variable."""
    try:
        return get_settings()
    except ValidationError as exc:
        raise BadInput(f"bad configuration: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    """The first problem as ``RUNNER_NAME: what is wrong`` (the value itself is not echoed)."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    name = "RUNNER_" + "_".join(str(part) for part in first["loc"]).upper()
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{name}: {message}{more}"
