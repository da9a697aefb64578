"""Fake model APIs: real HTTP servers on loopback speaking each API's streaming wire format.

Each POST is answered with the next scripted response (a stream, possibly cut off
mid-event, or an error with a status and headers); every request body and its headers
are recorded. :class:`FakeAnthropic` speaks the Messages API's Server-Sent Events
(``event: message_start`` ... ``message_stop``); :class:`FakeOpenAI` the chat
completions stream (``data: {...}`` lines, ``data: [DONE]``). Past its script a server
answers a final text, so a worker's turn always ends. :class:`FakeChat` is a chat
completions server that answers with a function instead of a script.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

Event = tuple[str, dict[str, Any]]  # an SSE event name and its JSON data
Response = tuple[int, dict[str, str], Any]  # status, headers, a JSON body or (events, drop)


class FakeServer:
    """The scripted responses and the recorded requests of one fake API."""

    # What a dropped connection sends before it goes away: half an event.
    partial = b'event: content_block_delta\ndata: {"type": "conte'

    def __init__(self) -> None:
        self.responses: list[Response] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.url = ""
        self.lock = threading.Lock()

    def error(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        self.responses.append(
            (status, {"content-type": "application/json", **(headers or {})}, body)
        )

    def events(self, events: list[Event], *, drop: bool = False) -> None:
        self.responses.append((200, {"content-type": "text/event-stream"}, (events, drop)))

    def fallback(self) -> list[Event]:
        raise NotImplementedError

    def sse(self, name: str, data: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def next(self, raw: bytes, headers: dict[str, str]) -> Response | None:
        """The answer to one request (None: send nothing, the caller has gone)."""
        body = json.loads(raw)
        with self.lock:
            self.requests.append(body)
            self.headers.append(headers)
            if self.responses:
                return self.responses.pop(0)
        return 200, {"content-type": "text/event-stream"}, (self.fallback(), False)


S = TypeVar("S", bound="FakeServer")


@contextmanager
def serving(state: S) -> Iterator[S]:
    """Serve ``state`` on a random loopback port for the ``with`` block."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            size = int(self.headers.get("content-length", "0"))
            response = state.next(
                self.rfile.read(size), {k.lower(): v for k, v in self.headers.items()}
            )
            if response is None:
                return
            status, headers, body = response
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if status != 200:
                raw = json.dumps(body).encode()
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
                return
            events, drop = body
            self.send_header("connection", "close")
            self.end_headers()
            for name, data in events:
                self.wfile.write(state.sse(name, data))
                self.wfile.flush()
            if drop:  # half an event, then the connection goes away
                self.wfile.write(state.partial)
                self.wfile.flush()
                self.connection.shutdown(2)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# -- Anthropic Messages ------------------------------------------------------------------


class FakeAnthropic(FakeServer):
    """The Messages API (``POST /v1/messages``, ``stream: true``)."""

    def sse(self, name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    def fallback(self) -> list[Event]:
        return answer(text("All done."), stop="end_turn")

    def stream(self, *blocks: list[Event], drop: bool = False, **usage: int) -> None:
        """A whole message of ``blocks`` (see :func:`text`, :func:`tool_use`)."""
        if drop:
            self.events(_start(usage) + [e for b in blocks for e in b], drop=True)
        else:
            self.events(answer(*blocks, usage=usage))


def _start(usage: dict[str, int]) -> list[Event]:
    counts = {"input_tokens": 10, "output_tokens": 1, **usage}
    message = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": "claude-fake",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": counts,
    }
    return [("message_start", {"type": "message_start", "message": message})]


def answer(
    *blocks: list[Event], stop: str | None = None, usage: dict[str, int] | None = None
) -> list[Event]:
    """message_start, the blocks (numbered in order), message_delta, message_stop."""
    events = _start(usage or {})
    for index, block in enumerate(blocks):
        events += [(name, {**data, "index": index}) for name, data in block]
    reason = stop or ("tool_use" if any(_is_tool(b) for b in blocks) else "end_turn")
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": None},
                "usage": {"output_tokens": 7},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _is_tool(block: list[Event]) -> bool:
    return block[0][1]["content_block"]["type"] == "tool_use"


def text(*pieces: str) -> list[Event]:
    """A text block streamed as ``pieces``."""
    start = {"type": "content_block_start", "content_block": {"type": "text", "text": ""}}
    deltas = [
        (
            "content_block_delta",
            {"type": "content_block_delta", "delta": {"type": "text_delta", "text": p}},
        )
        for p in pieces
    ]
    return [
        ("content_block_start", start),
        *deltas,
        ("content_block_stop", {"type": "content_block_stop"}),
    ]


def tool_use(call_id: str, name: str, *pieces: str) -> list[Event]:
    """A tool_use block whose input JSON streams as ``pieces``."""
    block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
    start = {"type": "content_block_start", "content_block": block}
    deltas = [
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "delta": {"type": "input_json_delta", "partial_json": p},
            },
        )
        for p in pieces
    ]
    return [
        ("content_block_start", start),
        *deltas,
        ("content_block_stop", {"type": "content_block_stop"}),
    ]


