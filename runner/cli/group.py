"""The ``runner`` group, its consoles and its error handling.

Every error a command meets ends as one line on stderr, ``error: MESSAGE``, and the
exit code of its RunnerError class (runner/errors.py); never a traceback.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any, NoReturn

import click

from runner.checks import check_queue
from runner.cli.text import visible
from runner.client import Client, open_client
from runner.connection import is_server_error, translate
from runner.errors import BadInput, RunnerError
from runner.keys import check_run_id
from runner.settings import Settings, load_settings

if TYPE_CHECKING:
    from rich.console import Console

EXIT_DETACHED = 130  # Ctrl-C or SIGHUP: the run goes on without us

# Which module defines each command: ``runner CMD`` imports only CMD's module, so a
# command pays for what it uses and nothing else (``follow`` reads a run without RQ,
# rich or the other commands; issue 12). tests/unit/test_cli_lazy.py checks the table.
COMMANDS = {
    "approve": "parking",
    "bench": "ops",
    "cancel": "steer",
    "demo": "ops",
    "deny": "parking",
    "dev": "ops",
    "diff": "workspace",
    "doctor": "admin",
    "follow": "runs",
    "fork": "sessions",
    "list": "runs",
    "pull": "workspace",
    "purge": "sessions",
    "resume": "parking",
    "send": "steer",
    "serve": "serve",
    "server": "admin",
    "session": "sessions",
    "sessions": "sessions",
    "status": "runs",
    "submit": "runs",
    "sweep": "ops",
    "token": "serve",
    "transcript": "runs",
    "worker": "ops",
}
MODULES = tuple(sorted(set(COMMANDS.values())))


@cache
def stdout() -> Console:
    """The console for what commands print (rich is imported on first use)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


@cache
def stderr() -> Console:
    """The console for notes and progress on stderr."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def __getattr__(name: str) -> Console:
    # ``out`` and ``err``, made when a command module first imports them.
    if name == "out":
        return stdout()
    if name == "err":
        return stderr()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def say_error(message: str) -> None:
    """The one error line: ``error: MESSAGE`` (its first line, control characters escaped)."""
    first = message.splitlines()[0] if message.strip() else "unknown error"
    click.echo(f"error: {visible(first)}", err=True)


def fail(exc: BaseException, code: int) -> NoReturn:
    """Print one line on stderr and exit."""
    say_error(str(exc) or type(exc).__name__)
    sys.exit(code)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn runner's errors into one line and an exit code, never a traceback.

    The client raises only RunnerErrors; the Redis and RQ errors caught here come from
    the commands that drive a server themselves (dev, demo, bench, worker start-up).
    """

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RunnerError as exc:
            fail(exc, exc.exit_code)
        except Exception as exc:
            if not is_server_error(exc):
                raise
            wrapped = translate(exc)
            fail(wrapped, wrapped.exit_code)

    return functools.wraps(fn)(wrapper)  # the command's name, help and module


def settings() -> Settings:
    """The configuration (BadInput naming the variable if one is bad)."""
    return load_settings()


def client() -> Client:
    """The client every command talks through."""
    return open_client(settings())


def run_id_arg(_: click.Context, __: click.Parameter, value: str) -> str:
    try:
        return check_run_id(value)
    except BadInput as exc:
        fail(exc, exc.exit_code)


def queues_arg(_: click.Context, __: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    try:
        return tuple(check_queue(queue) for queue in value)
    except BadInput as exc:
        fail(exc, exc.exit_code)


class LazyGroup(click.Group):
    """A group whose commands are imported when asked for (see ``COMMANDS``)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if cmd_name not in self.commands and module is not None:
            importlib.import_module(f"runner.cli.{module}")
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        load_all()
        return super().list_commands(ctx)


def load_all() -> None:
    """Import every command module (``--help`` lists them all)."""
    for module in MODULES:
        importlib.import_module(f"runner.cli.{module}")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runner")
def cli() -> None:
    """Durable autonomous agent turns on Redis + RQ.

    A turn runs on a worker, commits every step to Redis, survives worker restarts and
    crashes, and can be followed live from anywhere. Configuration: RUNNER_* variables
    or .env; RUNNER_REDIS_URL unset means an embedded server under ~/.local/share/runner.
    Errors are one line on stderr, "error: MESSAGE".
    """


def main() -> None:
    """Console entry point."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(EXIT_DETACHED)
    except click.UsageError as exc:
        # One line, like every other bad input; the full usage is one --help away.
        where = exc.ctx.command_path if exc.ctx is not None else "runner"
        say_error(f"{exc.format_message()} (see: {where} --help)")
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        say_error(exc.format_message())
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_DETACHED)
