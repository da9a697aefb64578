"""Commands that run processes or measure: worker, sweep, dev, demo, bench."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from runner.cli.group import cli, client, err, guarded, out, queues_arg, settings
from runner.errors import BadInput, RunnerError

WORKER_NAME = r"[A-Za-z0-9_.:-]{1,100}"

queues_option = click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="Q",
    callback=queues_arg,
    help="Queue to serve (repeatable). [RUNNER_QUEUE]",
)


@cli.command()
@queues_option
@click.option("--name", help="Worker name (default host.pid).")
@click.option("--burst", is_flag=True, help="Quit when the queues are empty.")
@click.option(
    "--health",
    is_flag=True,
    help="Do not run: exit 0 if the worker writing RUNNER_HEALTH_FILE is alive and looping.",
)
@click.option(
    "--max-age",
    type=click.FloatRange(1, 3600),
    default=30.0,
    show_default=True,
    help="With --health: seconds since the worker's last loop that still count as healthy.",
)
@guarded
def worker(
    queues: tuple[str, ...], name: str | None, burst: bool, health: bool, max_age: float
) -> None:
    """Run a worker that executes turns.

    SIGTERM, SIGHUP or SIGINT hands the running turn back to its queue and exits.
    Grace: RUNNER_SHUTDOWN_GRACE; lease: RUNNER_LEASE_SECONDS (at least 1); sweep:
    RUNNER_SWEEP_SECONDS (at least 0.1). It serves Q:high, Q and Q:low of each queue
    Q, in that order (submit --priority); RUNNER_KEY_CONCURRENCY caps the running turns
    of each submit --key. With RUNNER_HEALTH_FILE set it rewrites that file on every
    pass of its loop, for --health (a container's HEALTHCHECK).
    """
    cfg = settings()
    if health:
        from workers.health import check

        verdict = check(cfg.health_file, max_age)
        if not verdict.ok:
            raise RunnerError(verdict.message)
        click.echo(f"ok: {verdict.message}")
        return
    names = list(queues) or [cfg.queue]
    if name is not None and not re.fullmatch(WORKER_NAME, name):
        raise BadInput(f"not a worker name: {name[:40]!r} (letters, digits, _ . : -)")
    from workers.worker import main

    sys.exit(main(names, name, burst, cfg))


@cli.command()
@guarded
def sweep() -> None:
    """Requeue runs whose worker died (expired lease), once, now."""
    click.echo(json.dumps(client().sweep()))


@cli.command()
@guarded
def demo() -> None:
    """Watch a turn survive a stopped worker.

    Starts the embedded server (unless RUNNER_REDIS_URL is set) and two workers, runs a
    ten-step scripted turn, sends SIGTERM to the worker running it midway, and checks
    that the transcript holds every step exactly once.
    """
    from runner import demo as demo_mod

    cfg = settings()
    code = demo_mod.run(cfg, out)
    if not cfg.redis_url:
        _say_server_runs(cfg.data_dir)
    sys.exit(code)


def _say_server_runs(data_dir: Path) -> None:
    """The demo leaves the embedded server running for the next command: say so."""
    from runner.embedded import running_port

    port = running_port(data_dir)
    if port is not None:
        out.print(
            f"The embedded server is still running (127.0.0.1:{port}, data in {data_dir}); "
            "stop it with: runner server stop"
        )


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
@click.option("--quick", is_flag=True, help="Fewer, smaller samples (about a minute).")
@click.option(
    "--section",
    "sections",
    multiple=True,
    metavar="NAME",
    help="Only this section (repeatable): commit, growth, follow, reattach, throughput, "
    "recovery, memory, workspace, fleet, live, compaction, sse.",
)
@guarded
def bench(as_json: bool, quick: bool, sections: tuple[str, ...]) -> None:
    """Measure what durability costs per step and how fast turns come back.

    Runs against the configured server (RUNNER_REDIS_URL; the embedded one if unset)
    under a private key prefix and queues, and deletes what it created. Each figure is
    a median with its spread, beside its physical floor measured in the same run.
    """
    from runner.bench.main import run_bench
    from runner.bench.report import render as render_bench

    progress = lambda msg: err.print(f"[dim]{msg}[/dim]")  # noqa: E731
    report = run_bench(settings(), quick, progress, only=sections)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        render_bench(out, report)
