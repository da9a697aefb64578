"""Commands that steer a run: cancel, send (resume, approve, deny: runner/cli/parking.py)."""

from __future__ import annotations

import click

from runner.cli.group import cli, client, guarded, run_id_arg
from runner.events import Status
from runner.http.admin import admin_for


@cli.command()
@click.argument("run_id", metavar="ID", callback=run_id_arg)
@guarded
def cancel(run_id: str) -> None:
    """Cancel a run (a running one stops at its next safe point)."""
    before = client().cancel(run_id)
    if before is Status.RUNNING:
        click.echo(f"cancel requested; {run_id} stops at its next safe point")
    else:
        click.echo(f"cancelled {run_id}")


@cli.command()
@click.argument("run_id", metavar="ID", callback=run_id_arg)
@click.argument("message")
@guarded
def send(run_id: str, message: str) -> None:
    """Send a message to a run.

    The turn takes it in as a user message before its next model call. To a run that
    has ended, the message starts the next turn of its session (one named after the
    run if it had none) and the new run's id is printed. The message must be UTF-8.
    """
    sent = admin_for(client()).send_or_continue(run_id, message)
    if sent.next_id:
        click.echo(
            f"{run_id} has ended; session {sent.session} continues in {sent.next_id}", err=True
        )
        click.echo(sent.next_id)
        return
    click.echo(f"sent to {run_id}")
