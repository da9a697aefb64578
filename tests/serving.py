"""``runner serve`` as a subprocess for the HTTP tests, and an SSE frame parser."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import Cli
from tests.helpers import Proc, wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Api:
    """A ``runner serve`` subprocess and the tokens made for it."""

    cli: Cli
    port: int
    token: str
    reader: str
    proc: Proc | None = None
    env: dict[str, str] = field(default_factory=dict)  # extra variables for the server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**self.cli.env, **self.env}
        log = f"serve-{self.port}.log"
        self.proc = self.cli.spawn("serve", "--port", str(self.port), log=log, env=env)
        wait_for(self._up, what="runner serve to answer /health")

    def _up(self) -> bool:
        assert self.proc is not None and self.proc.alive(), self.proc and self.proc.output()
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def restart(self) -> None:
        assert self.proc is not None
        self.proc.stop()
        self.start()

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def make_api(cli: Cli, **env: str) -> Api:
    """Tokens "writer" and "reader" (read-only), then ``runner serve`` on a free port."""
    tokens = []
    for args in (["--name", "writer"], ["--name", "reader", "--read-only"]):
        done = cli("token", "create", *args)
        assert done.returncode == 0, done.stderr
        tokens.append(done.stdout.strip())
    handle = Api(cli, free_port(), tokens[0], tokens[1], env=env)
    handle.start()
    return handle


def sse_frames(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parse an SSE response into frames {id, event, data, comments}, as they arrive."""
    frame: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in frame:
                yield frame
                if frame.get("event") in ("end", "problem"):
                    return
            frame = {}
        elif line.startswith(":"):
            frame.setdefault("comments", []).append(line)
        else:
            name, _, value = line.partition(":")
            frame[name] = value[1:] if value.startswith(" ") else value


def sse_events(response: httpx.Response, stop_after: int | None = None) -> list[dict[str, Any]]:
    """Parse an SSE response into frames {id, event, data}; stop after N data frames."""
    frames: list[dict[str, Any]] = []
    for frame in sse_frames(response):
        frames.append(frame)
        if stop_after is not None and len(frames) >= stop_after:
            break
    return frames
