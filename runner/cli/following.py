"""Following a run in a terminal or a pipe: ``runner follow`` and ``submit --follow``."""

from __future__ import annotations

import signal
import sys

import click
from rich.console import Console

from runner.cli import plain, render
from runner.cli.live import LiveView
from runner.client import Client
from runner.events import DeltaEvent, Status, StatusEvent, to_json

EXIT_FOR = {
    Status.SUCCEEDED: 0,
    Status.FAILED: 1,
    Status.CANCELLED: 3,
    Status.SUSPENDED: 4,
    Status.WAITING: 5,
}
EXIT_DETACHED = 130


class Detach(Exception):
    """Ctrl-C or SIGHUP while following: leave the run alone and stop following."""


def _raise_detach(*_: object) -> None:
    raise Detach()


def follow_run(
    client: Client, run_id: str, as_json: bool, tail: int | None, out: Console, err: Console
) -> int:
    """Print the run's events until it ends or parks; returns follow's exit code."""
    previous = signal.signal(signal.SIGHUP, _raise_detach)
    last: Status | None = None
    live = out.is_terminal and not as_json
    view = LiveView(out) if live else None
    # Piped with no colour forced, rich draws plain text: write it without rich's cost.
    plain_pipe = not live and not as_json and out.file is sys.stdout and out.color_system is None
    on_retry = lambda exc: _reconnecting(err, exc)  # noqa: E731
    # Deltas go to --json on every output and to a terminal; a piped human view stays a
    # log of committed events.
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
                shown = [ev for ev in batch if not isinstance(ev, DeltaEvent)]
                if plain_pipe:
                    plain.events(sys.stdout, shown)
                else:
                    render.events(out, shown)
            statuses = [ev.status for ev in batch if isinstance(ev, StatusEvent)]
            last = statuses[-1] if statuses else last
            if statuses and last is Status.QUEUED and not as_json:
                _queued_note(client, run_id, err)
    except (KeyboardInterrupt, Detach):
        if view is not None:
            view.close()
        err.print(f"detached; the run goes on. Reattach with: runner follow {run_id}")
        return EXIT_DETACHED
    finally:
        if view is not None:
            view.close()
        signal.signal(signal.SIGHUP, previous)
    status = last if last in EXIT_FOR else client.get(run_id).status
    return EXIT_FOR.get(status, 0)


def _queued_note(client: Client, run_id: str, err: Console) -> None:
    record = client.get(run_id)
    if record.status is not Status.QUEUED:
        return
    n = client.workers_serving(record.queue)
    hint = "" if n else f" — start one with: runner worker --queue {record.queue}"
    err.print(f"[dim]waiting in queue {record.queue!r}; {n} worker(s) serve it{hint}[/dim]")


def _reconnecting(err: Console, exc: BaseException) -> None:
    err.print(f"[yellow]connection lost ({type(exc).__name__}); reconnecting…[/yellow]")
