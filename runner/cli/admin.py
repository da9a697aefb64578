"""Commands that look after a deployment: doctor, server status|stop."""

from __future__ import annotations

import json
import sys

import click

from runner.cli.group import cli, guarded, out, settings
from runner.connection import safe_url


@cli.command()
@click.option(
    "--grace-period",
    type=click.FloatRange(min=0, min_open=True),
    metavar="S",
    help="The platform's stop timeout (terminationGracePeriodSeconds, stop_grace_period): "
    "checked against RUNNER_SHUTDOWN_GRACE.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the checks as one JSON object.")
@guarded
def doctor(grace_period: float | None, as_json: bool) -> None:
    """Check the configuration end to end and say what to fix.

    One line per check, ✓ or ✗: the server and its version, eviction policy and
    persistence, clock skew, the Lua scripts, a live worker on each queue with waiting
    runs, lease/sweep/grace settings, the default model's key (never shown). Exit 0 when
    every check passes, 1 otherwise.
    """
    from runner.doctor import run_checks

    checks = run_checks(settings(), grace_period)
    passed = all(check.ok for check in checks)
    if as_json:
        click.echo(json.dumps({"ok": passed, "checks": [c.as_dict() for c in checks]}))
    else:
        for check in checks:
            mark = "✓" if check.ok else "✗"
            click.echo(f"{mark} {check.name}: {check.message}")
            if check.fix:
                click.echo(f"  fix: {check.fix}")
    sys.exit(0 if passed else 1)


@cli.group()
def server() -> None:
    """The embedded server (used when RUNNER_REDIS_URL is unset)."""


@server.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the state as one JSON object.")
@guarded
def server_status(as_json: bool) -> None:
    """Say whether the embedded server runs, on which port, with which data directory."""
    from runner.embedded import status

    cfg = settings()
    state = status(cfg.data_dir)
    if as_json:
        shown = state.as_dict()
        shown["redis_url"] = safe_url(cfg.redis_url) if cfg.redis_url else None
        click.echo(json.dumps(shown))
        return
    if state.running:
        out.print(f"embedded server: running on 127.0.0.1:{state.port} (pid {state.pid})")
    else:
        out.print("embedded server: not running")
    out.print(f"data directory: {state.data_dir}")
    if cfg.redis_url:
        out.print(f"RUNNER_REDIS_URL is set: runner uses {safe_url(cfg.redis_url)} instead")
    elif state.running:
        out.print("stop it with: runner server stop")


@server.command("stop")
@guarded
def server_stop() -> None:
    """Stop the embedded server (its data is kept; the next command starts it again)."""
    from runner.embedded import stop_server

    cfg = settings()
    if stop_server(cfg.data_dir):
        out.print(f"embedded server stopped (data kept in {cfg.data_dir})")
    else:
        out.print(f"embedded server was not running (data directory {cfg.data_dir})")
