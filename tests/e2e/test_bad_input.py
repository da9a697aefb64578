"""Bad input (guarantee 8): one line on stderr, a non-zero exit, no traceback, no key touched.

The server already holds a run, so "no key touched" covers another run's keys too.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from runner.client import Client, Submission
from runner.keys import Keys
from runner.settings import Settings
from tests.helpers import RUNNER, step_script, write_script

UNKNOWN_ID = "r0000000000deadbeef"  # well formed, names no run
BAD_IDS = {
    "dotdot": "../x",
    "glob": "*",
    "rq-key": "rq:queue:default",
    "empty": "",
    "10kB": "r" * 10_000,
    "unknown": UNKNOWN_ID,
}
ID_COMMANDS = {
    "follow": ["follow"],
    "status": ["status"],
    "transcript": ["transcript"],
    "cancel": ["cancel"],
    "resume": ["resume"],
    "approve": ["approve"],
    "deny": ["deny"],
    "send": ["send", "{id}", "hello"],
}


def snapshot(client: redis.Redis) -> dict[bytes, Any]:
    """Every key with its serialized value and whether it has a TTL."""
    return {key: (client.dump(key), client.pttl(key) > 0) for key in sorted(client.keys("*"))}


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int) -> None:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert len(lines[0]) < 300, "the message echoes at most a short part of the input"


@pytest.fixture
def seeded(server: Any) -> redis.Redis:
    """The server with one queued run (nobody serves its queue); returns a bytes client."""
    client = Client(Settings(redis_url=server.url))
    script = json.dumps({"steps": step_script(1)})
    client.submit(Submission("existing run", "scripted", "idle", 5, script=script))
    return server.client(decode=False)


@pytest.mark.parametrize("bad_id", list(BAD_IDS.values()), ids=list(BAD_IDS))
def test_bad_run_ids(cli: Any, seeded: redis.Redis, bad_id: str) -> None:
    before = snapshot(seeded)

    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        argv = [a.replace("{id}", bad_id) for a in args]
        return cli(*(argv if "{id}" in args else [*argv, bad_id]))

    # Each command is its own process; run them side by side to keep the suite quick.
    with ThreadPoolExecutor(len(ID_COMMANDS)) as pool:
        results = dict(zip(ID_COMMANDS, pool.map(run, ID_COMMANDS.values()), strict=True))
    for command, done in results.items():
        try:
            assert_one_line_error(done, 2)
        except AssertionError as exc:
            raise AssertionError(f"runner {command} {bad_id[:40]!r}: {exc}") from exc
        expected = "no such run" if bad_id == UNKNOWN_ID else "not a run id"
        assert expected in done.stderr, (command, done.stderr)
    assert snapshot(seeded) == before


def _submit_cases(tmp_path: Path) -> dict[str, tuple[list[str], str | None, str]]:
    """name -> (submit arguments, stdin, a phrase the message must contain)."""
    not_json = tmp_path / "not-json.json"
    not_json.write_text("steps: [this is not json")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"steps": [{"content": "x", "sleep": -1}]}))
    good = write_script(tmp_path / "good.json", step_script(1))
    big = "x" * 2048
    scripted = ["--model", "scripted", "--script"]
    return {
        "script-not-json": ([*scripted, str(not_json), "hi"], None, "bad script"),
        "script-wrong-schema": ([*scripted, str(wrong), "hi"], None, "steps[0].sleep"),
        "scripted-without-script": (["--model", "scripted", "hi"], None, "--script"),
        "prompt-too-big": ([*scripted, str(good), big], None, "RUNNER_MAX_PROMPT_BYTES"),
        "prompt-stdin-too-big": ([*scripted, str(good), "-"], big, "RUNNER_MAX_PROMPT_BYTES"),
        "prompt-empty": ([*scripted, str(good), "   "], None, "empty"),
        "bad-queue": ([*scripted, str(good), "--queue", "a b", "hi"], None, "queue"),
        "bad-session": ([*scripted, str(good), "--session", "../x", "hi"], None, "session"),
        "unknown-model": (["--model", "nope", "hi"], None, "unknown model"),
        "usage-error": (["--max-steps", "0", "hi"], None, "--max-steps"),
        "empty-queue": ([*scripted, str(good), "--queue", "", "hi"], None, "not a queue name: ''"),
        "empty-model": (["--model", "", "hi"], None, "unknown model ''"),
    }


SUBMIT_CASES = [
    "script-not-json",
    "script-wrong-schema",
    "scripted-without-script",
    "prompt-too-big",
    "prompt-stdin-too-big",
    "prompt-empty",
    "bad-queue",
    "bad-session",
    "unknown-model",
    "usage-error",
    "empty-queue",
    "empty-model",
]


@pytest.mark.parametrize("case", SUBMIT_CASES)
def test_bad_submissions(
    cli: Any, seeded: redis.Redis, env: dict[str, str], tmp_path: Path, case: str
) -> None:
    args, stdin, phrase = _submit_cases(tmp_path)[case]
    before = snapshot(seeded)
    small = {**env, "RUNNER_MAX_PROMPT_BYTES": "1024"}
    done = cli("submit", *args, input=stdin, env=small)
    assert_one_line_error(done, 2)
    assert phrase in done.stderr
    assert snapshot(seeded) == before


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "args",
    [
        ["submit", "--model", "scripted", "--script", "{script}", "hi"],
        ["follow", UNKNOWN_ID],
        ["status", UNKNOWN_ID],
        ["list"],
        ["send", UNKNOWN_ID, "hello"],
    ],
    ids=["submit", "follow", "status", "list", "send"],
)
def test_unreachable_server(cli: Any, env: dict[str, str], tmp_path: Path, args: list[str]) -> None:
    script = write_script(tmp_path / "ok.json", step_script(1))
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    argv = [a.replace("{script}", str(script)) for a in args]
    done = cli(*argv, env={**env, "RUNNER_REDIS_URL": url}, timeout=30)
    assert_one_line_error(done, 1)
    assert "cannot reach Redis" in done.stderr


@pytest.mark.parametrize(
    ("name", "value", "phrase"),
    [
        ("RUNNER_REDIS_URL", "nonsense", "RUNNER_REDIS_URL"),
        ("RUNNER_MAX_STEPS", "many", "bad configuration"),
        ("RUNNER_LEASE_SECONDS", "0.0001", "RUNNER_LEASE_SECONDS: Input should be greater than"),
        ("RUNNER_LEASE_SECONDS", "inf", "RUNNER_LEASE_SECONDS: Input should be a finite number"),
        ("RUNNER_SWEEP_SECONDS", "0", "RUNNER_SWEEP_SECONDS: Input should be greater than"),
        ("RUNNER_QUEUE", "", "RUNNER_QUEUE"),
        ("RUNNER_MODEL", "", "RUNNER_MODEL"),
        ("RUNNER_REDIS_URL", "{server}/abc", "RUNNER_REDIS_URL: the database must be a number"),
        ("RUNNER_REDIS_URL", "{server}/0?db=x", "RUNNER_REDIS_URL: the database must be a number"),
    ],
    ids=[
        "url",
        "max-steps",
        "tiny-lease",
        "infinite-lease",
        "zero-sweep",
        "empty-queue",
        "empty-model",
        "db-not-a-number",
        "db-query-not-a-number",
    ],
)
def test_bad_configuration(
    cli: Any,
    seeded: redis.Redis,
    env: dict[str, str],
    server: Any,
    name: str,
    value: str,
    phrase: str,
) -> None:
    """Every bad value stops the command at once: nothing falls back to a default."""
    before = snapshot(seeded)
    value = value.replace("{server}", server.url.rsplit("/", 1)[0])
    done = cli("list", env={**env, name: value})
    assert_one_line_error(done, 2)
    assert phrase in done.stderr
    assert snapshot(seeded) == before


def test_bad_configuration_stops_a_worker_and_hides_the_password(
    cli: Any, seeded: redis.Redis, env: dict[str, str]
) -> None:
    before = snapshot(seeded)
    tiny = cli("worker", "--burst", env={**env, "RUNNER_LEASE_SECONDS": "0.0001"}, timeout=20)
    assert_one_line_error(tiny, 2)
    assert "RUNNER_LEASE_SECONDS" in tiny.stderr
    url = "redis://:hunter2-secret@127.0.0.1:1/abc"
    done = cli("list", env={**env, "RUNNER_REDIS_URL": url})
    assert_one_line_error(done, 2)
    assert "hunter2" not in done.stderr
    assert snapshot(seeded) == before


def test_corrupt_event_is_one_line_naming_run_and_entry(cli: Any, seeded: redis.Redis) -> None:
    run_id = json.loads(cli("list", "--json").stdout.splitlines()[0])["id"]
    bad = seeded.xadd(
        Keys().events(run_id), {"v": "1", "type": "message", "epoch": "0", "data": "{oops"}
    )
    for command in ("follow", "transcript"):
        done = cli(command, run_id)
        assert_one_line_error(done, 1)
        assert run_id in done.stderr
        assert bad.decode() in done.stderr


@pytest.mark.parametrize("command", ["worker", "dev"])
def test_bad_queue_or_worker_name_for_local_processes(cli: Any, command: str) -> None:
    """A bad name stops the command at once; dev must not respawn a worker that refuses it."""
    assert_one_line_error(cli(command, "--queue", "a b", timeout=20), 2)
    if command == "worker":
        assert_one_line_error(cli(command, "--name", "x/../y", timeout=20), 2)


# -- a server that accepts connections and never answers ----------------------------------


@pytest.fixture
def mute_server() -> Iterator[str]:
    """A TCP server that accepts every connection and never sends a byte; yields its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    listener.close()


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["submit", "--model", "scripted", "--script", "{script}", "hi"],
        ["status", UNKNOWN_ID],
        ["worker", "--burst"],
    ],
    ids=["list", "submit", "status", "worker"],
)
def test_mute_server_fails_within_seconds(
    cli: Any, env: dict[str, str], tmp_path: Path, mute_server: str, args: list[str]
) -> None:
    script = write_script(tmp_path / "ok.json", step_script(1))
    argv = [a.replace("{script}", str(script)) for a in args]
    # The bound: the connection probe (5 s) plus interpreter start-up, with room to spare;
    # before the probe, each of these hung for minutes.
    done = cli(*argv, env={**env, "RUNNER_REDIS_URL": mute_server}, timeout=20)
    assert_one_line_error(done, 1)
    assert "cannot reach Redis" in done.stderr
    assert "no answer within" in done.stderr


