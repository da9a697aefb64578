"""Issue 15, point 5: the CLI through ``runner serve`` (RUNNER_API_URL), without Redis.

The CLI's own RUNNER_REDIS_URL points at a closed port: every command below works
only because it goes through the API, and prints and exits as it does over Redis.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from subprocess import PIPE, CompletedProcess

import pytest

from runner.events import MessageEvent
from runner.store import RunStore
from tests.conftest import Cli
from tests.helpers import RUNNER, step_script, write_script
from tests.serving import Api, free_port, make_api

pytest.importorskip("httpx")


def test_cli_over_http_matches_the_cli_over_redis(cli: Cli, tmp_path: Path) -> None:
    api = make_api(cli)
    remote = {
        **cli.env,
        "RUNNER_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens
        "RUNNER_API_URL": api.url,
        "RUNNER_API_TOKEN": api.token,
    }
    script = write_script(tmp_path / "s.json", step_script(2, sleep=0.2))
    done = cli("submit", "--model", "scripted", "--script", str(script), "hi", env=remote)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    cli.worker("w1")
    over_http = cli("follow", run_id, "--json", env=remote)
    assert over_http.returncode == 0, over_http.stderr
    direct = cli("follow", run_id, "--json")
    # Followed live, --json also prints the text in flight: ephemeral lines, each once.
    lines = over_http.stdout.splitlines(keepends=True)
    ephemeral = [line for line in lines if json.loads(line).get("ephemeral")]
    assert len(set(ephemeral)) == len(ephemeral), "a delta printed twice"
    assert "".join(line for line in lines if line not in ephemeral) == direct.stdout
    for args in (["status", run_id, "--json"], ["transcript", run_id, "--json"], ["list"]):
        ours, theirs = cli(*args, env=remote), cli(*args)
        assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), args
    # (send to an ended run starts its session's next turn: compared in the test below)
    unknown = "r0000000000deadbeef"
    for args in (["cancel", run_id], ["send", unknown, "more"], ["status", unknown]):
        ours, theirs = cli(*args, env=remote), cli(*args)
        assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr), args
    assert json.loads(cli("status", run_id, "--json", env=remote).stdout)["status"] == "succeeded"
    reader = {**remote, "RUNNER_API_TOKEN": api.reader}
    refused = cli("cancel", run_id, env=reader)
    assert refused.returncode == 2 and "read-only" in refused.stderr


def same_shape(
    ours: CompletedProcess[str], theirs: CompletedProcess[str], names: dict[str, str]
) -> None:
    """The two results are the same once each path's own ids and names are swapped in."""

    def norm(text: str) -> str:
        for mine, common in names.items():
            text = text.replace(mine, common)
        return text

    got = (ours.returncode, norm(ours.stdout), norm(ours.stderr))
    want = (theirs.returncode, norm(theirs.stdout), norm(theirs.stderr))
    assert got == want


def at_once(*commands: tuple[list[str], dict[str, str]]) -> list[CompletedProcess[str]]:
    """Run the CLI commands (args, env) as processes, four side by side; results in order."""
    done: list[CompletedProcess[str]] = []
    for first in range(0, len(commands), 4):
        batch = commands[first : first + 4]
        procs = [
            subprocess.Popen([*RUNNER, *args], env=env, stdout=PIPE, stderr=PIPE, text=True)
            for args, env in batch
        ]
        for proc, (args, _) in zip(procs, batch, strict=True):
            out, err = proc.communicate(timeout=120)
            done.append(CompletedProcess(args, proc.returncode, out, err))
    return done


def snapshot(store: RunStore) -> list[str]:
    """Runner's keys (not RQ's, nor the sweeper's lock)."""
    return sorted(k for k in store.redis.keys("runner:*") if "lock" not in k)


def through(api: Api, token: str = "") -> dict[str, str]:
    """The CLI's environment through ``api``, with Redis out of its reach."""
    return {
        **api.cli.env,
        "RUNNER_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens
        "RUNNER_API_URL": api.url,
        "RUNNER_API_TOKEN": token or api.token,
    }


