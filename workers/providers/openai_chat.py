"""The OpenAI provider: the official SDK, a call abandoned on a stop, transient errors retried."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx2
import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from runner.errors import ModelError
from runner.redact import redact
from runner.settings import Settings
from workers.providers.base import NULL_SINK, Interrupted, Reply, Sink, ToolCall, ToolSpec, Usage
from workers.providers.calls import parse_arguments, streamed_call
from workers.stop import Stop

# Failures worth another attempt: the request had no effect and may well work next time.
_TRANSIENT = (
    openai.APIConnectionError,  # includes APITimeoutError
    openai.RateLimitError,
    openai.InternalServerError,
    httpx2.TransportError,  # the connection dropped mid-stream: the call starts over
)
# Context windows (tokens) by model-name prefix, the longest prefix first; a model not
# listed (a compatible server's own) needs RUNNER_CONTEXT_TOKENS or gets the default.
CONTEXT_WINDOWS = (
    ("gpt-4.1", 1_047_576),
    ("gpt-4o", 128_000),
    ("gpt-4-turbo", 128_000),
    ("gpt-4-32k", 32_768),
    ("gpt-4", 8_192),
    ("gpt-3.5-turbo", 16_385),
    ("gpt-5", 400_000),
    ("o4-mini", 200_000),
    ("o3", 200_000),
    ("o1", 200_000),
)


def context_window(model: str) -> int | None:
    """The context window of an OpenAI model by name, if it is in the table."""
    for prefix, window in CONTEXT_WINDOWS:
        if model == prefix or model.startswith(prefix + "-"):
            return window
    return None


def _transient(exc: BaseException) -> bool:
    """Whether the request had no effect and may well work next time."""
    return isinstance(exc, _TRANSIENT)


def _why(exc: BaseException | None) -> str:
    """A retry's reason, as a follower's progress note says it."""
    if isinstance(exc, openai.RateLimitError):
        return "rate limited"
    if isinstance(exc, openai.APIStatusError):
        return f"server error ({exc.status_code})"
    if isinstance(exc, openai.APITimeoutError):
        return "model timed out"
    return "connection to the model lost"


def tool_param(specs: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """Neutral tool specs as the chat API's ``tools`` parameter."""
    return [
        {
            "type": "function",
            "function": {
                "name": spec.name,
                "description": spec.description,
                "parameters": spec.parameters,
            },
        }
        for spec in specs
    ]


def _error(exc: BaseException) -> ModelError:
    """A ModelError for the run's record and the log, with every secret taken out."""
    if isinstance(exc, openai.BadRequestError) and (
        exc.code == "context_length_exceeded" or "context length" in str(exc).lower()
    ):
        return ModelError(
            redact(f"openai: the conversation is longer than the model's context window: {exc}")
        )
    return ModelError(redact(f"openai: {exc}"))


def _wrap(exc: Exception) -> Exception:
    """What the caller sees of a failure in the call's thread: ours as they are, else redacted."""
    if isinstance(exc, ModelError | Interrupted):
        return exc
    return _error(exc)


def _assemble(stream: Any, sink: Sink, stop: Stop) -> Reply:
    """A Reply from a chat completion stream, each piece passed to ``sink`` as it comes."""
    text: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    usage = None
    finished = False
    for chunk in stream:
        if stop.requested.is_set():
            raise Interrupted
        if not isinstance(chunk, ChatCompletionChunk):
            continue
        if chunk.usage is not None:
            usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        for choice in chunk.choices[:1]:
            finished = finished or choice.finish_reason is not None
            delta = choice.delta
            if delta.content:
                text.append(delta.content)
                sink.text(delta.content)
            for part in delta.tool_calls or []:
                slot = calls.setdefault(part.index, {"id": "", "name": "", "args": ""})
                slot["id"] = part.id or slot["id"]
                if part.function is not None:
                    slot["name"] = part.function.name or slot["name"]
                    if part.function.arguments:
                        slot["args"] += part.function.arguments
                        sink.args(part.index, slot["name"], part.function.arguments)
    if not finished:
        # Cut off (a proxy or the server went away): transient, the call starts over.
        raise httpx2.RemoteProtocolError("the stream ended before the answer did")
    tool_calls = [
        ToolCall(slot["id"] or f"call_{i}", slot["name"], parse_arguments(slot["args"]))
        for i, slot in sorted(calls.items())
    ]
    return Reply("".join(text), tool_calls, usage)


def _to_reply(completion: ChatCompletion) -> Reply:
    """Our Reply from an OpenAI chat completion."""
    if not completion.choices:
        raise ModelError("openai: the response has no choices")
    message = completion.choices[0].message
    calls = [
        ToolCall(call.id, call.function.name, parse_arguments(call.function.arguments))
        for call in message.tool_calls or []
        if call.type == "function"
    ]
    usage = None
    if completion.usage is not None:
        usage = Usage(completion.usage.prompt_tokens, completion.usage.completion_tokens)
    return Reply(message.content or "", calls, usage)


class OpenAIModel:
    """A chat model on the OpenAI API (or a compatible server at ``base_url``).

    ``api_key`` and ``base_url`` left None, the SDK reads its own ``OPENAI_API_KEY`` and
    ``OPENAI_BASE_URL``. The client is made on first use, so naming the model needs no
    key. ``client`` lets tests inject a fake.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        client: Any = None,
        attempts: int = 4,
        backoff: float = 1.0,
        timeout: float = 300.0,
    ) -> None:
        self.model = model
        self.base_url = base_url or None
        self._api_key = api_key or None
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        # Any: the real client or a test double with the same chat.completions.create.
        self._client: Any = client

    @classmethod
    def from_settings(cls, model: str, settings: Settings) -> OpenAIModel:
        """The model with runner's ``RUNNER_OPENAI_*`` settings (else the SDK's variables)."""
        key = settings.openai_api_key
        return cls(
            model,
            settings.openai_base_url,
            api_key=key.get_secret_value() if key is not None else None,
        )

    def context_window(self, model: str) -> int | None:
        """The window of ``model`` (the compaction hook; see ``CONTEXT_WINDOWS``)."""
        return context_window(model)

    def _get_client(self) -> Any:
        if self._client is None:
            try:
                # Retries are ours (tenacity, stop-aware), so the SDK's own are off.
                self._client = openai.OpenAI(
                    api_key=self._api_key,
                    base_url=self.base_url,
                    max_retries=0,
                    timeout=self.timeout,
                )
            except openai.OpenAIError as exc:
                raise _error(exc) from exc
        return self._client

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: Sequence[ToolSpec],
        stop: Stop,
        *,
        step: int | None = None,
        sink: Sink = NULL_SINK,
    ) -> Reply:
        """Ask the API, abandoning the call (Interrupted) if a stop is requested.

        Transient errors are retried from the start: a retry tells followers why and how
        long it waits, and supersedes what the failed attempt streamed (``sink.reset``);
        a server's Retry-After is honoured.
        """
        if stop.requested.is_set():
            raise Interrupted
        client = self._get_client()
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            kwargs["tools"] = tool_param(tools)

        def attempt() -> Reply:
            result = client.chat.completions.create(**kwargs)
            if isinstance(result, ChatCompletion):  # a server (or a fake) that does not stream
                return _to_reply(result)
            return _assemble(result, sink, stop)

        return streamed_call(
            "openai-call",
            attempt,
            stop,
            sink,
            transient=_transient,
            why=_why,
            wrap=_wrap,
            attempts=self.attempts,
            backoff=self.backoff,
        )
