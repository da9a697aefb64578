"""Commands on a run's workspace: diff, pull (submit --workspace is in ``runs``)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from runner.cli.group import cli, client, guarded, run_id_arg
from runner.cli.render import visible

PROGRESS_FROM_FILES = 500  # fewer files land before a progress line would help


@cli.command()
@click.argument("run_id", metavar="ID", callback=run_id_arg)
@guarded
def diff(run_id: str) -> None:
    """Print a run's workspace changes against its start as a unified diff.

    Reads the last commit, so it works on a running run too; binary files are named,
    not printed. On a terminal, control characters are shown escaped; piped, the diff is
    exact (for patch or git apply).
    """
    text = client().diff(run_id)
    if text and sys.stdout.isatty():
        text = visible(text)  # a terminal never interprets what a model wrote (guarantee 8)
    if text:
        click.echo(text, nl=False)
    else:
        click.echo("no changes", err=True)


@cli.command()
@click.argument("run_id", metavar="ID", callback=run_id_arg)
@click.argument("directory", metavar="DIR")
@click.option("--force", is_flag=True, help="Write into DIR even if it is not empty.")
@guarded
def pull(run_id: str, directory: str, force: bool) -> None:
    """Write a run's last committed workspace to DIR (modes and symlinks included)."""
    written = client().pull(run_id, directory, force, pull_progress())
    mib = written.bytes / (1024 * 1024)
    click.echo(f"pulled {written.files} files ({mib:.2f} MiB) into {directory}", err=True)


def pull_progress() -> Callable[[int, int], None]:
    """A progress line on stderr while a pull writes many files (redrawn in place)."""
    shown = {"last": -1}

    def report(done: int, total: int) -> None:
        if total < PROGRESS_FROM_FILES:
            return
        percent = done * 100 // max(total, 1)
        if percent != shown["last"]:
            shown["last"] = percent
            end = "\n" if done >= total else "\r"
            click.echo(
                f"pulling workspace: {percent:3d}% ({done} of {total} files){end}",
                err=True,
                nl=False,
            )

    return report
