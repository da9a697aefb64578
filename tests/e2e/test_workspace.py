"""The turn's files travel with it (issue 11): two hosts, a handoff or a crash, same files.

Two workers with different RUNNER_WORKSPACE_ROOTs stand for two hosts. A scripted turn
writes files with ``write_file`` and ``shell`` (a deletion, an executable, an internal
symlink, an empty directory); the first worker is stopped (SIGTERM) or killed (SIGKILL
to its group) mid-turn, and the second worker's later ``shell`` step must see exactly
the committed files.
"""

from __future__ import annotations

import json
import signal
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from runner.events import MessageEvent, Status, StatusEvent, WorkspaceEvent
from runner.store import RunRecord, RunStore
from tests.helpers import Proc, wait_for, write_script

if TYPE_CHECKING:
    from tests.conftest import Cli

MAKE = (
    "mkdir -p d/empty && printf '#!/bin/sh\\necho ran\\n' > run.sh && chmod 755 run.sh"
    " && ln -s a.txt link && echo bye > gone.txt"
)
LOOK = (
    "find . -mindepth 1 | LC_ALL=C sort; stat -c '%A %n' run.sh; readlink link;"
    " ./run.sh; cat a.txt; ls -A d/empty | wc -l"
)
SEEN = (
    "./a.txt\n./d\n./d/empty\n./link\n./run.sh\n-rwxr-xr-x run.sh\na.txt\nran\n"
    "hello\nmore\n0\nexit code 0"
)
STEPS: list[dict[str, Any]] = [
    {"content": "write", "tool": "write_file", "args": {"path": "a.txt", "content": "hello\n"}},
    {"content": "make", "tool": "shell", "args": {"command": MAKE}},
    {"content": "edit", "tool": "shell", "args": {"command": "rm gone.txt && echo more >> a.txt"}},
    # The first worker is stopped while the model thinks here (nothing of it committed).
    {"content": "think", "tool": "shell", "args": {"command": "echo thought"}, "sleep": 1.5},
    {"content": "look", "tool": "shell", "args": {"command": LOOK}},
    {"content": "All done."},
]
FILE_STEPS = 6  # messages committed once the third tool's result is in


def _worker(cli: Cli, name: str, root: Path) -> Proc:
    env = {**cli.env, "RUNNER_WORKSPACE_ROOT": str(root)}
    return cli.worker(name, env=env)


def _wait(store: RunStore, run_id: str, check: Any, what: str) -> RunRecord:
    def ready() -> RunRecord | None:
        record = store.get(run_id)
        return record if check(record) else None

    return wait_for(ready, 30, 0.02, what=what)


@pytest.mark.parametrize(
    ("sig", "group", "shared"),
    [
        pytest.param(signal.SIGTERM, False, False, id="sigterm"),
        pytest.param(signal.SIGKILL, True, False, id="sigkill-group"),
        pytest.param(signal.SIGTERM, False, True, id="sigterm-directory-store"),
    ],
)
def test_files_follow_the_turn_to_another_host(
    cli: Cli, store: RunStore, tmp_path: Path, sig: int, group: bool, shared: bool
) -> None:
    if shared:  # a shared directory instead of the run's Redis keys
        cli.env["RUNNER_WORKSPACE_STORE"] = f"file://{tmp_path / 'shared'}"
    script = write_script(tmp_path / "script.json", STEPS)
    first = _worker(cli, "host1", tmp_path / "host1")
    run_id = cli.submit("--model", "scripted", "--script", str(script), "make files")
    _wait(store, run_id, lambda r: r.steps >= FILE_STEPS, "the file steps to commit")
    here = tmp_path / "host1" / run_id
    assert stat.S_IMODE((here / "run.sh").stat().st_mode) == 0o755

    if group:
        first.signal_group(sig)
    else:
        first.signal(sig)
    first.wait(timeout=30)
    # Handed off, its files are in the store: the host it left keeps no copy (a SIGKILLed
    # worker cannot clean up; its directory is left to the next run there).
    assert here.exists() is group, sorted(p.name for p in here.parent.iterdir())
    _worker(cli, "host2", tmp_path / "host2")
    done = _wait(store, run_id, lambda r: r.terminal, "the run to end on host2")

    assert done.status is Status.SUCCEEDED, done
    events = store.events(run_id)
    results = {
        e.tool_call_id: e for e in events if isinstance(e, MessageEvent) and e.role == "tool"
    }
    look = results["call_4"]
    assert look.epoch == 2
    assert look.content == SEEN
    restored = [
        e.reason
        for e in events
        if isinstance(e, StatusEvent) and (e.reason or "").startswith("workspace restored")
    ]
    assert len(restored) == 1, restored
    assert restored[0].startswith("workspace restored: 2 files"), restored
    # Each file step committed its changes with its tool result; the think step none.
    changed = [e for e in events if isinstance(e, WorkspaceEvent)]
    assert [sorted(c.path for c in e.changes) for e in changed] == [
        ["a.txt"],
        ["d", "d/empty", "gone.txt", "link", "run.sh"],
        ["a.txt", "gone.txt"],
    ]
    assert "Traceback" not in first.output()
    if shared:
        assert list((tmp_path / "shared").rglob("*")), "the blobs went to the directory"
        assert not store.redis.exists(store.keys.blobs(run_id))


