"""The ``RUNNER_MCP_CONFIG`` file: MCP servers in the usual ``mcpServers`` JSON shape.

```json
{"mcpServers": {
  "files": {"command": "npx", "args": ["-y", "some-mcp-server"], "env": {"LEVEL": "1"}}
}}
```

Only stdio servers are run (``command``, ``args``, ``env``); keys other clients add
(``type: "stdio"``, ``disabled``, ``autoApprove``...) are accepted, and a server with
``disabled: true`` is left out. A server name becomes the prefix of its tools' names
(``files__read``), so it is letters, digits, ``_`` and ``-``, without ``__``. Any problem
is BadInput naming the file, read when a worker starts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runner.errors import BadInput

SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class ServerConfig(BaseModel):
    """One stdio MCP server: how to start it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    type: Literal["stdio"] = "stdio"
    disabled: bool = False


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    servers: dict[str, ServerConfig] = Field(alias="mcpServers")


def load_config(path: Path) -> dict[str, ServerConfig]:
    """The enabled servers of the file at ``path``, by name; BadInput on any problem."""
    where = f"RUNNER_MCP_CONFIG ({path})"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"{where}: cannot read it: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"{where}: not JSON: {exc}") from None
    _refuse_remote(raw, where)
    try:
        parsed = ConfigFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise BadInput(f"{where}: {loc}: {first['msg']}") from None
    for name in parsed.servers:
        if not SERVER_NAME.fullmatch(name) or "__" in name:
            raise BadInput(
                f"{where}: server name {name[:40]!r}: use 1-32 letters, digits, _ or - "
                "(no '__': it separates server and tool in tool names)"
            )
    return {name: cfg for name, cfg in parsed.servers.items() if not cfg.disabled}


def _refuse_remote(raw: object, where: str) -> None:
    """BadInput for a server reached over HTTP (``url``, or a type other than stdio)."""
    servers = raw.get("mcpServers") if isinstance(raw, dict) else None
    if not isinstance(servers, dict):
        return
    for name, entry in servers.items():
        if isinstance(entry, dict) and ("url" in entry or entry.get("type", "stdio") != "stdio"):
            raise BadInput(
                f"{where}: server {str(name)[:40]!r}: only stdio servers (command, args, env) "
                "are supported, not HTTP ones"
            )
