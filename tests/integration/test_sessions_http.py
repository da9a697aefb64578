"""Issue 14: ``GET /sessions`` on a real ``runner serve``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.helpers import write_script
from tests.serving import make_api

pytest.importorskip("starlette")


def test_sessions_are_listed_over_http(cli: Cli, tmp_path: Path) -> None:
    script = write_script(tmp_path / "s.json", [{"content": "done"}])
    run_id = cli.submit("--session", "web", "--script", str(script), "hello")
    api = make_api(cli)
    with api.http(api.reader) as http:
        reply = http.get("/sessions")
    assert reply.status_code == 200, reply.text
    [info] = reply.json()["sessions"]
    assert (info["name"], info["turns"], info["last_turn"]) == ("web", 1, run_id)
    assert (info["last_status"], info["expired"]) == ("queued", False)
