"""``runner bench --quick --json`` end to end on the test's own server.

Benchmarks are not tests: nothing here looks at how fast anything was, only that every
section reports numbers and that the bench leaves nothing behind.
"""

from __future__ import annotations

import json
import math
import subprocess

import pytest

from tests.conftest import Server
from tests.helpers import RUNNER

SECTIONS = (
    "commit",
    "growth",
    "follow",
    "reattach",
    "throughput",
    "recovery",
    "memory",
    "workspace",
    "fleet",
    "sse",
)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_quick_json(env: dict[str, str], server: Server) -> None:
    done = subprocess.run(
        [*RUNNER, "bench", "--quick", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert (
        f"[{len(SECTIONS)}/{len(SECTIONS)}]" in done.stderr
    )  # progress went to stderr, not into the JSON

    assert report["quick"] is True
    assert set(report["sections"]) == set(SECTIONS)
    for name in SECTIONS:
        figures = report["sections"][name]
        assert figures, name
        for fig in figures:
            for key in ("median", "p10", "p90", "value", "ratio"):
                assert _number(fig[key]), (name, fig["name"], key, fig[key])
            assert _number(fig["floor"]["median"]), (name, fig["name"])
            assert fig["n"] >= 1
    machine = report["machine"]
    assert machine["nproc"] >= 1 and machine["python"] and machine["server"]
    assert report["settings"]["lease_seconds"] > 0

    leftovers = [k for k in server.client().scan_iter(count=1000) if "bench-" in k]
    assert leftovers == []
    assert not [m for m in server.client().smembers("rq:workers") if "bench-" in m]
