"""Fake model APIs: real HTTP servers on loopback speaking each API's streaming wire format.

Each POST is answered with the next scripted response (a stream, possibly cut off
mid-event, or an error with a status and headers); every request body and its headers
are recorded. :class:`FakeAnthropic` speaks the Messages API's Server-Sent Events
(``event: message_start`` ... ``message_stop``); :class:`FakeOpenAI` the chat
completions stream (``data: {...}`` lines, ``data: [DONE]``). Past its script a server
answers a final text, so a worker's turn always ends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Event = tuple[str, dict[str, Any]]  # an SSE event name and its JSON data


class FakeServer:
    """The scripted responses and the recorded requests of one fake API."""

    def __init__(self) -> None:
        self.responses: list[tuple[int, dict[str, str], Any]] = []
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

    def next(
        self, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            self.requests.append(body)
            self.headers.append(headers)
            if self.responses:
                return self.responses.pop(0)
        return 200, {"content-type": "text/event-stream"}, (self.fallback(), False)


@contextmanager
def serving(state: FakeServer) -> Iterator[FakeServer]:
    """Serve ``state`` on a random loopback port for the ``with`` block."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            size = int(self.headers.get("content-length", "0"))
            status, headers, body = state.next(
                json.loads(self.rfile.read(size)), {k.lower(): v for k, v in self.headers.items()}
            )
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
                self.wfile.write(b'event: content_block_delta\ndata: {"type": "conte')
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

    def sse(self, name: str, data: dict[str, Any]) -> bytes:
        if name == "done":
            return b"data: [DONE]\n\n"
        return f"data: {json.dumps(data)}\n\n".encode()

    def fallback(self) -> list[Event]:
        return chat(content="All done.")

    def chat(self, **delta: Any) -> None:
        self.events(chat(**delta))


def chat(**delta: Any) -> list[Event]:
    """One answer as chat chunks: the delta, a finish, usage, ``[DONE]``."""

    def chunk(choices: list[dict[str, Any]], **more: Any) -> Event:
        body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "fake"}
        return ("chunk", {**body, "choices": choices, **more})

    reason = "tool_calls" if delta.get("tool_calls") else "stop"
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    return [
        chunk([{"index": 0, "delta": {"role": "assistant", **delta}, "finish_reason": None}]),
        chunk([{"index": 0, "delta": {}, "finish_reason": reason}]),
        chunk([], usage=usage),
        ("done", {}),
    ]
