"""The model providers runner knows: spec prefix, the pip extra with their SDK, their variables.

This table is what ``--model`` is checked against (at submit time, on any host) and what
the CLI and ``doctor`` describe; the implementations live in ``workers.providers``, keyed
by the same prefixes. Adding a provider is one :class:`Provider` entry here, one module
and one registry entry there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runner.errors import BadInput

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


@dataclass(frozen=True)
class Provider:
    """One provider: how specs name it and what a worker needs to run it.

    ``extra`` is the pip extra that installs ``sdk`` (None: nothing to install);
    ``key_vars`` are the environment variables holding its secrets (never given to a
    tool, always redacted); ``other_vars`` the rest it reads. Runner's own ``RUNNER_*``
    settings come first; the SDK's own variables are honoured when they are unset.
    """

    prefix: str
    takes_model: bool
    extra: str | None = None
    sdk: str | None = None
    key_vars: tuple[str, ...] = ()
    other_vars: tuple[str, ...] = ()

    @property
    def spec(self) -> str:
        """How a spec for it is written, for messages: ``openai:<model>``."""
        return f"{self.prefix}:<model>" if self.takes_model else self.prefix

    @property
    def install(self) -> str:
        """The exact line that installs its SDK ('' when it needs none)."""
        return f"pip install 'runner[{self.extra}]'" if self.extra else ""


PROVIDERS: dict[str, Provider] = {
    p.prefix: p
    for p in (
        Provider("scripted", takes_model=False),
        Provider(
            "openai",
            takes_model=True,
            extra="openai",
            sdk="openai",
            key_vars=("RUNNER_OPENAI_API_KEY", "OPENAI_API_KEY", "OPENAI_ADMIN_KEY"),
            other_vars=(
                "RUNNER_OPENAI_BASE_URL",
                "OPENAI_BASE_URL",
                "OPENAI_ORG_ID",
                "OPENAI_PROJECT_ID",
            ),
        ),
        Provider(
            "anthropic",
            takes_model=True,
            extra="anthropic",
            sdk="anthropic",
            key_vars=("RUNNER_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"),
            other_vars=("RUNNER_ANTHROPIC_BASE_URL", "ANTHROPIC_BASE_URL"),
        ),
    )
}
KNOWN_SPECS = tuple(p.spec for p in PROVIDERS.values())


def check_model_spec(spec: str) -> tuple[str, str]:
    """``(provider, model)`` for a well-formed spec; BadInput naming the known ones otherwise."""
    prefix, colon, name = spec.partition(":")
    provider = PROVIDERS.get(prefix)
    if provider is not None:
        if not provider.takes_model and not colon:
            return prefix, ""
        if provider.takes_model and _MODEL_NAME.fullmatch(name):
            return prefix, name
    raise BadInput(f"unknown model {spec[:60]!r}; known: {', '.join(KNOWN_SPECS)}")


def provider_vars() -> frozenset[str]:
    """Every environment variable any provider reads: none of them reaches a tool."""
    return frozenset(v for p in PROVIDERS.values() for v in (*p.key_vars, *p.other_vars))


def key_vars() -> tuple[str, ...]:
    """The environment variables that hold provider secrets (to redact)."""
    return tuple(v for p in PROVIDERS.values() for v in p.key_vars)
