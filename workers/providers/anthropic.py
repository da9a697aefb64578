"""The Anthropic provider: the official SDK's Messages API, streamed, with prompt caching.

The transcript is OpenAI chat shape; this module maps it to Messages and back: system
messages become the ``system`` parameter, an assistant's tool calls ``tool_use``
blocks, tool messages ``tool_result`` blocks of a user turn (consecutive ones merged,
as the API wants roles to alternate). The stable prefix is cached: ``cache_control``
marks the last tool, the system prompt and the conversation's last message, so each
call reads what the previous one wrote. Retries and fail-fast follow ``openai_chat``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anthropic
import httpx2

from runner.errors import ModelError
from runner.redact import redact
from runner.settings import Settings
from workers.providers.base import NULL_SINK, Interrupted, Reply, Sink, ToolCall, ToolSpec, Usage
from workers.providers.calls import parse_arguments, streamed_call
from workers.stop import Stop

CACHE = {"type": "ephemeral"}
# Errors an API reports inside a stream that has begun (HTTP 200): worth another try.
_TRANSIENT_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error"})
DEFAULT_MAX_TOKENS = 8192
CLAUDE_WINDOW = 200_000  # tokens, every current Claude model's default context window


def _transient(exc: BaseException) -> bool:
    """Whether the request had no effect and may well work next time."""
    if isinstance(
        exc,
        anthropic.APIConnectionError  # includes APITimeoutError
        | anthropic.RateLimitError
        | anthropic.InternalServerError  # 5xx, 529 overloaded
        | httpx2.TransportError,  # the connection dropped mid-stream: the call starts over
    ):
        return True
    return isinstance(exc, anthropic.APIStatusError) and exc.type in _TRANSIENT_TYPES


def _why(exc: BaseException | None) -> str:
    """A retry's reason, as a follower's progress note says it."""
    if isinstance(exc, anthropic.RateLimitError):
        return "rate limited"
    if isinstance(exc, anthropic.APIStatusError):
        if exc.type == "overloaded_error":
            return "model overloaded"
        return f"server error ({exc.status_code})"
    if isinstance(exc, anthropic.APITimeoutError):
        return "model timed out"
    return "connection to the model lost"


def _error(exc: Exception) -> Exception:
    """A ModelError for the run's record and the log, with every secret taken out."""
    if isinstance(exc, ModelError | Interrupted):
        return exc
    text = str(exc)
    if isinstance(exc, anthropic.BadRequestError) and (
        "prompt is too long" in text.lower() or "context" in text.lower()
    ):
        return ModelError(
            redact(f"anthropic: the conversation is longer than the model's context window: {text}")
        )
    return ModelError(redact(f"anthropic: {text}"))


# -- the wire shape ----------------------------------------------------------------------


def tool_param(specs: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """Neutral tool specs as the Messages API's ``tools``, the last one cached."""
    tools = [
        {
            "name": spec.name,
            "description": spec.description,
            "input_schema": spec.parameters or {"type": "object", "properties": {}},
        }
        for spec in specs
    ]
    if tools:
        tools[-1]["cache_control"] = CACHE
    return tools


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    """One OpenAI chat message's content as Messages content blocks."""
    content = message.get("content") or ""
    if message.get("role") == "tool":
        return [
            {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id") or "",
                "content": content or "(no output)",
            }
        ]
    blocks: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": function.get("name") or "",
                "input": parse_arguments(function.get("arguments") or ""),
            }
        )
    return blocks


