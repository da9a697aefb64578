"""``runner list | cat``: at 80 columns every cell stays whole, none cut to "…" (issue 16.5)."""

from __future__ import annotations

from tests.helpers import write_script

TITLE = "refactor the billing module and keep every public function's signature intact"


def test_runner_list_through_a_pipe_keeps_whole_cells(cli, env, tmp_path) -> None:
    script = write_script(tmp_path / "s.json", [{"content": "done"}])
    ids = [
        cli.submit("--model", "scripted", "--script", str(script), "--queue", q, TITLE)
        for q in ("default", "a-rather-long-queue-name")
    ]
    piped = {k: v for k, v in env.items() if k != "COLUMNS"}  # a pipe: rich's 80 columns
    done = cli("list", env=piped)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines()), text
    for run_id in ids:
        assert run_id in text
    assert "a-rather-long-queue-name" in text.replace("\n", "").replace(" ", "")
    # The title wraps within its column: its words, in order, all there.
    words = [w for line in text.splitlines()[1:] for w in line.split()]
    assert " ".join(words).count(" ".join(TITLE.split()[:4])) >= 1
    assert all(word in words for word in TITLE.split())
