"""Which implementation serves which spec prefix (the prefixes of ``runner.providers``).

Each factory imports its provider's module only when a run asks for it: an SDK takes
a second or more to import, which every worker start would otherwise pay for, and a
worker without a provider's extra still serves every other provider.
"""

from __future__ import annotations

from collections.abc import Callable

from runner.errors import BadInput
from runner.providers import PROVIDERS, Provider, check_model_spec
from runner.script import Script
from runner.settings import Settings
from workers.providers.base import Model

Factory = Callable[[str, Script | None, Settings], Model]


def _scripted(name: str, script: Script | None, settings: Settings) -> Model:
    from workers.providers.scripted import ScriptedModel

    if script is None:
        raise BadInput("the scripted model needs a script (--script FILE)")
    return ScriptedModel(script)


def _openai(name: str, script: Script | None, settings: Settings) -> Model:
    from workers.providers.openai_chat import OpenAIModel

    return OpenAIModel.from_settings(name, settings)


def _anthropic(name: str, script: Script | None, settings: Settings) -> Model:
    from workers.providers.anthropic import AnthropicModel

    return AnthropicModel.from_settings(name, settings)


FACTORIES: dict[str, Factory] = {"scripted": _scripted, "openai": _openai, "anthropic": _anthropic}


def load_model(spec: str, script: Script | None, settings: Settings) -> Model:
    """The model a run's spec names; BadInput (the run fails) if this worker cannot serve it."""
    prefix, name = check_model_spec(spec)
    provider = PROVIDERS[prefix]
    try:
        return FACTORIES[prefix](name, script, settings)
    except ImportError as exc:
        if _is_sdk(exc, provider):
            raise BadInput(_missing(provider)) from exc
        raise


def _is_sdk(exc: ImportError, provider: Provider) -> bool:
    """Whether ``exc`` says the provider's SDK (or a module of it) is not installed."""
    name = exc.name or ""
    return provider.sdk is not None and name.split(".")[0] == provider.sdk


def _missing(provider: Provider) -> str:
    return (
        f"this worker cannot run {provider.prefix} models: the {provider.sdk} SDK is not "
        f"installed; {provider.install}"
    )