def test_submit_workspace_diff_and_pull(cli: Cli, store: RunStore, tmp_path: Path) -> None:
    start = tmp_path / "start"
    (start / "src").mkdir(parents=True)
    (start / "src" / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (start / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    (start / "tool.sh").chmod(0o755)
    (start / "blob.bin").write_bytes(b"\x00\x01\x02")
    (start / "old.txt").write_text("old\n")
    fix = "sed -i 's/a - b/a + b/' src/calc.py && printf '\\000\\003' > blob.bin && rm old.txt"
    steps = [
        {"content": "fix", "tool": "shell", "args": {"command": fix}},
        {"content": "All done."},
    ]
    script = write_script(tmp_path / "script.json", steps)
    _worker(cli, "w", tmp_path / "root")
    run_id = cli.submit(
        "--model", "scripted", "--script", str(script), "--workspace", str(start), "fix it"
    )
    _wait(store, run_id, lambda r: r.terminal, "the run to end")

    diff = cli("diff", run_id)
    assert diff.returncode == 0, diff.stderr
    assert diff.stdout == (
        "diff --runner a/blob.bin b/blob.bin\n"
        "Binary files a/blob.bin and b/blob.bin differ\n"
        "diff --runner a/old.txt b/old.txt\n"
        "deleted file mode 644\n"
        "--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-old\n"
        "diff --runner a/src/calc.py b/src/calc.py\n"
        "--- a/src/calc.py\n+++ b/src/calc.py\n@@ -1,2 +1,2 @@\n"
        " def add(a, b):\n-    return a - b\n+    return a + b\n"
    )
    out = tmp_path / "out"
    pulled = cli("pull", run_id, str(out))
    assert pulled.returncode == 0, pulled.stderr
    assert (out / "src" / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert (out / "blob.bin").read_bytes() == b"\x00\x03"
    assert not (out / "old.txt").exists()
    assert stat.S_IMODE((out / "tool.sh").stat().st_mode) == 0o755
    assert sorted(p.name for p in out.rglob("*")) == ["blob.bin", "calc.py", "src", "tool.sh"]

    again = cli("pull", run_id, str(out))
    assert again.returncode == 2
    assert again.stderr.strip() == f"error: {out} is not empty (use --force to write into it)"
    assert cli("pull", run_id, str(out), "--force").returncode == 0

    not_dir = cli(
        "submit",
        "--model",
        "scripted",
        "--script",
        str(script),
        "--workspace",
        str(start / "tool.sh"),
        "x",
    )
    assert not_dir.returncode == 2
    assert not_dir.stderr.strip() == f"error: --workspace {start / 'tool.sh'}: not a directory"
    assert json.loads(cli("status", run_id, "--json").stdout)["workspace"] == ""


def test_past_the_cap_the_run_goes_on_and_says_so(
    cli: Cli, store: RunStore, tmp_path: Path
) -> None:
    steps = [
        {"content": "big", "tool": "shell", "args": {"command": "head -c 4096 /dev/zero > big"}},
        {"content": "All done."},
    ]
    script = write_script(tmp_path / "script.json", steps)
    env = {**cli.env, "RUNNER_WORKSPACE_ROOT": str(tmp_path / "root")}
    cli.worker("w", env={**env, "RUNNER_WORKSPACE_MAX_BYTES": "1000"})
    run_id = cli.submit("--model", "scripted", "--script", str(script), "grow")
    done = _wait(store, run_id, lambda r: r.terminal, "the run to end")
    assert done.status is Status.SUCCEEDED
    assert "no longer carried across hosts" in done.workspace
    result = [e for e in store.events(run_id) if isinstance(e, MessageEvent) and e.role == "tool"]
    assert "[workspace] the workspace holds more than" in result[0].content
    shown = cli("status", run_id)
    assert "no longer carried across hosts" in shown.stdout, shown.stdout


def test_a_missing_blob_is_one_clear_line(cli: Cli, store: RunStore, tmp_path: Path) -> None:
    start = tmp_path / "start"
    start.mkdir()
    (start / "f.txt").write_text("one\n")
    steps = [
        {"content": "edit", "tool": "write_file", "args": {"path": "f.txt", "content": "two\n"}},
        {"content": "All done."},
    ]
    script = write_script(tmp_path / "script.json", steps)
    cli.worker("w", env={**cli.env, "RUNNER_WORKSPACE_ROOT": str(tmp_path / "root")})
    run_id = cli.submit(
        "--model", "scripted", "--script", str(script), "--workspace", str(start), "x"
    )
    _wait(store, run_id, lambda r: r.terminal, "the run to end")
    store.redis.delete(store.keys.blobs(run_id))  # purged or lost
    for args in (("diff", run_id), ("pull", run_id, str(tmp_path / "out"))):
        done = cli(*args)
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith("error: workspace blob "), done.stderr
        assert "is missing" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_workspace_that_cannot_be_restored_is_said_not_crashed(
    cli: Cli, store: RunStore, tmp_path: Path
) -> None:
    start = tmp_path / "start"
    start.mkdir()
    (start / "f.txt").write_text("one\n")
    script = write_script(tmp_path / "script.json", [{"content": "All done."}])
    run_id = cli.submit(
        "--model", "scripted", "--script", str(script), "--workspace", str(start), "x"
    )
    store.redis.delete(store.keys.blobs(run_id))
    worker = _worker(cli, "w", tmp_path / "root")
    done = _wait(store, run_id, lambda r: r.terminal, "the run to end")
    assert done.status is Status.SUCCEEDED
    reasons = [e.reason or "" for e in store.events(run_id) if isinstance(e, StatusEvent)]
    assert any(r.startswith("workspace not restored: workspace blob ") for r in reasons), reasons
    assert "Traceback" not in worker.output()
