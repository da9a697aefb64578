"""One turn process of the fleet figure: commit steps to its run as fast as it can.

``python -m runner.bench.committer RUN_ID EPOCH SECONDS``: connects, prints ``ready``,
waits for a line on stdin (so the whole fleet starts together, whatever its start-up
took), commits realistic steps through the real store path for SECONDS, then prints
``{"commits": N, "seconds": S}``.
"""

from __future__ import annotations

import json
import sys
import time

from runner.bench.commits import step_events
from runner.connection import connect
from runner.keys import Keys
from runner.settings import Settings
from runner.store import RunStore


def main(argv: list[str]) -> int:
    run_id, epoch, seconds = argv[0], int(argv[1]), float(argv[2])
    settings = Settings()
    store = RunStore(connect(settings), Keys(settings.prefix), settings.retention_seconds)
    seen, commits = 3, 0  # queued, the user's message, running
    store.redis.ping()
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    while (took := time.perf_counter() - t0) < seconds:
        events = step_events(commits)
        store.commit(run_id, epoch, events, seen, steps=1)
        seen += len(events)
        commits += 1
    print(json.dumps({"commits": commits, "seconds": took}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