def to_messages(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(system, messages)`` for the Messages API from an OpenAI chat transcript.

    The system prompt's last block and the last message's last block carry
    ``cache_control``: the prefix up to there is written to the cache and read back by
    the next call, whose conversation starts the same way.
    """
    system = [
        {"type": "text", "text": m["content"]}
        for m in messages
        if m.get("role") == "system" and m.get("content")
    ]
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "system":
            continue
        blocks = _blocks(message)
        if not blocks:  # an empty answer: the API refuses empty content
            continue
        wire_role = "assistant" if role == "assistant" else "user"
        if out and out[-1]["role"] == wire_role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": wire_role, "content": blocks})
    if system:
        system[-1]["cache_control"] = CACHE
    if out:
        out[-1]["content"][-1] = {**out[-1]["content"][-1], "cache_control": CACHE}
    return system, out


# -- the stream --------------------------------------------------------------------------


class _Assembly:
    """A Reply built from a Messages stream's events, each piece passed on as it comes."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.text: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}  # block index -> id, name, JSON text
        self.usage: dict[str, int] = {}
        self.finished = False

    def feed(self, event: Any) -> None:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            self._usage(event.message.usage)
        elif kind == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                self.calls[event.index] = {"id": block.id, "name": block.name, "args": ""}
        elif kind == "content_block_delta":
            self._delta(event.index, event.delta)
        elif kind == "message_delta":
            self._usage(event.usage)
        elif kind == "message_stop":
            self.finished = True

    def _delta(self, index: int, delta: Any) -> None:
        if delta.type == "text_delta" and delta.text:
            self.text.append(delta.text)
            self.sink.text(delta.text)
        elif delta.type == "input_json_delta" and index in self.calls and delta.partial_json:
            slot = self.calls[index]
            slot["args"] += delta.partial_json
            self.sink.args(list(self.calls).index(index), slot["name"], delta.partial_json)

    def _usage(self, usage: Any) -> None:
        """Counts from message_start, then message_delta's cumulative ones over them."""
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ):
            value = getattr(usage, name, None)
            if isinstance(value, int):
                self.usage[name] = value

    def reply(self) -> Reply:
        if not self.finished:
            # Cut off (a proxy or the server went away): transient, the call starts over.
            raise httpx2.RemoteProtocolError("the stream ended before the answer did")
        calls = [
            ToolCall(slot["id"] or f"toolu_{i}", slot["name"], parse_arguments(slot["args"]))
            for i, slot in enumerate(self.calls.values())
        ]
        return Reply("".join(self.text), calls, self._total())

    def _total(self) -> Usage | None:
        if not self.usage:
            return None
        read = self.usage.get("cache_read_input_tokens", 0)
        written = self.usage.get("cache_creation_input_tokens", 0)
        # Anthropic counts cached input apart; ours is every token the model was sent.
        return Usage(
            self.usage.get("input_tokens", 0) + read + written,
            self.usage.get("output_tokens", 0),
            cache_read_tokens=read,
            cache_write_tokens=written,
        )


class AnthropicModel:
    """A Claude model on the Messages API (or a compatible server at ``base_url``).

    ``api_key`` and ``base_url`` left None, the SDK reads its own ``ANTHROPIC_API_KEY``
    and ``ANTHROPIC_BASE_URL``. The client is made on first use, so naming the model
    needs no key. ``client`` lets tests inject a fake.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        client: Any = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        attempts: int = 4,
        backoff: float = 1.0,
        timeout: float = 300.0,
    ) -> None:
        self.model = model
        self.base_url = base_url or None
        self._api_key = api_key or None
        self.max_tokens = max_tokens
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self._client: Any = client

    @classmethod
    def from_settings(cls, model: str, settings: Settings) -> AnthropicModel:
        """The model with runner's ``RUNNER_ANTHROPIC_*`` settings (else the SDK's variables)."""
        key = settings.anthropic_api_key
        return cls(
            model,
            settings.anthropic_base_url,
            api_key=key.get_secret_value() if key is not None else None,
            max_tokens=settings.anthropic_max_tokens,
        )

    def context_window(self, model: str) -> int | None:
        """The model's context window in tokens (None: not known)."""
        return CLAUDE_WINDOW if model.startswith("claude") else None

    def _get_client(self) -> Any:
        if self._client is None:
            try:
                # Retries are ours (tenacity, stop-aware), so the SDK's own are off.
                self._client = anthropic.Anthropic(
                    api_key=self._api_key,
                    base_url=self.base_url,
                    max_retries=0,
                    timeout=self.timeout,
                )
            except anthropic.AnthropicError as exc:
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
        """Ask the API, abandoning the call (Interrupted) if a stop is requested."""
        client = self._get_client()
        system, wire = to_messages(messages)
        kwargs: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": wire,
            "stream": True,
        }
        if system:
            kwargs["system"] = system
        if tools:
            kwargs["tools"] = tool_param(tools)

        def attempt() -> Reply:
            assembly = _Assembly(sink)
            for event in client.messages.create(**kwargs):
                if stop.requested.is_set():
                    raise Interrupted
                assembly.feed(event)
            return assembly.reply()

        return streamed_call(
            "anthropic-call",
            attempt,
            stop,
            sink,
            transient=_transient,
            why=_why,
            wrap=_error,
            attempts=self.attempts,
            backoff=self.backoff,
        )