@pytest.mark.slow
def test_send_sessions_fork_and_purge_over_http_match_redis(
    cli: Cli, store: RunStore, tmp_path: Path
) -> None:
    """Issue 14 over HTTP: each command over Redis and through the API, on twin runs."""
    api = make_api(cli)
    remote = through(api)
    script = str(write_script(tmp_path / "s.json", step_script(1)))
    cli.worker("w1")
    direct_run = cli.submit("--model", "scripted", "--script", script, "hi")
    http_run = cli.submit("--model", "scripted", "--script", script, "hi")
    for run_id in (direct_run, http_run):
        assert cli("follow", run_id).returncode == 0
    names = {direct_run: "RUN", http_run: "RUN"}

    # send to an ended run starts its session's next turn: same lines, same exit code.
    theirs, ours = at_once(
        (["send", direct_run, "and then?"], cli.env), (["send", http_run, "and then?"], remote)
    )
    direct_next, http_next = theirs.stdout.strip(), ours.stdout.strip()
    names |= {direct_next: "NEXT", http_next: "NEXT"}
    same_shape(ours, theirs, names)
    assert theirs.returncode == 0 and "continues in" in theirs.stderr
    for run_id in (direct_next, http_next):
        assert cli("follow", run_id).returncode == 0
    assert store.get(http_next).session == http_run  # the run's session, named after it
    said = [
        [(m.role, m.content) for m in store.events(r) if isinstance(m, MessageEvent)]
        for r in (direct_next, http_next)
    ]
    assert said[0] == said[1] and ("user", "and then?") in said[1]
    assert "out-0" in cli("transcript", http_next).stdout  # turn 1 came along

    # sessions: the same listing through either path.
    listings = [["sessions"], ["sessions", "--json"], ["sessions", "--limit", "1", "--json"]]
    results = at_once(*[(args, env) for args in listings for env in (remote, cli.env)])
    for args, ours, theirs in zip(listings, results[0::2], results[1::2], strict=True):
        assert (ours.returncode, ours.stdout, ours.stderr) == (
            theirs.returncode,
            theirs.stdout,
            theirs.stderr,
        ), args
    assert len(results[-1].stdout.splitlines()) == 1

    # fork: the rounding note and the new id, and --json.
    theirs, ours, theirs_json, ours_json = at_once(
        (["fork", direct_next, "--at", "2"], cli.env),
        (["fork", http_next, "--at", "2"], remote),
        (["fork", direct_next, "--at", "3", "--json"], cli.env),
        (["fork", http_next, "--at", "3", "--json"], remote),
    )
    direct_fork, http_fork = theirs.stdout.strip(), ours.stdout.strip()
    names |= {direct_fork: "FORK", http_fork: "FORK"}
    same_shape(ours, theirs, names)
    assert "would split a tool call" in ours.stderr
    forked = json.loads(ours_json.stdout)
    names |= {json.loads(theirs_json.stdout)["id"]: "FORK2", forked["id"]: "FORK2"}
    same_shape(ours_json, theirs_json, names)
    assert store.get(forked["id"]).session == ""

    # rename, then delete a whole session, then purge one run: the same report either way.
    renamed = names | {"ours-direct": "NEW", "ours-http": "NEW"}
    theirs, ours = at_once(
        (["session", "rename", direct_run, "ours-direct"], cli.env),
        (["session", "rename", http_run, "ours-http"], remote),
    )
    same_shape(ours, theirs, renamed)
    assert store.get(http_next).session == "ours-http"
    theirs, ours = at_once(
        (["session", "delete", "ours-direct"], cli.env),
        (["session", "delete", "ours-http"], remote),
    )
    same_shape(ours, theirs, renamed)
    assert "(2 turns purged)" in ours.stdout
    assert not store.redis.keys(f"*{http_run}*") and not store.redis.keys(f"*{http_next}*")
    for run_id in (direct_fork, http_fork, forked["id"]):
        assert cli("follow", run_id).returncode == 0
    theirs, ours = at_once(
        (["purge", direct_fork, "--json"], cli.env), (["purge", http_fork, "--json"], remote)
    )
    same_shape(ours, theirs, names)
    assert json.loads(ours.stdout)["keys"] > 0 and not store.redis.keys(f"*{http_fork}*")
    # --older-than 0 through the API purges every ended run; then Redis finds none left.
    held = cli.submit("--model", "scripted", "--script", script, "--queue", "idle", "later")
    ours = cli("purge", "--older-than", "0", "--json", env=remote)
    assert ours.returncode == 0, ours.stderr
    assert len(json.loads(ours.stdout)["runs"]) == 2  # the two --json forks
    assert cli("purge", "--older-than", "0").stdout == "purged 0 runs (0 keys)\n"
    assert store.get(held).status.value == "queued"  # a live run is never purged


@pytest.mark.slow
def test_refusals_over_http_match_redis(cli: Cli, store: RunStore, tmp_path: Path) -> None:
    """Bad input, unknown runs and wrong states: the same one line and exit code either
    way, a read-only token refused every write, and nothing changed by any of them."""
    api = make_api(cli)
    remote, reader = through(api), through(api, api.reader)
    script = str(write_script(tmp_path / "s.json", [{"content": "done"}]))
    cli.worker("w1")
    ended = cli.submit("--model", "scripted", "--script", script, "--session", "old", "x")
    assert cli("follow", ended).returncode == 0
    held = cli.submit("--script", script, "--queue", "idle", "--session", "busy", "x")
    unknown = "r0000000000deadbeef"
    refusals = [
        ["fork", unknown, "--at", "1"],
        ["purge", unknown],
        ["purge", held],
        ["purge"],
        ["purge", "--older-than", "soon"],
        ["session", "rename", "nosuch", "other"],
        ["session", "rename", "old", "busy"],
        ["session", "rename", "bad name!", "other"],
        ["session", "delete", "busy"],
        ["session", "delete", "nosuch"],
        ["approve", ended],
        ["deny", unknown, "--reason", "no"],
        ["resume", held],
    ]
    before = snapshot(store)
    results = at_once(*[(args, env) for args in refusals for env in (remote, cli.env)])
    for args, ours, theirs in zip(refusals, results[0::2], results[1::2], strict=True):
        assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr), args
        assert theirs.returncode == 2 and theirs.stderr.count("\n") == 1, (args, theirs.stderr)
        assert theirs.stderr.startswith("error: ") and "Traceback" not in ours.stderr
    assert snapshot(store) == before
    writes = [
        ["fork", ended, "--at", "1"],
        ["purge", ended],
        ["purge", "--older-than", "1d"],
        ["session", "rename", "old", "mine"],
        ["session", "delete", "old"],
        ["send", ended, "more"],
    ]
    listed, *refused = at_once((["sessions", "--json"], reader), *[(a, reader) for a in writes])
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 2, listed.stderr
    for args, done in zip(writes, refused, strict=True):
        assert done.returncode == 2 and "read-only" in done.stderr, (args, done.stderr)
    assert snapshot(store) == before
