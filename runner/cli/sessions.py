"""Commands on sessions, forks and retention: sessions, session rename|delete, fork, purge."""

from __future__ import annotations

import json
import time

import click

from runner import purge
from runner.cli.group import cli, client, err, guarded, out, run_id_arg
from runner.errors import BadInput
from runner.http.admin import Admin, admin_for


def _admin() -> Admin:
    """Over Redis, or through ``runner serve`` with RUNNER_API_URL: the same output."""
    return admin_for(client())


def _optional_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else run_id_arg(ctx, param, value)


@cli.command(name="sessions")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per session.")
@guarded
def sessions_(limit: int, as_json: bool) -> None:
    """List sessions, most recently active first, with their turns and last status.

    A session idle longer than RUNNER_SESSION_IDLE_SECONDS shows as expired: its next
    turn starts a new conversation.
    """
    found = _admin().sessions(limit)
    if as_json:
        for info in found:
            click.echo(json.dumps(info.to_dict()))
        return
    if not found:
        err.print("no sessions")
        return
    for info in found:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(info.active_ms / 1000))
        state = "expired" if info.expired else info.last_status
        out.print(
            f"{info.name:<24} {info.turns:>4} turns  {state:<10} {info.last_turn:<20} {when} UTC",
            markup=False,
        )


@cli.group()
def session() -> None:
    """Rename or delete a session."""


@session.command()
@click.argument("old")
@click.argument("new")
@guarded
def rename(old: str, new: str) -> None:
    """Rename session OLD to NEW (its turns follow; NEW must not exist)."""
    turns = _admin().rename_session(old, new)
    click.echo(f"renamed session {old} to {new} ({turns} turns)")


@session.command()
@click.argument("name")
@guarded
def delete(name: str) -> None:
    """Delete session NAME and every turn of it (all must have ended)."""
    gone = _admin().delete_session(name)
    click.echo(f"deleted session {name} ({gone} turns purged)")


@cli.command()
@click.argument("run_id", metavar="ID", callback=run_id_arg)
@click.option(
    "--at", "at", type=click.IntRange(min=1), required=True, help="Keep the first N messages."
)
@click.option("--session", default="", help="Start session NAME with the fork.")
@click.option("--json", "as_json", is_flag=True, help='Print {"id", "at", "asked"} as JSON.')
@guarded
def fork(run_id: str, at: int, session: str, as_json: bool) -> None:
    """Start a new run from the first N messages of run ID, with its workspace as it was.

    N is rounded down so that no tool call is separated from its result; the run is
    queued to continue from there. Prints the new run's id.
    """
    done = _admin().fork(run_id, at, session)
    if as_json:
        click.echo(json.dumps({"id": done.run_id, "at": done.at, "asked": done.asked}))
        return
    if done.rounded:
        click.echo(
            f"note: --at {done.asked} would split a tool call from its result; forked at {done.at}",
            err=True,
        )
    click.echo(done.run_id)


@cli.command(name="purge")
@click.argument("run_id", metavar="[ID]", required=False, callback=_optional_id)
@click.option("--older-than", "older", metavar="AGE", help="Every ended run idle over AGE (7d).")
@click.option("--json", "as_json", is_flag=True, help="Print what was purged as JSON.")
@guarded
def purge_(run_id: str | None, older: str | None, as_json: bool) -> None:
    """Delete ended runs now: run ID, or every one last active over AGE ago.

    Everything of a run goes: record, stream, inbox, workspace (blobs in a directory or
    object store too) and its RQ job. A run that has not ended is refused: cancel it
    first. --older-than keeps the newest turn of a session that has not expired.
    Without purge, ended runs expire RUNNER_RETENTION_SECONDS after they end.
    """
    if (run_id is None) == (older is None):
        raise BadInput("give a run ID or --older-than AGE (one of them)")
    if run_id is not None:
        keys = _admin().purge_run(run_id)
        summary = {"runs": [run_id], "keys": keys, "kept": []}
    else:
        age = purge.parse_age(older or "")
        done = _admin().purge_older(age)
        summary = {"runs": done.runs, "keys": done.keys, "kept": done.kept}
    if as_json:
        click.echo(json.dumps(summary))
        return
    runs, kept = summary["runs"], summary["kept"]
    assert isinstance(runs, list) and isinstance(kept, list)
    click.echo(f"purged {len(runs)} run{'' if len(runs) == 1 else 's'} ({summary['keys']} keys)")
    if kept:
        click.echo(f"kept {len(kept)} newest turns of live sessions", err=True)