# -- OpenAI chat completions -------------------------------------------------------------


class FakeOpenAI(FakeServer):
    """Chat completions (``POST /v1/chat/completions``, ``stream: true``)."""

    partial = b'data: {"id": "c", "obj'

    def sse(self, name: str, data: dict[str, Any]) -> bytes:
        if name == "done":
            return b"data: [DONE]\n\n"
        return f"data: {json.dumps(data)}\n\n".encode()

    def fallback(self) -> list[Event]:
        return chat(content="All done.")

    def chat(self, **delta: Any) -> None:
        self.events(chat(**delta))

    def stream(self, *chunks: dict[str, Any], drop: bool = False) -> None:
        """``chunks`` (see :func:`chunk`), then, unless dropped, a finish and ``[DONE]``."""
        events: list[Event] = [("chunk", c) for c in chunks]
        if not drop:
            end = {"index": 0, "delta": {}, "finish_reason": "stop"}
            events += [("chunk", {**chunk({}), "choices": [end]}), ("done", {})]
        self.events(events, drop=drop)


def chunk(delta: dict[str, Any], usage: dict[str, int] | None = None) -> dict[str, Any]:
    """One chat completion chunk: ``delta`` as its choice, or (with ``usage``) no choice."""
    body: dict[str, Any] = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    if usage:
        body["usage"] = {**usage, "total_tokens": sum(usage.values())}
    return body


def chat(*, usage: tuple[int, int] = (12, 3), **delta: Any) -> list[Event]:
    """One answer as chat chunks: the delta, a finish, usage (prompt, completion), [DONE]."""
    reason = "tool_calls" if delta.get("tool_calls") else "stop"
    finish = {"index": 0, "delta": {}, "finish_reason": reason}
    return [
        ("chunk", chunk({"role": "assistant", **delta})),
        ("chunk", {**chunk({}), "choices": [finish]}),
        ("chunk", chunk({}, {"prompt_tokens": usage[0], "completion_tokens": usage[1]})),
        ("done", {}),
    ]


# -- a chat server that answers with a function ------------------------------------------

# {"content": str, "tool": name, "id": call id, "args": {...}}, or {"hang": threading.Event}
Answer = dict[str, Any]


class FakeChat(FakeOpenAI):
    """Chat completions answered by ``respond(body)``; every request kept as its bytes.

    A request over ``window`` tokens (JSON bytes / 4, the usual rough count) is refused
    the way OpenAI refuses one, so a turn that fails to compact fails; so is one with a
    tool result whose call it was not sent, or a call whose result is missing.
    """

    def __init__(self, respond: Callable[[dict[str, Any]], Answer], window: int = 8192) -> None:
        super().__init__()
        self.respond = respond
        self.window = window
        self.raw: list[bytes] = []
        self.refused = 0

    def tokens(self, body: dict[str, Any]) -> int:
        return len(json.dumps([body["messages"], body.get("tools", [])])) // 4

    def next(self, raw: bytes, headers: dict[str, str]) -> Response | None:
        body = json.loads(raw)
        with self.lock:
            self.raw.append(raw)
        if self.tokens(body) > self.window or not paired(body["messages"]):
            with self.lock:
                self.refused += 1
            error = {"message": "too long", "type": "invalid", "code": "context_length_exceeded"}
            return 400, {"content-type": "application/json"}, {"error": error}
        answer = self.respond(body)
        if "hang" in answer:
            answer["hang"].wait(120)  # the caller has gone by then
            return None
        delta: dict[str, Any] = {"content": answer.get("content", "")}
        if "tool" in answer:
            function = {"name": answer["tool"], "arguments": json.dumps(answer["args"])}
            delta["tool_calls"] = [
                {"index": 0, "id": answer["id"], "type": "function", "function": function}
            ]
        usage = (self.tokens(body), len(answer.get("content", "")) // 4 + 1)
        return 200, {"content-type": "text/event-stream"}, (chat(usage=usage, **delta), False)


@contextmanager
def serve(chat: FakeChat) -> Iterator[str]:
    """Serve ``chat``; yields its base URL (``http://127.0.0.1:PORT/v1``)."""
    with serving(chat):
        yield chat.url + "/v1"


def is_summary(body: dict[str, Any]) -> bool:
    """Whether a request is a compaction's summarising call (no tools, runner's summariser)."""
    from runner.prompts import SUMMARISER_SYSTEM

    return "tools" not in body and body["messages"][0]["content"] == SUMMARISER_SYSTEM


def paired(messages: list[dict[str, Any]]) -> bool:
    """Whether every tool result follows its call and every call has its result."""
    open_calls: set[str] = set()
    for message in messages:
        if message["role"] == "tool":
            if message.get("tool_call_id") not in open_calls:
                return False
            open_calls.discard(message["tool_call_id"])
            continue
        if open_calls:
            return False  # the previous answer's calls are not all answered
        open_calls = {c["id"] for c in message.get("tool_calls") or []}
    return True
