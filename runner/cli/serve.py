"""Commands for the HTTP API: serve, token create|revoke."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import click

from runner import metrics
from runner.cli.group import cli, client, guarded
from runner.errors import BadInput

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, certfile: str | None, keyfile: str | None, insecure: bool) -> None:
    """BadInput unless the address is loopback, or TLS is set, or --insecure is given."""
    if (certfile is None) != (keyfile is None):
        raise BadInput("give --certfile and --keyfile together")
    if not is_loopback(host) and certfile is None and not insecure:
        raise BadInput(
            f"refusing to serve {host} without TLS: give --certfile and --keyfile, or --insecure"
        )


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--certfile", metavar="FILE", help="TLS certificate (PEM).")
@click.option("--keyfile", metavar="FILE", help="TLS private key (PEM).")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP on a non-loopback address.")
@guarded
def serve(host: str, port: int, certfile: str | None, keyfile: str | None, insecure: bool) -> None:
    """Serve the API, the events (SSE) and the web page over HTTP.

    Needs the serve extra (pip install 'runner[serve]'). Every request but /health needs
    a token from `runner token create`. [RUNNER_HTTP_HEARTBEAT_SECONDS]
    """
    check_bind(host, certfile, keyfile, insecure)
    try:
        import uvicorn

        from runner.http.app import build_app
    except ImportError as exc:
        raise BadInput(f"runner serve needs the serve extra ({exc.name} is missing)") from exc
    runner = client()
    settings = runner.settings
    # Before the app imports prometheus_client: multiprocess mode is chosen on import.
    served = metrics.serve(settings.metrics_port) if settings.metrics_port else None
    try:
        app = build_app(runner, settings.http_heartbeat_seconds)
        if served:
            watch_serving(app.state.api.hub, runner)
        logging.getLogger("runner").setLevel(logging.INFO)
        uvicorn.run(
            app,
            host=host,
            port=port,
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
            log_level="info",
            timeout_graceful_shutdown=3,
        )
    finally:
        if served:
            metrics.stop_serving(served)


def watch_serving(hub: Any, runner: Any) -> None:
    """The gauges ``runner serve`` adds: its SSE followers and feeds, runs by status."""
    metrics.watch(
        "runner_sse_followers",
        "SSE connections following a run",
        "",
        lambda: {"": sum(len(f.subscribers) for f in list(hub.feeds.values()))},
    )
    metrics.watch(
        "runner_sse_feeds", "Runs read for SSE followers", "", lambda: {"": len(hub.feeds)}
    )
    metrics.watch_runs(runner.store.redis, runner.keys)


@cli.group()
def token() -> None:
    """Create and revoke API tokens (stored hashed in Redis)."""


@token.command("create")
@click.option("--name", required=True, help="A name for the token (what revoke takes).")
@click.option("--read-only", is_flag=True, help="May list and follow, not submit or steer.")
@guarded
def token_create(name: str, read_only: bool) -> None:
    """Create a token and print it, alone, once: it cannot be shown again."""
    from runner.http.auth import Tokens

    click.echo(Tokens(client()).create(name, read_only))


@token.command("revoke")
@click.argument("name")
@guarded
def token_revoke(name: str) -> None:
    """Revoke the token named NAME."""
    from runner.http.auth import Tokens

    Tokens(client()).revoke(name)
    click.echo(f"revoked {name}")
