"""Following a run in a terminal or a pipe: ``runner follow`` and ``submit --follow``.

Reattaching to a long finished run through a pipe must cost about what reading its
stream does (issue 12), so the piped and ``--json`` views import neither rich nor the
live view: rich is loaded for a terminal, or when a note goes to stderr.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

import click

from runner.cli import plain
from runner.cli.group import EXIT_DETACHED
from runner.client import Client
from runner.events import DeltaEvent, Status, StatusEvent, to_json

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["EXIT_DETACHED", "EXIT_FOR", "follow_run", "is_terminal"]

EXIT_FOR = {
    Status.SUCCEEDED: 0,
    Status.FAILED: 1,
    Status.CANCELLED: 3,
    Status.SUSPENDED: 4,
    Status.WAITING: 5,
}


class Detach(Exception):
    """Ctrl-C or SIGHUP while following: leave the run alone and stop following."""


def _raise_detach(*_: object) -> None:
    raise Detach()


def is_terminal(stream: IO[str]) -> bool:
    """Whether rich would treat ``stream`` as a terminal, decided without importing rich.

    The same rules as rich's ``Console.is_terminal`` for a command line (tests compare
    the two): ``TTY_COMPATIBLE`` 0 or 1 decides, then a set ``FORCE_COLOR`` (non-empty
    means yes), then ``isatty()``.
    """
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    force = os.environ.get("FORCE_COLOR")
    if force is not None:
        return force != ""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def follow_run(
    client: Client,
    run_id: str,
    as_json: bool,
    tail: int | None,
    out: Callable[[], Console],
    err: Callable[[], Console],
) -> int:
    """Print the run's events until it ends or parks; returns follow's exit code.

    ``out`` and ``err`` give the consoles, made only if needed (a terminal, a note).
    """
    previous = signal.signal(signal.SIGHUP, _raise_detach)
    last: Status | None = None
    live = not as_json and is_terminal(sys.stdout)
    view = _live_view(out()) if live else None
    on_retry = lambda exc: _reconnecting(err(), exc)  # noqa: E731
    # Deltas go to --json on every output and to a terminal; a piped human view stays a
    # log of committed events, written as plain text (rich would draw the same, slower).
    batches = (
        client.follow_live(run_id, tail=tail, on_retry=on_retry)
        if as_json or live
        else client.follow_batches(run_id, tail=tail, on_retry=on_retry)
    )
    try:
        for batch in batches:
            if as_json:
                click.echo("\n".join(to_json(ev) for ev in batch))
            elif view is not None:
                view.show(batch)
            else:
                plain.events(sys.stdout, [ev for ev in batch if not isinstance(ev, DeltaEvent)])
            statuses = [ev.status for ev in batch if isinstance(ev, StatusEvent)]
            last = statuses[-1] if statuses else last
            if statuses and last is Status.QUEUED and not as_json:
                _queued_note(client, run_id, err())
    except (KeyboardInterrupt, Detach):
        if view is not None:
            view.close()
        err().print(f"detached; the run goes on. Reattach with: runner follow {run_id}")
        return EXIT_DETACHED
    finally:
        if view is not None:
            view.close()
        signal.signal(signal.SIGHUP, previous)
    status = last if last in EXIT_FOR else client.get(run_id).status
    return EXIT_FOR.get(status, 0)


def _live_view(console: Console) -> LiveView:
    from runner.cli.live import LiveView

    return LiveView(console)


def _queued_note(client: Client, run_id: str, err: Console) -> None:
    record = client.get(run_id)
    if record.status is not Status.QUEUED:
        return
    n = client.workers_serving(record.queue)
    hint = "" if n else f" — start one with: runner worker --queue {record.queue}"
    err.print(f"[dim]waiting in queue {record.queue!r}; {n} worker(s) serve it{hint}[/dim]")


def _reconnecting(err: Console, exc: BaseException) -> None:
    err.print(f"[yellow]connection lost ({type(exc).__name__}); reconnecting…[/yellow]")


if TYPE_CHECKING:
    from runner.cli.live import LiveView
