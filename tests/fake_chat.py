"""A fake OpenAI-compatible chat server on loopback that answers with a function.

Real HTTP (a thread in the test process, so worker subprocesses reach it), speaking the
chat completions streaming format. ``respond(body)`` decides each answer; every request
body is recorded as the bytes that arrived. A request over ``window`` tokens (JSON
bytes / 4, the usual rough count) is refused the way OpenAI refuses one, so a turn that
fails to compact fails; so is one with a tool result whose call it was not sent, or a
call whose result is missing, as OpenAI refuses them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = dict[str, Any]  # {"content": str, "tool": name, "args": {...}} or {"hang": Event}


@dataclass
class FakeChat:
    respond: Callable[[dict[str, Any]], Answer]
    window: int = 8192
    raw: list[bytes] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def tokens(self, body: dict[str, Any]) -> int:
        return len(json.dumps([body["messages"], body.get("tools", [])])) // 4


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "fake"}
    return f"data: {json.dumps({**body, 'choices': [choice]})}\n\n".encode()


def _usage(prompt: int, completion: int) -> bytes:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "fake"}
    full = {**body, "choices": [], "usage": {**usage, "total_tokens": prompt + completion}}
    return f"data: {json.dumps(full)}\n\n".encode()


@contextmanager
def serve(chat: FakeChat) -> Iterator[str]:
    """Run the server; yields its base URL (``http://127.0.0.1:PORT/v1``)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            body = json.loads(raw)
            with chat.lock:
                chat.raw.append(raw)
            if chat.tokens(body) > chat.window or not paired(body["messages"]):
                chat.refused += 1
                return self._refuse()
            answer = chat.respond(body)
            if "hang" in answer:
                answer["hang"].wait(120)  # the caller has gone by then
                return None
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            out = [_chunk({"role": "assistant", "content": answer.get("content", "")})]
            if "tool" in answer:
                call = {
                    "index": 0,
                    "id": answer["id"],
                    "type": "function",
                    "function": {"name": answer["tool"], "arguments": json.dumps(answer["args"])},
                }
                out.append(_chunk({"tool_calls": [call]}))
            out.append(_chunk({}, "tool_calls" if "tool" in answer else "stop"))
            out.append(_usage(chat.tokens(body), len(answer.get("content", "")) // 4 + 1))
            self.wfile.write(b"".join(out) + b"data: [DONE]\n\n")
            return None

        def _refuse(self) -> None:
            error = {"message": "too long", "type": "invalid", "code": "context_length_exceeded"}
            data = json.dumps({"error": error}).encode()
            self.send_response(400)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()


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
