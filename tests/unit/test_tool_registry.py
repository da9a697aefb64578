"""The tool registry without a worker: edit_file, user tools, output, effect ids, MCP config."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.errors import BadInput
from workers import tools
from workers.stop import Stop
from workers.tools import ToolContext, ToolResult, get, run_tool, specs
from workers.tools.mcp import public_name
from workers.tools.mcp_config import load_config
from workers.tools.output import bytes_text, fit, to_text
from workers.tools.user import as_tools, function_tool, load, tool


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ToolContext(workspace=ws, stop=Stop(5), timeout=10, output_bytes=1000, run_id="r-1")


# ---------------------------------------------------------------------------- edit_file


def edit(ctx: ToolContext, old: str, new: str, path: str = "a.py") -> str:
    args = {"path": path, "old_string": old, "new_string": new}
    return run_tool("edit_file", args, ctx).content


def test_edit_file_replaces_one_exact_occurrence_or_says_why_not(ctx: ToolContext) -> None:
    target = ctx.workspace / "a.py"
    target.write_text("x = 1\ny = 1\nx = 1\nz = 'é'\n")
    target.chmod(0o751)
    assert edit(ctx, "z = 'é'", "z = 'ü'") == "edited a.py: replaced 1 occurrence at line 4"
    several = edit(ctx, "x = 1", "x = 2")
    assert several.startswith("error: old_string occurs 2 times in a.py (lines 1, 3)")
    assert edit(ctx, "w = 1", "w = 2") == "error: old_string not found in a.py: nothing was changed"
    assert edit(ctx, "", "w").startswith("error: old_string is empty")
    assert edit(ctx, "y = 1", "y = 1").startswith("error: old_string and new_string are the same")
    assert target.read_text() == "x = 1\ny = 1\nx = 1\nz = 'ü'\n"  # the refusals changed nothing
    assert target.stat().st_mode & 0o777 == 0o751
    assert edit(ctx, "y = 1\nx", "y = 3\nx") == "edited a.py: replaced 1 occurrence at line 2"
    assert target.read_text() == "x = 1\ny = 3\nx = 1\nz = 'ü'\n"


def test_edit_file_refuses_what_it_should_not_touch(ctx: ToolContext) -> None:
    (ctx.workspace / "bin").write_bytes(b"\xff\xfe x")
    (ctx.workspace / "d").mkdir()
    assert edit(ctx, "x", "y", "bin").startswith("error: 'bin' is not UTF-8 text")
    assert edit(ctx, "x", "y", "d").startswith("error: 'd' is a directory")
    assert edit(ctx, "x", "y", "../x") == "error: path '../x' refused: '..' is not allowed"
    assert edit(ctx, "x", "y", "missing.txt").startswith("error: No such file or directory")


# ---------------------------------------------------------------------------- output


def test_output_is_capped_visibly_and_binary_is_described() -> None:
    assert bytes_text(b"a" * 50, 20) == "a" * 20 + "\n[... 30 bytes trimmed]"
    damaged = b"ok \xff\xfe then a line of ordinary text"  # a little damage: still text
    assert bytes_text(damaged, 100) == "ok \ufffd\ufffd then a line of ordinary text"
    binary = bytes_text(b"\x7fELF\x02\x01\x00\x00" + bytes(range(256)) * 8, 1000, total=5000)
    assert binary.startswith("[binary output: 5000 bytes, not shown as text; sha256 ")
    assert "first 64 bytes: 7f 45 4c 46 02 01 00 00" in binary
    text = "head-" + "x" * 5000 + "-tail"
    trimmed = fit(text, 400)
    assert trimmed.startswith("head-") and trimmed.endswith("-tail")
    assert "[... 4610 bytes trimmed ...]" in trimmed
    assert fit("lone \udcff surrogate", 100) == "lone \ufffd surrogate"
    assert to_text({"a": [1, "é"]}, 100) == '{"a": [1, "é"]}'
    assert to_text(None, 100) == "(no output)"


# ---------------------------------------------------------------------------- user tools


@tool(idempotent=True, approval=True)
def lookup(key: str, limit: int = 3, *, ctx: ToolContext) -> dict[str, Any]:
    """Look a key up."""
    return {"key": key, "limit": limit, "effect": ctx.effect_id}


def broken(n: int) -> str:
    """Always raises."""
    raise RuntimeError(f"bug number {n}")


def test_a_function_is_a_tool_with_a_schema_from_its_signature(ctx: ToolContext) -> None:
    assert lookup.name == "lookup" and lookup.idempotent and getattr(lookup, "approval", False)
    assert lookup.description == "Look a key up."
    params = lookup.parameters
    assert params["required"] == ["key"] and set(params["properties"]) == {"key", "limit"}
    tools.register(lookup)
    tools.register(function_tool(broken))
    try:
        assert [s.name for s in specs()][-2:] == ["lookup", "broken"]
        out = run_tool("lookup", {"key": "k"}, ctx, call_id="call_7").content
        assert json.loads(out) == {"key": "k", "limit": 3, "effect": "r-1:call_7"}
        bad = run_tool("lookup", {"key": "k", "limit": "many"}, ctx).content
        assert bad.startswith("error: bad arguments: limit: Input should be a valid integer")
        extra = run_tool("lookup", {"key": "k", "other": 1}, ctx).content
        assert extra.startswith("error: bad arguments: other: Extra inputs are not permitted")
        raised = run_tool("broken", {"n": 4}, ctx).content
        assert raised == "error: tool broken raised RuntimeError: bug number 4"
    finally:
        tools.unregister("lookup")
        tools.unregister("broken")
    assert get("lookup") is None


def test_user_tool_objects_and_names_are_checked() -> None:
    assert [t.name for t in as_tools([lookup, broken], "x")] == ["lookup", "broken"]
    with pytest.raises(BadInput, match="is a int, not a tool"):
        as_tools(3, "x")
    with pytest.raises(BadInput, match="not a tool name"):
        function_tool(broken, name="a__b")
    with pytest.raises(BadInput, match=r"RUNNER_TOOLS: 'nope' is not package.module:object"):
        load(["nope"], group="runner.tools.none")
    with pytest.raises(BadInput, match="RUNNER_TOOLS: cannot import no_such_mod"):
        load(["no_such_mod:x"], group="runner.tools.none")
    with pytest.raises(BadInput, match=r"RUNNER_TOOLS: tests\.user_tools has no missing"):
        load(["tests.user_tools:missing"], group="runner.tools.none")
    names = [t.name for t in load(["tests.user_tools:TOOLS"], group="runner.tools.none")]
    assert names == ["effect", "boom", "blob", "big"]


def test_every_call_has_its_effect_id_and_shell_gets_it(ctx: ToolContext) -> None:
    result = run_tool("shell", {"command": 'echo "id=$RUNNER_EFFECT_ID"'}, ctx, "call_3")
    assert result.content.splitlines()[0] == "id=r-1:call_3"
    assert isinstance(result, ToolResult)
    assert not any(getattr(t, "approval", False) for t in tools.TOOLS.values())


# ---------------------------------------------------------------------------- MCP config


def test_mcp_config_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"

    def write(data: object) -> Path:
        path.write_text(json.dumps(data))
        return path

    servers = load_config(
        write(
            {
                "mcpServers": {
                    "demo": {"command": sys.executable, "args": ["s.py"], "env": {"A": "1"}},
                    "off": {"command": "x", "disabled": True},
                    "typed": {"type": "stdio", "command": "y", "autoApprove": []},
                }
            }
        )
    )
    assert sorted(servers) == ["demo", "typed"] and servers["demo"].env == {"A": "1"}
    cases: list[tuple[object, str]] = [
        ({"servers": {}}, "mcpServers: Field required"),
        ({"mcpServers": {"a__b": {"command": "x"}}}, "server name 'a__b'"),
        ({"mcpServers": {"web": {"type": "http", "url": "u"}}}, "only stdio servers"),
        ({"mcpServers": {"x": {"args": []}}}, "x.command: Field required"),
    ]
    for data, message in cases:
        with pytest.raises(BadInput, match=message):
            load_config(write(data))
    path.write_text("{not json")
    with pytest.raises(BadInput, match="not JSON"):
        load_config(path)
    with pytest.raises(BadInput, match="cannot read it"):
        load_config(tmp_path / "missing.json")
    assert public_name("files", "read.file/v2") == "files__read_file_v2"
    assert len(public_name("s", "t" * 100)) == 64


def test_an_mcp_file_broken_after_the_worker_started_leaves_the_turn_without_it(
    tmp_path: Path,
) -> None:
    from runner.settings import Settings

    notes: list[str] = []
    settings = Settings(mcp_config=tmp_path / "gone.json")
    assert tools.mcp_servers(settings, tmp_path, Stop(5), notes.append) is None
    assert notes and notes[0].startswith("MCP servers not started: RUNNER_MCP_CONFIG")


def test_mcp_results_read_as_text() -> None:
    import base64

    from mcp_types import (
        BlobResourceContents,
        CallToolResult,
        EmbeddedResource,
        ImageContent,
        TextContent,
    )

    from workers.tools.mcp_wire import result_text

    png = base64.b64encode(b"\x89PNG" + bytes(96)).decode()
    blob = BlobResourceContents(uri="file:///x.bin", blob=png)
    result = CallToolResult(
        content=[
            TextContent(text="hello"),
            ImageContent(data=png, mime_type="image/png"),
            EmbeddedResource(resource=blob),
        ]
    )
    assert result_text(result).splitlines() == [
        "hello",
        "[image: image/png, 100 bytes, not shown]",
        "[resource file:///x.bin: binary, not shown]",
    ]
    assert result_text(CallToolResult(content=[], structured_content={"n": 1})) == '{"n": 1}'
    assert result_text(CallToolResult(content=[])) == "(no output)"
