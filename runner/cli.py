"""The ``runner`` command line. Commands fetch through the client; ``render`` prints."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click
import redis
from rich.console import Console

from runner import render
from runner.client import Client, Submission
from runner.errors import BadInput, RunnerError
from runner.events import MessageEvent, Status
from runner.following import EXIT_DETACHED, follow_run
from runner.keys import check_run_id
from runner.settings import Settings, get_settings

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(exc: BaseException, code: int) -> NoReturn:
    """Print one line on stderr and exit."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn runner's errors into one line and an exit code, never a traceback."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RunnerError as exc:
            fail(exc, exc.exit_code)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            fail(RunnerError(f"lost the Redis connection: {exc}"), 1)
        except redis.RedisError as exc:
            fail(RunnerError(f"Redis error: {exc}"), 1)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def settings() -> Settings:
    try:
        return get_settings()
    except Exception as exc:  # pydantic's ValidationError: a bad RUNNER_* value
        raise BadInput(f"bad configuration: {str(exc).splitlines()[-2:][0].strip()}") from exc


def run_id_arg(_: click.Context, __: click.Parameter, value: str) -> str:
    try:
        return check_run_id(value)
    except BadInput as exc:
        fail(exc, 2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runner")
def cli() -> None:
    """Durable autonomous agent turns on Redis + RQ.

    A turn runs on a worker, commits every step to Redis, survives worker restarts and
    crashes, and can be followed live from anywhere. Configuration: RUNNER_* variables
    or .env; RUNNER_REDIS_URL unset means an embedded server under ~/.local/share/runner.
    """


# -- submit ------------------------------------------------------------------------------


def _read_prompt(prompt: str | None, file: str | None, limit: int) -> str:
    if file is not None and prompt is not None:
        raise BadInput("give the prompt as an argument or with -f, not both")
    if prompt == "-" or file == "-":
        return sys.stdin.read(limit + 1)
    if file is not None:
        return _read_file(file, "prompt file", limit)
    if prompt is None:
        raise BadInput("no prompt: give it as an argument, with -f FILE, or - for stdin")
    return prompt


def _read_file(path: str, what: str, limit: int) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read(limit + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {what} {path}: {exc}") from exc


@cli.command()
@click.argument("prompt", required=False)
@click.option("-f", "--file", "file", metavar="FILE", help="Read the prompt from FILE (- = stdin).")
@click.option("--model", help="Model spec: scripted, or openai:MODEL. [RUNNER_MODEL]")
@click.option(
    "--script",
    "script_path",
    metavar="FILE",
    help="JSON script for --model scripted; stored with the run.",
)
@click.option("--session", default="", help="Group the run under a session name.")
@click.option("--queue", help="RQ queue to run on. [RUNNER_QUEUE]")
@click.option(
    "--max-steps",
    type=click.IntRange(1, 100_000),
    help="Stop after this many model calls. [RUNNER_MAX_STEPS]",
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
    queue: str | None,
    max_steps: int | None,
    follow: bool,
    as_json: bool,
) -> None:
    """Submit a turn; prints its run id."""
    cfg = settings()
    text = _read_prompt(prompt, file, cfg.max_prompt_bytes)
    model = model or cfg.model
    script = ""
    if script_path is not None:
        from runner.script import parse_script

        script = _read_file(script_path, "script", cfg.max_script_bytes)
        if len(script.encode()) > cfg.max_script_bytes:
            raise BadInput(f"script is over {cfg.max_script_bytes} bytes (RUNNER_MAX_SCRIPT_BYTES)")
        parse_script(script)
    queue = queue or cfg.queue
    if not _valid_queue(queue):
        raise BadInput(f"not a queue name: {queue[:40]!r}")
    if len(text.encode()) > cfg.max_prompt_bytes:
        raise BadInput(f"the prompt is over {cfg.max_prompt_bytes} bytes (RUNNER_MAX_PROMPT_BYTES)")
    client = Client(cfg)
    run_id = client.submit(
        Submission(
            prompt=text,
            model=model,
            queue=queue,
            max_steps=max_steps or cfg.max_steps,
            script=script,
            session=session,
        )
    )
    click.echo(json.dumps({"id": run_id}) if as_json else run_id)
    if follow:
        sys.exit(follow_run(client, run_id, as_json, None, out, err))


def _valid_queue(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) is not None


# -- follow ------------------------------------------------------------------------------


@cli.command()
@click.argument("run_id", metavar="ID", callback=run_id_arg)
@click.option("--json", "as_json", is_flag=True, help="Print events as JSON, one per line.")
@click.option("--tail", type=click.IntRange(0), help="Start with only the last N events.")
@guarded
def follow(run_id: str, as_json: bool, tail: int | None) -> None:
    """Replay a run's events, then follow it live until it ends.

    Ctrl-C or SIGHUP detaches; the run goes on. Exit codes: 0 succeeded, 1 failed,
    2 bad input, 3 cancelled, 4 suspended, 5 waiting, 130 detached.
    """
    sys.exit(follow_run(Client(settings()), run_id, as_json, tail, out, err))


# -- inspect and steer -------------------------------------------------------------------


@cli.command()
@click.argument("run_id", metavar="ID", callback=run_id_arg)
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
@guarded
def status(run_id: str, as_json: bool) -> None:
    """Show a run's status."""
    record = Client(settings()).get(run_id)
    if as_json:
        click.echo(record.model_dump_json())
    else:
        render.run(out, record)


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
    """List runs, most recently active first."""
    records = Client(settings()).runs(Status(status_) if status_ else None, limit)
    if as_json:
        for record in records:
            click.echo(record.model_dump_json())
    elif records:
        render.runs(out, records)
    else:
        err.print("no runs")


@cli.command()
@click.argument("run_id", metavar="ID", callback=run_id_arg)
@click.option("--json", "as_json", is_flag=True, help="Print the OpenAI-shaped messages as JSON.")
@guarded
def transcript(run_id: str, as_json: bool) -> None:
    """Print a run's transcript (its messages in order)."""
    client = Client(settings())
    client.get(run_id)  # NoSuchRun (exit 2) rather than an empty transcript
    if as_json:
        click.echo(json.dumps(client.transcript(run_id), ensure_ascii=False, indent=2))
        return
    for ev in client.store.events(run_id):
        if isinstance(ev, MessageEvent):
            render.event(out, ev)


@cli.command()
@click.argument("run_id", metavar="ID", callback=run_id_arg)
@guarded
def cancel(run_id: str) -> None:
    """Cancel a run (a running one stops at its next safe point)."""
    before = Client(settings()).cancel(run_id)
    if before is Status.RUNNING:
        click.echo(f"cancel requested; {run_id} stops at its next safe point")
    elif before in (Status.QUEUED, Status.SUSPENDED, Status.WAITING):
        click.echo(f"cancelled {run_id}")
    else:
        raise BadInput(f"run {run_id} has already ended ({before.value})")


@cli.command()
@click.argument("run_id", metavar="ID", callback=run_id_arg)
@guarded
def resume(run_id: str) -> None:
    """Put a suspended (or waiting) run back in its queue."""
    before = Client(settings()).resume(run_id)
    if before not in (Status.SUSPENDED, Status.WAITING):
        raise BadInput(f"run {run_id} is {before.value}, not suspended or waiting")
    click.echo(f"resumed {run_id}; it is queued again")


@cli.command()
@click.argument("run_id", metavar="ID", callback=run_id_arg)
@click.argument("message")
@guarded
def send(run_id: str, message: str) -> None:
    """Send a message to a run.

    The turn takes it in as a user message before its next model call.
    """
    Client(settings()).send(run_id, message)
    click.echo(f"sent to {run_id}")


# -- workers and local server ------------------------------------------------------------


def _check_queues(_: click.Context, __: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    for queue in value:
        if not _valid_queue(queue):
            fail(BadInput(f"not a queue name: {queue[:40]!r}"), 2)
    return value


queues_option = click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="Q",
    callback=_check_queues,
    help="Queue to serve (repeatable). [RUNNER_QUEUE]",
)


@cli.command()
@queues_option
@click.option("--name", help="Worker name (default host.pid).")
@click.option("--burst", is_flag=True, help="Quit when the queues are empty.")
@guarded
def worker(queues: tuple[str, ...], name: str | None, burst: bool) -> None:
    """Run a worker that executes turns.

    SIGTERM, SIGHUP or SIGINT hands the running turn back to its queue and exits.
    Grace: RUNNER_SHUTDOWN_GRACE; lease: RUNNER_LEASE_SECONDS; sweep: RUNNER_SWEEP_SECONDS.
    """
    cfg = settings()
    names = list(queues) or [cfg.queue]
    if name is not None and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", name):
        raise BadInput(f"not a worker name: {name[:40]!r} (letters, digits, _ . : -)")
    from workers.worker import main

    sys.exit(main(names, name, burst, cfg))


@cli.command()
@guarded
def sweep() -> None:
    """Requeue runs whose worker died (expired lease), once, now."""
    cfg = settings()
    client = Client(cfg)
    from workers.sweeper import sweep as do_sweep

    report = do_sweep(client.store, client.rq, cfg)
    click.echo(
        json.dumps(
            {
                "requeued": report.requeued,
                "suspended": report.suspended,
                "repushed": report.repushed,
            }
        )
    )


@cli.command()
@guarded
def demo() -> None:
    """Watch a turn survive a stopped worker.

    Starts the embedded server (unless RUNNER_REDIS_URL is set) and two workers, runs a
    ten-step scripted turn, sends SIGTERM to the worker running it midway, and checks
    that the transcript holds every step exactly once.
    """
    from runner import demo as demo_mod

    sys.exit(demo_mod.run(settings(), out))


@cli.command()
@click.option(
    "--workers",
    "n",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="How many workers to run.",
)
@queues_option
@guarded
def dev(n: int, queues: tuple[str, ...]) -> None:
    """Run the server and N workers until Ctrl-C.

    The server is the embedded one unless RUNNER_REDIS_URL is set. A worker that dies is
    replaced; Ctrl-C or SIGTERM stops the workers, each handing its turn off.
    """
    from runner import local

    sys.exit(local.dev(settings(), n, list(queues), err))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option("--quick", is_flag=True, help="Fewer, smaller samples (well under a minute).")
@guarded
def bench(as_json: bool, quick: bool) -> None:
    """Measure what durability costs per step and how fast turns come back.

    Runs against the configured server (RUNNER_REDIS_URL; the embedded one if unset)
    under a private key prefix and queues, and deletes what it created. Each figure is
    a median with its spread, beside its physical floor measured in the same run.
    """
    from runner.bench.main import run_bench
    from runner.bench.report import render as render_bench

    report = run_bench(settings(), quick, lambda msg: err.print(f"[dim]{msg}[/dim]"))
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        render_bench(out, report)


def main() -> None:
    """Console entry point."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(EXIT_DETACHED)
    except click.UsageError as exc:
        # One line, like every other bad input; the full usage is one --help away.
        where = exc.ctx.command_path if exc.ctx is not None else "runner"
        click.echo(f"error: {exc.format_message()} (see: {where} --help)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_DETACHED)


if __name__ == "__main__":
    main()