# -- hostile bytes ------------------------------------------------------------------------


def run_bytes(
    env: dict[str, str], *args: str | bytes, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """``runner ARGS`` with raw bytes allowed in the arguments and on stdin."""
    done = subprocess.run(
        [*RUNNER, *args], env=env, input=stdin, capture_output=True, timeout=60, check=False
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode()
    )


NOT_UTF8 = b"caf\xe9 \xff\xfe"


def test_prompt_that_is_not_utf8_is_one_line(
    seeded: redis.Redis, env: dict[str, str], tmp_path: Path
) -> None:
    """Refused, never repaired: argv, stdin, -f FILE and send all say which byte."""
    script = str(write_script(tmp_path / "ok.json", step_script(1)))
    bad_file = tmp_path / "prompt.txt"
    bad_file.write_bytes(NOT_UTF8)
    run_id = json.loads(run_bytes(env, "list", "--json").stdout.splitlines()[0])["id"]
    before = snapshot(seeded)
    scripted = ["submit", "--model", "scripted", "--script", script]
    cases = {
        "argv": run_bytes(env, *scripted, NOT_UTF8),
        "stdin": run_bytes(env, *scripted, "-", stdin=NOT_UTF8),
        "file": run_bytes(env, *scripted, "-f", str(bad_file)),
        "send": run_bytes(env, "send", run_id, NOT_UTF8),
    }
    for name, done in cases.items():
        try:
            assert_one_line_error(done, 2)
            assert "not valid UTF-8 (byte 0xe9 at" in done.stderr
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc
    assert snapshot(seeded) == before


ESC = "\x1b"
CLIPBOARD = f"{ESC}]52;c;aGVsbG8=\x07"  # OSC 52: write the clipboard
TITLE = f"{ESC}]0;pwned\x07"  # OSC 0: set the window title
CLEAR = f"{ESC}[2J"  # clear the screen
C1_CSI = "\x9b2J"  # the one-byte CSI of 8-bit terminals


def test_control_characters_are_shown_escaped(
    cli: Any, env: dict[str, str], tmp_path: Path
) -> None:
    """Model text, tool output and titles reach a terminal escaped; --json keeps them."""
    steps = [
        {
            "content": f"thinking {CLIPBOARD} {C1_CSI}",
            "tool": "shell",
            "args": {"command": "printf '\\033]0;pwned\\007 out \\033[2J\\tdone\\n'"},
        },
        {"content": f"All done.{CLEAR}"},
    ]
    script = write_script(tmp_path / "hostile.json", steps)
    cli.worker("w1")
    run_id = cli.submit("--model", "scripted", "--script", str(script), f"hello {TITLE} there")
    followed = cli("follow", run_id)
    assert followed.returncode == 0, followed.stderr
    views = {
        "follow": followed.stdout,
        "list": cli("list").stdout,
        "status": cli("status", run_id).stdout,
        "transcript": cli("transcript", run_id).stdout,
    }
    for name, text in views.items():
        assert ESC not in text and "\x9b" not in text and "\x07" not in text, (name, text)
        assert "\\x1b]0;pwned\\x07" in text, (name, text)
    for name in ("follow", "transcript"):
        text = views[name]
        assert "\\x1b]52;c;aGVsbG8=\\x07 \\x9b2J" in text, (name, text)
        assert "All done.\\x1b[2J" in text, (name, text)
        # The tab is kept (the terminal lays it out), the controls around it are not.
        assert re.search(r"\\x1b\]0;pwned\\x07 out \\x1b\[2J\s+done", text), (name, text)
    # --json is for programs: the text exactly as committed.
    events = [json.loads(line) for line in cli("follow", run_id, "--json").stdout.splitlines()]
    contents = [e["content"] for e in events if e["type"] == "message"]
    assert contents[0] == f"hello {TITLE} there"
    assert contents[1] == f"thinking {CLIPBOARD} {C1_CSI}"
    assert contents[2].startswith(f"{TITLE} out {CLEAR}\tdone\n")
    assert contents[3] == f"All done.{CLEAR}"
