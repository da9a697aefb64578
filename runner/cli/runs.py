"""Commands that start and read runs: submit, follow, status, list, transcript."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click

from runner.checks import decode_text
from runner.cli import group
from runner.cli.following import follow_run
from runner.cli.group import cli, client, guarded, run_id_arg
from runner.cli.parking import COUNT, Dollars, Duration
from runner.client import Submission
from runner.errors import BadInput
from runner.events import Status, to_openai

PROGRESS_FROM_BYTES = 1024 * 1024  # smaller uploads finish before a bar would help


def _read_prompt(prompt: str | None, file: str | None, limit: int) -> str:
    if file is not None and prompt is not None:
        raise BadInput("give the prompt as an argument or with -f, not both")
    if prompt == "-" or file == "-":
        return decode_text(sys.stdin.buffer.read(limit + 1), "the prompt", limit)
    if file is not None:
        return _read_file(file, "prompt file", limit)
    if prompt is None:
        raise BadInput("no prompt: give it as an argument, with -f FILE, or - for stdin")
    return prompt


def _read_file(path: str, what: str, limit: int) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise BadInput(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    return decode_text(data, f"{what} {path}", limit)


def _system(value: str | None, limit: int) -> str | None:
    """``--system``: the text itself, or the contents of FILE when given as ``@FILE``."""
    if value is not None and value.startswith("@"):
        return _read_file(value[1:], "system prompt file", limit)
    return value


def upload_progress() -> Callable[[int, int], None]:
    """A progress line on stderr for an upload (shown only when there is much to send)."""
    shown = {"last": -1}

    def report(done: int, total: int) -> None:
        if total < PROGRESS_FROM_BYTES:
            return
        percent = done * 100 // max(total, 1)
        if percent != shown["last"]:
            shown["last"] = percent
            end = "\n" if done >= total else "\r"
            mib = total / (1024 * 1024)
            click.echo(f"uploading workspace: {percent:3d}% of {mib:.1f} MiB", err=True, nl=False)
            click.echo(end, err=True, nl=False)

    return report


@cli.command()
@click.argument("prompt", required=False)
@click.option("-f", "--file", "file", metavar="FILE", help="Read the prompt from FILE (- = stdin).")
@click.option("--model", help="Model: scripted, openai:MODEL or anthropic:MODEL. [RUNNER_MODEL]")
@click.option(
    "--script",
    "script_path",
    metavar="FILE",
    help="JSON script for --model scripted; stored with the run.",
)
@click.option(
    "--session",
    default="",
    help="Make the run the next turn of session NAME: it continues the session's "
    "conversation and workspace. [RUNNER_SESSION_IDLE_SECONDS]",
)
@click.option(
    "--if-busy",
    type=click.Choice(["queue", "reject"]),
    default="queue",
    show_default=True,
    help="When the session's previous turn has not ended: wait for it, or refuse.",
)
@click.option("--queue", help="RQ queue to run on. [RUNNER_QUEUE]")
@click.option(
    "--max-steps",
    type=click.IntRange(1, 100_000),
    help="Park (waiting) after this many model calls. [RUNNER_MAX_STEPS]",
)
@click.option("--max-tokens", type=COUNT, help="Park at N tokens (in + out). [RUNNER_MAX_TOKENS]")
@click.option("--max-cost", type=Dollars(), help="Park once USD are spent. [RUNNER_MAX_COST]")
@click.option(
    "--max-time",
    type=Duration(),
    help="Park after this much running time: 90s, 30m, 2h. [RUNNER_MAX_TIME]",
)
@click.option("--max-tool-calls", type=COUNT, help="Park at N tool calls. [RUNNER_MAX_TOOL_CALLS]")
@click.option(
    "--approve",
    "approve",
    multiple=True,
    metavar="TOOL",
    help="Park before each call of TOOL until approved (repeatable). [RUNNER_APPROVE_TOOLS]",
)
@click.option(
    "--workspace",
    "workspace",
    metavar="DIR",
    default="",
    help="Start the run from a copy of DIR. [RUNNER_WORKSPACE_MAX_BYTES, RUNNER_WORKSPACE_IGNORE]",
)
@click.option(
    "--key",
    "tenant",
    default="",
    metavar="TENANT",
    help="Fairness key: at most RUNNER_KEY_CONCURRENCY turns of one key run at once.",
)
@click.option(
    "--priority",
    type=click.Choice(["high", "normal", "low"]),
    default="normal",
    help="Workers take high before normal before low (queues Q:high, Q, Q:low).",
)
@click.option(
    "--system",
    metavar="TEXT|@FILE",
    help="The system prompt, or @FILE to read it; stored with the run (default: runner's own).",
)
@click.option(
    "--context-tokens",
    type=click.IntRange(1024, 10_000_000),
    help="The model's context window; the turn compacts to fit it. [RUNNER_CONTEXT_TOKENS]",
)
@click.option("--follow", is_flag=True, help="Follow the run after submitting it.")
@click.option("--json", "as_json", is_flag=True, help='Print {"id": ...} as JSON.')
@guarded
def submit(
    prompt: str | None,
    file: str | None,
    model: str | None,
    script_path: str | None,
    session: str,
    if_busy: str,
    queue: str | None,
    max_steps: int | None,
    max_tokens: int | None,
    max_cost: float | None,
    max_time: float | None,
    max_tool_calls: int | None,
    approve: tuple[str, ...],
    workspace: str,
    tenant: str,
    priority: str,
    system: str | None,
    context_tokens: int | None,
    follow: bool,
    as_json: bool,
) -> None:
    """Submit a turn; prints its run id.

    The prompt (argument, -f FILE or - for stdin) must be UTF-8: anything else is
    refused, never repaired.
    """
    runner = client()
    cfg = runner.settings
    text = _read_prompt(prompt, file, cfg.max_prompt_bytes)
    script = "" if script_path is None else _read_file(script_path, "script", cfg.max_script_bytes)
    run_id = runner.submit(
        Submission(
            prompt=text,
            model=model,
            queue=queue,
            max_steps=max_steps,
            max_tokens=max_tokens,
            max_cost=max_cost,
            max_time=max_time,
            max_tool_calls=max_tool_calls,
            approve=approve,
            script=script,
            session=session,
            workspace=workspace,
            if_busy=if_busy,
            key=tenant,
            priority=priority,
            system=_system(system, cfg.max_prompt_bytes),
            context_tokens=context_tokens,
        ),
        upload_progress() if workspace else None,
    )
    for note in runner.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(json.dumps({"id": run_id}) if as_json else run_id)
    if follow:
        sys.exit(follow_run(runner, run_id, as_json, None, group.stdout, group.stderr))


@cli.command()
@click.argument("run_id", metavar="ID", callback=run_id_arg)
@click.option("--json", "as_json", is_flag=True, help="Print events as JSON, one per line.")
@click.option("--tail", type=click.IntRange(0), help="Start with only the last N events.")
@guarded
def follow(run_id: str, as_json: bool, tail: int | None) -> None:
    """Replay a run's events, then follow it live until it ends.

    Ctrl-C or SIGHUP detaches; the run goes on. Exit codes: 0 succeeded, 1 failed (or
    damaged), 2 bad input, 3 cancelled, 4 suspended, 5 waiting, 130 detached.
    """
    sys.exit(follow_run(client(), run_id, as_json, tail, group.stdout, group.stderr))


@cli.command()
@click.argument("run_id", metavar="ID", callback=run_id_arg)
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
@guarded
def status(run_id: str, as_json: bool) -> None:
    """Show a run's status."""
    from runner.cli import render  # rich, which follow does without

    record = client().get(run_id)
    if as_json:
        click.echo(record.model_dump_json())
    else:
        render.run(group.stdout(), record)


@cli.command(name="list")
@click.option(
    "--status",
    "status_",
    type=click.Choice([s.value for s in Status]),
    help="Only runs with this status.",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per run.")
@guarded
def list_(status_: str | None, limit: int, as_json: bool) -> None:
    """List runs, most recently active first (a damaged run shows as DAMAGED)."""
    from runner.cli import render  # rich, which follow does without

    records = client().runs(Status(status_) if status_ else None, limit)
    if as_json:
        for record in records:
            click.echo(record.model_dump_json())
    elif records:
        render.runs(group.stdout(), records)
    else:
        group.stderr().print("no runs")


@cli.command()
@click.argument("run_id", metavar="ID", callback=run_id_arg)
@click.option("--json", "as_json", is_flag=True, help="Print the OpenAI-shaped messages as JSON.")
@guarded
def transcript(run_id: str, as_json: bool) -> None:
    """Print a run's transcript (its messages in order)."""
    from runner.cli import render  # rich, which follow does without

    messages = client().transcript(run_id)
    if as_json:
        click.echo(json.dumps([to_openai(m) for m in messages], ensure_ascii=False, indent=2))
    else:
        render.events(group.stdout(), messages)
