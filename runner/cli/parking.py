"""Commands for parked runs: resume (raising limits), approve, deny; and the limit options."""

from __future__ import annotations

from typing import Any

import click

from runner.budgets import Adds, check_cost, parse_duration
from runner.cli.group import cli, client, guarded, run_id_arg
from runner.errors import BadInput


class Duration(click.ParamType[float]):
    """``90s``, ``30m``, ``2h`` (or seconds) as seconds."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value), "the duration")
        except BadInput as exc:
            self.fail(str(exc), param, ctx)


class Dollars(click.ParamType[float]):
    """An amount of US dollars from 0."""

    name = "USD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return check_cost(float(str(value).removeprefix("$")), "the amount")
        except ValueError:
            self.fail(f"not an amount of dollars: {str(value)[:40]!r}", param, ctx)
        except BadInput as exc:
            self.fail(str(exc), param, ctx)


COUNT = click.IntRange(0, 10**12)


@cli.command()
@click.argument("run_id", metavar="ID", callback=run_id_arg)
@click.option("--add-steps", type=COUNT, default=0, help="Raise the step limit by N.")
@click.option("--add-tokens", type=COUNT, default=0, help="Raise the token limit by N.")
@click.option("--add-cost", type=Dollars(), default=0.0, help="Raise the cost limit by USD.")
@click.option("--add-time", type=Duration(), default=0.0, help="Raise the time limit (90s, 30m).")
@click.option("--add-tool-calls", type=COUNT, default=0, help="Raise the tool-call limit by N.")
@guarded
def resume(
    run_id: str,
    add_steps: int,
    add_tokens: int,
    add_cost: float,
    add_time: float,
    add_tool_calls: int,
) -> None:
    """Put a suspended run, or one waiting for a budget, back in its queue.

    A run parked at a limit parks again at once unless that limit is raised (a limit that
    was never set stays unset). A run waiting for an approval needs approve or deny.
    """
    adds = Adds(add_steps, add_tokens, add_cost, add_time, add_tool_calls)
    client().resume(run_id, adds)
    click.echo(f"resumed {run_id}; it is queued again")


@cli.command()
@click.argument("run_id", metavar="ID", callback=run_id_arg)
@guarded
def approve(run_id: str) -> None:
    """Approve the tool call a waiting run asks for; it runs on the next free worker."""
    client().approve(run_id)
    click.echo(f"approved; {run_id} is queued again")


@cli.command()
@click.argument("run_id", metavar="ID", callback=run_id_arg)
@click.option("--reason", default="", help="Told to the model as the tool call's result.")
@guarded
def deny(run_id: str, reason: str) -> None:
    """Refuse the tool call a waiting run asks for; the model is told, and carries on."""
    client().deny(run_id, reason)
    click.echo(f"denied; {run_id} is queued again")
